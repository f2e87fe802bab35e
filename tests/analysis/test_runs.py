"""Finding run folders and reading metrics.jsonl (hand-written files)."""

from __future__ import annotations

import json

import pytest

from dare_rec.analysis.runs import find_runs, read_run
from dare_rec.config import ConfigError
from dare_rec.data.schema import DataError


def write_run(folder, events):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def start(batch_size, world_size):
    return {"event": "start", "world_size": world_size, "config": {"data": {"batch_size": batch_size}}}


def test_resumed_run_keeps_the_later_record(tmp_path):
    write_run(tmp_path / "run", [
        start(256, 2), {"event": "train", "step": 50, "loss": 0.9}, {"event": "train", "step": 100, "loss": 0.8},
        {"event": "val", "step": 100, "auc": 0.7, "gauc_user": 0.6, "logloss": 0.5, "gauc_category": None},
        start(256, 1), {"event": "train", "step": 100, "loss": 0.75}, {"event": "train", "step": 150, "loss": 0.7},
        {"event": "end"}])
    run = read_run("run", tmp_path / "run")
    assert run.train["loss"] == ([50, 100, 150], [0.9, 0.75, 0.7])
    assert run.val["auc"] == ([100], [0.7]) and "gauc_category" not in run.val
    assert run.samples_per_step == 256


def test_find_runs_in_an_experiment_folder(tmp_path):
    for name in ("dare/seed1", "dare/seed2", "twin/seed1"):
        write_run(tmp_path / "exp" / name, [start(8, 1)])
    assert [n for n, _ in find_runs([tmp_path / "exp"])] == ["dare/seed1", "dare/seed2", "twin/seed1"]
    assert [n for n, _ in find_runs([tmp_path / "exp" / "twin" / "seed1"])] == ["seed1"]
    with pytest.raises(ConfigError, match="neither a run folder nor an experiment folder"):
        find_runs([tmp_path / "exp" / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no run under"):
        find_runs([tmp_path / "empty"])


def test_malformed_line_names_file_and_line(tmp_path):
    write_run(tmp_path / "run", [start(8, 1)])
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"event": "train", "loss": 1.0}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: line 2: .*KeyError"):
        read_run("run", tmp_path / "run")
