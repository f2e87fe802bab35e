"""The side-by-side harness (benchmarks/vs_official.py) against a stand-in for the reference checkout.

The stand-in ``train_pytorch.py`` reads the exported files the way the reference does (``train_`` prefix,
consecutive indices from 1, ``[R, 6]`` object rows), prints the reference's final lines with a seed- and
model-dependent AUC, and exits with status 120 after a complete run, as the reference does. Our side runs
the real ``dare-rec train`` / ``evaluate`` CLI on the tiny dataset.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import vs_official as V
from tests.conftest import TINY_PRESET

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
    print(f"Final test auc: {auc:.4f}.")
    print("Final test logloss: 0.6100")
    print(f"Final test num: 60/{len(np.load(args.test_dataset_path, allow_pickle=True))}")
    print(f"Final test category average auc: {auc - 0.02:.4f}.")
    np.save(os.path.join(args.log_dir, "grid_search.npy"), np.array([auc]))
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


def _harness(tiny_data, fake_repo, tmp_path, *extra) -> int:
    return V.main(["accuracy", "--config", str(TINY_PRESET), "--data", str(tiny_data), "--official-repo",
                   str(fake_repo), "--official-python", sys.executable, "--cache", str(tmp_path / "cache"),
                   "--results-dir", str(tmp_path / "results"), "--name", "t", "--epochs", "2", "--val-every", "20",
                   *extra])


def test_official_side_flags_report_and_cache(tiny_data, fake_repo, tmp_path):
    cache = tmp_path / "cache"
    assert _harness(tiny_data, fake_repo, tmp_path, "--sides", "official", "--seeds", "1", "2", "--models",
                    "dare", "twin") == 0
    calls = _calls(cache)
    assert len(calls) == 4
    first = calls[0].split()
    flag = {first[i]: first[i + 1] for i in range(len(first) - 1) if first[i].startswith("-")}
    assert flag["-model_name"] == "DARE" and flag["-seed"] == "1" and flag["-batch_size"] == "64"
    assert flag["-epoch"] == "2" and flag["-test_interval"] == "20" and flag["-long_seq_split"] == "0:32"
    assert flag["-max_length"] == "32" and flag["-use_cross_feature"] == "True" and flag["-learning_rate"] == "0.01"

    report = json.loads((tmp_path / "results" / "vs_official_t.json").read_text())
    table = {(e["code"], e["model"]): e for e in report["summary"]["table"]}
    assert table[("official", "dare")]["auc_mean"] == pytest.approx((0.66 + 0.67) / 2)
    assert table[("official", "twin")]["auc_std"] == pytest.approx(0.00707, abs=1e-4)
    assert table[("official", "dare")]["best_val_steps"] == [40, 40]
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
    assert len(ours) == 1 and 0.0 <= ours[0]["auc"] <= 1.0 and ours[0]["checkpoint_step"] == 3
    assert "--model.variant dare" in ours[0]["command"] and "--train.seed 1" in ours[0]["command"]
    assert "--data.batch_size 64" in ours[0]["command"] and "--train.val_every 20" in ours[0]["command"]
    (paired,) = report["summary"]["paired"]
    assert paired["auc_diff_per_seed"]["1"] == pytest.approx(ours[0]["auc"] - 0.66)
    # Cached: the second call trains nothing (the run folder's result is untouched).
    (folder,) = (tmp_path / "cache" / "runs").glob("ours-dare-seed1-*")
    stamp = (folder / "result.json").stat().st_mtime_ns
    assert _harness(tiny_data, fake_repo, tmp_path, "--seeds", "1", "--models", "dare",
                    "--setting", "short=--train.max_steps 3") == 0
    assert (folder / "result.json").stat().st_mtime_ns == stamp


def test_official_flags_follow_the_reference_script_lines():
    protocol = V.Protocol(data=Path("."), meta=None, batch_size=2048, epochs=2, val_every=150, max_length=200)
    export = {"max_length": 200, "item_n": 11, "cate_n": 5}

    def flags(model):
        argv = V.official_flags(model, protocol, export, seed=3)
        return argv, {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if not argv[i + 1].startswith("-")}

    argv, values = flags("twin_no_tr")
    assert values["-model_name"] == "twin" and "-use_cross_feature" not in argv
    argv, values = flags("din")
    assert values["-attn_func"] == "learnable" and "-use_time" in argv
    argv, values = flags("twin_hard")
    assert values["-hard_or_soft"] == "hard" and values["-seed"] == "3" and values["-test_interval"] == "150"
    with pytest.raises(V.HarnessError, match="no reference script line"):
        flags("sasrec")


def test_parse_official_log_needs_the_final_lines():
    text = ("Testing finishes: epoch=0, iteration=10, test_auc=0.7000, test_loss=1.0\n"
            "Testing finishes: epoch=1, iteration=20, test_auc=0.7500, test_loss=1.0\n"
            "Testing finishes: epoch=2, iteration=30, test_auc=0.7500, test_loss=1.0\n"
            "Final test auc: 0.7400.\nFinal test logloss: 0.9\nFinal test num: 90/96\n"
            "Final test category average auc: 0.7300.\n")
    parsed = V.parse_official_log(text)
    assert (parsed["auc"], parsed["gauc_category"], parsed["logloss"]) == (0.74, 0.73, 0.9)
    assert parsed["best_val_step"] == 20  # the first of equal validation AUCs, as the reference keeps it
    assert parsed["test_samples_scored"] == 96 and parsed["gauc_samples"] == 90
    with pytest.raises(V.HarnessError, match="Final test"):
        V.parse_official_log(text.split("Final")[0])


@pytest.mark.parametrize("extra, message", [
    (["--setting", "bad=--data.batch_size 8"], "data.batch_size is set by the harness"),
    (["--setting", "bad=--model.d_att -1"], "model.d_att"),
    (["--val-every", "100000"], "would never validate"),
    (["--batch-size", "4096"], "would divide by zero"),
])
def test_bad_inputs_fail_before_running(tiny_data, fake_repo, tmp_path, capsys, extra, message):
    assert _harness(tiny_data, fake_repo, tmp_path, "--seeds", "1", *extra) == 2
    assert message in capsys.readouterr().err
    assert _calls(tmp_path / "cache") == []
