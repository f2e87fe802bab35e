"""Checkpoints, exact resume, the best checkpoint, early stopping, determinism, refusals and clean exits of the
training job (1 process in this process; the 2-process kill drill is tests/pipelines/test_fault_drill.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dare_rec import checkpoint as ckpt
from dare_rec.modules.over_arch import OverArch
from dare_rec.pipelines import evaluate, train
from dare_rec.pipelines.errors import NonFiniteError
from tests.conftest import REPO
from tests.pipelines.test_jobs import events, train_args

# B = 128 makes the gathers' backward large enough for the multi-threaded atomic path of index_put, the
# source of run-to-run differences without train.deterministic. 28 steps per epoch, 56 in all.
RUN = ["--data.batch_size", "128", "--train.epochs", "2", "--train.val_every", "10", "--train.checkpoint_every", "7",
       "--train.log_every", "1", "--train.trace_samples", "true", "--train.keep_checkpoints", "2"]


def run_main(data, out, *extra, threads=2):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train.main(train_args(data, out, *RUN, *extra))
    finally:
        torch.set_num_threads(previous)


def comparable(run_dir):
    """The run's train and val events without wall-clock fields."""
    drop = {"time", "samples_per_s", "val_time_s"}
    return [{k: v for k, v in e.items() if k not in drop} for e in events(run_dir) if e["event"] in ("train", "val")]


