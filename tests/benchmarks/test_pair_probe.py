"""The pair probe (``python -m benchmarks.pair_probe``), run as a command on a trained run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dare_rec.data.synthetic import generate
from tests.conftest import tiny_config, tiny_run_args

REPO = Path(__file__).resolve().parents[2]


def test_command_fits_a_trained_run_on_a_pair_world(tmp_path):
    """A few steps of the tiny run on a tiny world with a planted pair term; the command reads its best
    checkpoint, checks that the reader's samples line up with the test split, and writes one finite fit."""
    data = tmp_path / "pair"
    generate(tiny_config("--synthetic.pair_weight", "3").synthetic, data, progress=False)
    run = tmp_path / "run"
    # the training job as a command too: nothing of the test process's state reaches either run
    trained = subprocess.run([sys.executable, "-m", "dare_rec.pipelines.train", *tiny_run_args(data, run)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.pair_probe", str(run), "--data", str(data),
                           "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["run"] == str(run) and row["planted"] == 3.0 and 0 < row["pair_share"] < 1, (row, proc.stdout)
    assert all(np.isfinite(row[k]) for k in ("intercept", "blind", "pair")), (row, proc.stdout)
