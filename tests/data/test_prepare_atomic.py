"""Atomic prepare: the dataset is swapped in whole or not at all, a kill or an error leaves the old one
byte-identical, nothing prepare did not write is deleted, and leftovers of killed runs are cleaned by name."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dare_rec.config import LogsConfig
from dare_rec.data import publish, synthetic
from dare_rec.data.logs import prepare_logs
from dare_rec.data.schema import DataError, DatasetMeta
from dare_rec.pipelines import prepare
from tests.conftest import REPO, tiny_config

CFG = dict(min_len=5, max_len=4, train_start=3, train_stride=2, train_count=2, row_group_size=16, train_files=1)


def fingerprint(root: Path) -> dict:
    """sha256 of every file under ``root`` by relative path (the folders too, as None)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def taobao_log(path: Path, bad_line: bool = False) -> Path:
    lines = [f"{11 + k // 6},{100 + k},{7 + k % 3},pv,{1_511_500_000 + k}" for k in range(12)]
    if bad_line:
        lines.insert(8, "11,200,7,pv,notatime")
    path.write_text("\n".join(lines) + "\n")
    return path


def siblings(path: Path) -> list:
    return sorted(p.name for p in path.parent.iterdir())


def test_replacing_a_dataset_swaps_it_whole_and_leaves_nothing_beside_it(tiny_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    synthetic.generate(tiny_config("--synthetic.seed", "5").synthetic, out, progress=False)
    assert fingerprint(out) != fingerprint(tiny_data)
    assert DatasetMeta.read(out).seed == 5
    assert siblings(out) == ["data"]  # no temporary or old folder left


def test_a_failing_prepare_leaves_the_old_dataset_byte_identical(tiny_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    before = fingerprint(out)
    with pytest.raises(DataError, match="line 9, column 5"):
        prepare_logs("taobao", taobao_log(tmp_path / "log.csv", bad_line=True), out, LogsConfig(**CFG),
                     progress=False)
    assert fingerprint(out) == before and siblings(out) == ["data", "log.csv"]


def test_an_interrupted_write_leaves_the_old_dataset(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    before = fingerprint(out)
    close = synthetic.DatasetWriter.close

    def interrupted(self):
        close(self)
        raise KeyboardInterrupt  # after every file is written, before meta.json

    monkeypatch.setattr(synthetic.DatasetWriter, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tiny_config("--synthetic.seed", "5").synthetic, out, progress=False)
    assert fingerprint(out) == before and siblings(out) == ["data"]


def test_a_folder_that_is_not_ours_is_refused_unless_overwrite(tmp_path, capsys):
    log = taobao_log(tmp_path / "log.csv")
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("keep me")
    argv = ["--source", "taobao", "--input", str(log), "--out", str(out), "--quiet", "--logs.min_len", "5",
            "--logs.max_len", "4", "--logs.train_count", "2", "--logs.train_stride", "2"]
    with pytest.raises(SystemExit) as e:
        prepare.main(argv)
    assert e.value.code == 2
    assert f"error: {out}: not empty and not a dataset written by `dare-rec prepare`" in capsys.readouterr().err
    assert (out / "notes" / "todo.txt").read_text() == "keep me"
    assert prepare.main(argv + ["--overwrite"]) == 0
    assert DatasetMeta.read(out).source == "taobao" and not (out / "notes").exists()
    # now a dataset of ours: replaced without --overwrite
    assert prepare.main(argv + ["--logs.seed", "3"]) == 0


@pytest.mark.parametrize("name", ["train/mine.txt", "train/old-part.parquet", "README.md"])
def test_a_dataset_holding_a_file_prepare_did_not_write_is_refused(tiny_data, tmp_path, name):
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    (out / name).write_text("mine")
    before = fingerprint(out)
    with pytest.raises(DataError, match=f"^{out / name}: not written by `dare-rec prepare`"):
        synthetic.generate(tiny_config().synthetic, out, progress=False)
    assert fingerprint(out) == before
    synthetic.generate(tiny_config().synthetic, out, progress=False, overwrite=True)
    assert not (out / name).exists()


def test_a_file_is_never_replaced(tmp_path):
    out = tmp_path / "data"
    out.write_text("a file")
    with pytest.raises(DataError, match="exists and is not a folder"):
        synthetic.generate(tiny_config().synthetic, out, progress=False, overwrite=True)
    assert out.read_text() == "a file"


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_leftovers_of_killed_runs_are_cleaned_and_only_ours(tiny_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    host = publish._host()
    dead, alive = dead_pid(), os.getpid()
    stale = tmp_path / f".data.tmp-{host}-{dead}-0123abcd"
    live = tmp_path / f".data.tmp-{host}-{alive}-0123abcd"
    elsewhere = tmp_path / f".data.tmp-otherhost-{dead}-0123abcd"
    lookalike = tmp_path / ".data.tmp-mine"
    for folder in (stale, live, elsewhere, lookalike):
        (folder / "train").mkdir(parents=True)
    synthetic.generate(tiny_config().synthetic, out, progress=False)
    assert siblings(out) == sorted(p.name for p in (out, live, elsewhere, lookalike))


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(tiny_data, tmp_path):
    """Without RENAME_EXCHANGE the old folder is renamed aside first; a kill right then leaves no dataset
    under its name, and the next run puts it back before anything else."""
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    before = fingerprint(out)
    aside = tmp_path / f".data.old-{publish._host()}-{dead_pid()}-0123abcd"
    out.rename(aside)
    with pytest.raises(DataError, match="line 9"):  # fails on its input, after the recovery
        prepare_logs("taobao", taobao_log(tmp_path / "log.csv", bad_line=True), out, LogsConfig(**CFG),
                     progress=False)
    assert fingerprint(out) == before and not aside.exists()


def test_without_rename_exchange_the_dataset_is_still_replaced(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    synthetic.generate(tiny_config("--synthetic.seed", "5").synthetic, out, progress=False)
    assert DatasetMeta.read(out).seed == 5 and siblings(out) == ["data"]


def test_a_sigkill_during_prepare_leaves_the_old_dataset(tiny_data, tmp_path):
    """A real kill: prepare in a subprocess, SIGKILLed once its temporary folder exists."""
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out)
    before = fingerprint(out)
    proc = subprocess.Popen([sys.executable, "-m", "dare_rec.pipelines.prepare", "--source", "synthetic", "--config",
                             str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--quiet",
                             "--synthetic.num_users", "20000", "--synthetic.seed", "5"], cwd=REPO)
    try:
        while proc.poll() is None and not list(tmp_path.glob(".data.tmp-*/train/*.parquet")):
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.wait()
    assert proc.returncode == -9, "prepare finished before it could be killed"
    assert fingerprint(out) == before
    synthetic.generate(tiny_config().synthetic, out, progress=False)  # the next run cleans up after it
    assert siblings(out) == ["data"] and fingerprint(out) == before