def board(run_dir, tag):
    """(step, value) of a TensorBoard scalar of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def trace(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "trace" / "rank-00000.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert run_main(tiny_data, out) == 0
    return out


def test_same_config_and_seed_give_identical_metrics(tiny_data, reference, tmp_path):
    assert run_main(tiny_data, tmp_path / "again") == 0
    assert comparable(tmp_path / "again") == comparable(reference)
    vals = [e for e in comparable(reference) if e["event"] == "val"]
    assert len(vals) == 7
    # the same numbers in TensorBoard, by step
    steps, aucs = zip(*board(reference, "val/auc"))
    assert list(steps) == [e["step"] for e in vals] and aucs == pytest.approx([e["auc"] for e in vals], rel=1e-6)
    assert len(board(reference, "train/loss")) == 56


def test_every_sample_of_an_epoch_is_seen_exactly_once(reference):
    steps = trace(reference)
    assert [s["step"] for s in steps] == list(range(1, 57))
    for epoch in (0, 1):
        ids = [i for s in steps if s["epoch"] == epoch for i in s["ids"]]
        assert len(ids) == len(set(ids)) == 28 * 128


def test_resume_after_a_crash_takes_exactly_the_steps_of_an_uninterrupted_run(tiny_data, reference, tmp_path,
                                                                              monkeypatch):
    # Crash inside the checkpoint write of step 28: its folder is renamed into place, `latest` is not moved yet.
    set_pointer = ckpt.set_pointer

    def crash(root, pointer, name):
        if name == "step-00000028" and pointer == ckpt.LATEST:
            raise RuntimeError("simulated kill")
        set_pointer(root, pointer, name)

    monkeypatch.setattr(ckpt, "set_pointer", crash)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_main(tiny_data, out)
    root = out / "checkpoints"
    assert ckpt.read_pointer(root, ckpt.LATEST).name == "step-00000021"
    assert ckpt.is_complete(root / "step-00000021") and (root / "step-00000028").is_dir()
    monkeypatch.setattr(ckpt, "set_pointer", set_pointer)

    assert run_main(tiny_data, out) == 0  # the same command again: train.resume auto
    resumes = [e for e in events(out) if e["event"] == "resume"]
    assert [(e["step"], e["checkpoint"]) for e in resumes] == [(21, "step-00000021")]
    assert comparable(out) == comparable(reference)
    assert trace(out) == trace(reference)
    # TensorBoard: the killed attempt's steps after the checkpoint are purged, none doubled
    assert board(out, "val/auc") == board(reference, "val/auc")
    assert [s for s, _ in board(out, "train/loss")] == [s for s, _ in board(reference, "train/loss")]
    end = events(out)[-1]
    assert end["event"] == "end" and end["steps"] == 56 and end["best"] == events(reference)[-1]["best"]


@pytest.mark.parametrize("optimizer", ["adam", "dense_adam"])
def test_adam_table_state_is_checkpointed_and_resumes_exactly(tiny_data, tmp_path, monkeypatch, optimizer):
    # row-sparse Adam (dare_rec/cpu_adam.py: moments and per-row counts in the fused optimizer's DCP state)
    # and dense Adam over replicated tables (the dense optimizer's state): a crash at step 14 resumes from the
    # best checkpoint of the validation at step 10
    extra = ("--train.sparse_optimizer", optimizer, "--train.sparse_lr", "0.01", "--train.epochs", "1")
    assert run_main(tiny_data, tmp_path / "whole", *extra) == 0
    set_pointer = ckpt.set_pointer

    def crash(root, pointer, name):
        if name == "step-00000014" and pointer == ckpt.LATEST:
            raise RuntimeError("simulated kill")
        set_pointer(root, pointer, name)

    monkeypatch.setattr(ckpt, "set_pointer", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_main(tiny_data, tmp_path / "run", *extra)
    monkeypatch.setattr(ckpt, "set_pointer", set_pointer)
    assert run_main(tiny_data, tmp_path / "run", *extra) == 0
    assert [e["step"] for e in events(tmp_path / "run") if e["event"] == "resume"] == [10]
    assert comparable(tmp_path / "run") == comparable(tmp_path / "whole")


def test_the_best_checkpoint_is_kept_and_evaluated_by_default(reference, capsys):
    vals = [e for e in events(reference) if e["event"] == "val"]
    best = max(vals, key=lambda e: e["auc"])  # max() keeps the first of equal values, like the run
    root = reference / "checkpoints"
    assert ckpt.read_pointer(root, ckpt.BEST).name == ckpt.checkpoint_name(best["step"])
    assert ckpt.read_pointer(root, ckpt.LATEST).name == "step-00000056"
    assert len(ckpt.list_checkpoints(root)) <= 3  # keep_checkpoints 2, plus the best
    summary = events(reference)[-1]
    assert summary["best"] == {"step": best["step"], "checkpoint": ckpt.checkpoint_name(best["step"]),
                               "metric": "auc", "value": best["auc"]}
    assert vals[-1]["best"] == summary["best"]

    on_val = evaluate.evaluate(str(reference), split="val", progress=False)
    assert on_val["step"] == best["step"] and on_val["picked"] == "best"
    assert on_val["auc"] == best["auc"]  # evaluation reproduces the validation that chose it
    assert f"the run's best: val auc {best['auc']:.4f} at step {best['step']}" in capsys.readouterr().out
    latest = evaluate.evaluate(str(reference), split="val", pick="latest", progress=False)
    assert latest["step"] == 56 and latest["picked"] == "latest" and latest["auc"] == vals[-1]["auc"]


@pytest.mark.parametrize("metric,values", [("auc", [0.60, 0.70, 0.65, 0.66]),
                                           ("logloss", [0.60, 0.50, 0.55, 0.52])])
def test_early_stopping_after_patience_validations_without_improvement(tiny_data, tmp_path, monkeypatch,
                                                                       metric, values):
    scripted = iter(values)

    def fake_validation(model, reader, env, desc):
        value = next(scripted)
        return {"auc": value, "gauc_user": value, "gauc_category": value, "logloss": value, "samples": 900,
                "positive_rate": 0.3}

    monkeypatch.setattr(train, "evaluate_split", fake_validation)
    out = tmp_path / "run"
    args = train_args(tiny_data, out, "--train.val_every", "5", "--train.val_metric", metric,
                      "--train.early_stop_patience", "2")
    assert train.main(args) == 0
    end = events(out)[-1]
    assert end["stopped_early"] and end["steps"] == 20
    assert end["best"] == {"step": 10, "checkpoint": "step-00000010", "metric": metric, "value": values[1]}
    root = out / "checkpoints"
    assert ckpt.read_pointer(root, ckpt.BEST).name == "step-00000010"
    assert ckpt.read_pointer(root, ckpt.LATEST).name == "step-00000020"
    before = (out / "metrics.jsonl").read_text()
    assert train.main(args) == 0  # rerunning a finished run does nothing
    assert (out / "metrics.jsonl").read_text() == before


def expect_exit_2(argv, capsys, message, entry=train.main):
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_a_used_output_folder_is_refused_or_resumed_only_when_compatible(tiny_data, reference, tmp_path, capsys):
    before = sorted(p.name for p in (reference / "checkpoints").iterdir())
    expect_exit_2(train_args(tiny_data, reference, *RUN, "--train.resume", "never"), capsys,
                  f"train.output_dir: '{reference}' already holds a run")
    expect_exit_2(train_args(tiny_data, reference, *RUN, "--model.d_att", "4"), capsys,
                  "model.d_att: 4 differs from 8 in checkpoint")
    expect_exit_2(train_args(tiny_data, reference, *RUN, "--data.batch_size", "64"), capsys,
                  "data.batch_size: 64 differs from 128")
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == before  # refusals touch nothing

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    assert run_main(tiny_data, copy, "--train.resume", "never", "--train.overwrite", "true", "--train.max_steps",
                    "3") == 0
    log = events(copy)
    assert log[0]["event"] == "start" and log[-1]["steps"] == 3
    assert not (copy / "checkpoints" / "step-00000056").exists()


def test_a_dataset_whose_vocabulary_differs_from_the_checkpoint_is_refused(tiny_data, reference, tmp_path, capsys):
    other = tmp_path / "data"
    shutil.copytree(tiny_data, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["num_items"] += 100
    (other / "meta.json").write_text(json.dumps(meta))
    message = f"{other}: vocabulary sizes (items 601, categories 21) differ from those of checkpoint"
    expect_exit_2(train_args(other, reference, *RUN), capsys, message)
    expect_exit_2(["--checkpoint", str(reference), "--data", str(other)], capsys, message, entry=evaluate.main)


def test_non_finite_logits_in_evaluation_are_an_error_naming_the_sample(reference, monkeypatch, capsys):
    forward = OverArch.forward

    def poisoned(self, features):
        logits = forward(self, features)
        return torch.where(torch.arange(logits.numel()) == 3, torch.full_like(logits, float("nan")), logits)

    monkeypatch.setattr(OverArch, "forward", poisoned)
    with pytest.raises(NonFiniteError, match=r"logits are not finite, the first for the sample at .*val/"
                                             r"part-00000.parquet \(row group 0, row 3\)"):
        evaluate.evaluate(str(reference), split="val", progress=False)


def test_the_job_exits_0_in_fresh_processes_when_stopped_short_of_the_epoch(tiny_data, tmp_path):
    # The abort at interpreter exit (a reader thread inside a torch/Arrow call when the interpreter finalized)
    # came after the work was done, in some runs only; ten fresh processes, two at a time.
    def run(i):
        argv = train_args(tiny_data, tmp_path / f"run{i}", "--train.max_steps", str(3 + i))
        code = f"import sys; from dare_rec.pipelines.train import main; sys.exit(main({argv!r}))"
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={"OMP_NUM_THREADS": "2", "PATH": ""})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(10)))
    for proc in results:
        assert proc.returncode == 0, proc.stderr[-3000:]
