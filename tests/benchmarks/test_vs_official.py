"""The side-by-side harness (``python -m benchmarks.vs_official accuracy``, run as a command) against a stand-in
for the reference checkout.

The stand-in ``train_pytorch.py`` reads the exported files the way the reference does (``train_`` prefix,
consecutive indices from 1, ``[R, 6]`` object rows), prints the reference's final lines with a seed- and
model-dependent AUC (or, with ``FAKE_TRAINER_UNFINISHED`` set, stops before them), and exits with status 120
after a complete run, as the reference does. Our side runs the real ``dare-rec train`` / ``evaluate`` CLI on
the tiny dataset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_PRESET

FAKE_TRAINER = textwrap.dedent('''
    import argparse, os, sys
    import numpy as np

    p = argparse.ArgumentParser(add_help=False)
    for flag in ("-train_dataset_path", "-val_dataset_path", "-test_dataset_path", "-log_dir", "-model_name",
                 "-max_length", "-item_n", "-cate_n", "-seed", "-batch_size", "-epoch", "-test_interval"):
        p.add_argument(flag)
    args, _ = p.parse_known_args()
    folder = os.path.dirname(args.train_dataset_path)
    names = sorted(f for f in os.listdir(folder) if "train_" in f)
    assert [int(n.split("_")[1]) for n in names] == list(range(1, len(names) + 1)), names
    rows = np.concatenate([np.load(os.path.join(folder, n), allow_pickle=True) for n in names])
    assert rows.shape[1] == 6 and len(rows[0][4]) == int(args.max_length)
    with open(os.path.join(os.path.dirname(folder), "calls.txt"), "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    auc = 0.6 + int(args.seed) / 100 + (0.05 if args.model_name == "DARE" else 0.0)
    print(f"Testing finishes: epoch=0, iteration={args.test_interval}, test_auc={auc - 0.01:.4f}, test_loss=0.6")
    print(f"Testing finishes: epoch=1, iteration={2 * int(args.test_interval)}, test_auc={auc:.4f}, test_loss=0.6")
    # an equal validation AUC later: the reference keeps the first
    print(f"Testing finishes: epoch=1, iteration={3 * int(args.test_interval)}, test_auc={auc:.4f}, test_loss=0.6")
    np.save(os.path.join(args.log_dir, "grid_search.npy"), np.array([auc]))
    if os.environ.get("FAKE_TRAINER_UNFINISHED"):
        sys.stdout.flush()
        os._exit(120)
    print(f"Final test auc: {auc:.4f}.")
    print("Final test logloss: 0.6100")
    print(f"Final test num: 60/{len(np.load(args.test_dataset_path, allow_pickle=True))}")
    print(f"Final test category average auc: {auc - 0.02:.4f}.")
    sys.stdout.flush()
    os._exit(120)
''')


@pytest.fixture()
def fake_repo(tmp_path) -> Path:
    repo = tmp_path / "DARE"
    repo.mkdir()
    (repo / "train_pytorch.py").write_text(FAKE_TRAINER)
    (repo / "dataset.py").write_text("# stand-in\n")
    return repo


def _calls(cache: Path) -> list:
    path = cache / "exports" / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def _run(tiny_data, fake_repo, tmp_path, *extra, env=None) -> subprocess.CompletedProcess:
    argv = ["accuracy", "--config", str(TINY_PRESET), "--data", str(tiny_data), "--official-repo",
            str(fake_repo), "--official-python", sys.executable, "--cache", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "results"), "--name", "t", "--epochs", "2", "--val-every", "20", *extra]
    return subprocess.run([sys.executable, "-m", "benchmarks.vs_official", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _harness(tiny_data, fake_repo, tmp_path, *extra) -> int:
    proc = _run(tiny_data, fake_repo, tmp_path, *extra)
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    return proc.returncode


def _flags(call: str) -> dict:
    argv = call.split()
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1)
            if argv[i].startswith("-") and not argv[i + 1].startswith("-")}


def test_official_side_flags_report_and_cache(tiny_data, fake_repo, tmp_path):
    cache = tmp_path / "cache"
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "1", "2", "--models",
                    "dare", "twin") == 0
    calls = _calls(cache)
    assert len(calls) == 4
    flag = _flags(calls[0])
    assert flag["-model_name"] == "DARE" and flag["-seed"] == "1" and flag["-batch_size"] == "64"
    assert flag["-epoch"] == "2" and flag["-test_interval"] == "20" and flag["-long_seq_split"] == "0:32"
    assert flag["-max_length"] == "32" and flag["-use_cross_feature"] == "True" and flag["-learning_rate"] == "0.01"

    report = json.loads((tmp_path / "results" / "vs_official_t.json").read_text())
    table = {(e["code"], e["model"]): e for e in report["summary"]["table"]}
    assert table[("official", "dare")]["auc_mean"] == pytest.approx((0.66 + 0.67) / 2)
    assert table[("official", "twin")]["auc_std"] == pytest.approx(0.00707, abs=1e-4)
    assert table[("official", "dare")]["best_val_steps"] == [40, 40]  # the first of two equal validations
    (dare_vs_twin,) = report["summary"]["dare_vs_twin"]
    assert dare_vs_twin["dare_wins_on"] == [1, 2] and dare_vs_twin["auc_diff_mean"] == pytest.approx(0.05)
    # tiny's val/test (900 samples) are not whole batches of 64: the report says what the reference scores.
    assert any("scores only the first 896" in w for w in report["warnings"])
    assert 0.5 < report["oracle_auc"] <= 1.0  # tiny is synthetic: true click probabilities are known
    markdown = (tmp_path / "results" / "vs_official_t.md").read_text()
    assert "| official | dare | 2 | 0.6650 ± 0.0071 |" in markdown and "DARE wins on seeds" in markdown

    # A rerun runs nothing; a new seed runs only that seed.
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "1", "2", "--models",
                    "dare", "twin") == 0
    assert len(_calls(cache)) == 4
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "1", "2", "3", "--models",
                    "dare", "twin") == 0
    assert len(_calls(cache)) == 6


def test_ours_runs_through_the_cli_and_pairs_with_official(tiny_data, fake_repo, tmp_path):
    assert _harness(tiny_data, fake_repo, tmp_path, "--seeds", "1", "--models", "dare",
                    "--setting", "short=--train.max_steps 3") == 0
    report = json.loads((tmp_path / "results" / "vs_official_t.json").read_text())
    ours = [r for r in report["runs"] if r["code"] == "ours:short"]
    (folder,) = (tmp_path / "cache" / "runs").glob("ours-dare-seed1-*")
    # the report carries what `dare-rec evaluate` wrote for the run's checkpoint
    evaluated = json.loads((folder / "eval-test.json").read_text())
    assert len(ours) == 1 and ours[0]["auc"] == evaluated["auc"] and ours[0]["checkpoint_step"] == 3
    assert "--model.variant dare" in ours[0]["command"] and "--train.seed 1" in ours[0]["command"]
    assert "--data.batch_size 64" in ours[0]["command"] and "--train.val_every 20" in ours[0]["command"]
    (paired,) = report["summary"]["paired"]
    assert paired["auc_diff_per_seed"]["1"] == pytest.approx(ours[0]["auc"] - 0.66)
    # Cached: the second call trains nothing (the run folder's result is untouched).
    stamp = (folder / "result.json").stat().st_mtime_ns
    assert _harness(tiny_data, fake_repo, tmp_path, "--seeds", "1", "--models", "dare",
                    "--setting", "short=--train.max_steps 3") == 0
    assert (folder / "result.json").stat().st_mtime_ns == stamp


def test_official_flags_follow_the_reference_script_lines(tiny_data, fake_repo, tmp_path):
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "3", "--models",
                    "twin_no_tr", "din", "twin_hard") == 0
    twin_no_tr, din, twin_hard = _calls(tmp_path / "cache")
    assert _flags(twin_no_tr)["-model_name"] == "twin" and "-use_cross_feature" not in twin_no_tr
    assert _flags(din)["-attn_func"] == "learnable" and "-use_time" in din.split()
    assert _flags(twin_hard)["-hard_or_soft"] == "hard" and _flags(twin_hard)["-seed"] == "3"
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--models", "sasrec") == 2


def test_a_reference_run_without_its_final_lines_is_an_error(tiny_data, fake_repo, tmp_path):
    proc = _run(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "1", "--models", "dare",
                env={"FAKE_TRAINER_UNFINISHED": "1"})
    assert proc.returncode == 2 and "official dare seed 1: the reference log has no 'Final test" in proc.stderr


@pytest.mark.parametrize("extra, message", [
    (["--setting", "bad=--data.batch_size 8"], "data.batch_size is set by the harness"),
    (["--setting", "bad=--model.d_att -1"], "model.d_att"),
    (["--val-every", "100000"], "would never validate"),
    (["--batch-size", "4096"], "would divide by zero"),
])
def test_bad_inputs_fail_before_running(tiny_data, fake_repo, tmp_path, extra, message):
    proc = _run(tiny_data, fake_repo, tmp_path, "--seeds", "1", *extra)
    assert proc.returncode == 2 and message in proc.stderr
    assert _calls(tmp_path / "cache") == []
