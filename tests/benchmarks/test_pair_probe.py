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


def test_command_fits_trained_runs_on_a_pair_world(tmp_path):
    """A few steps of the tiny run, with one ESU layer and with two, on a tiny world with a planted pair term; the
    command reads each run's best checkpoint, checks that the reader's samples line up with the test split, and
    writes a finite fit and the partner's selection over the samples that carry the pair (layer 2's search and
    weights for the stacked run only)."""
    data = tmp_path / "pair"
    generate(tiny_config("--synthetic.pair_weight", "3").synthetic, data, progress=False)
    runs = {1: tmp_path / "one_layer", 2: tmp_path / "two_layers"}
    for layers, run in runs.items():
        # the training job as a command too: nothing of the test process's state reaches either run
        args = tiny_run_args(data, run, "--model.esu_layers", str(layers))
        trained = subprocess.run([sys.executable, "-m", "dare_rec.pipelines.train", *args], cwd=REPO,
                                 capture_output=True, text=True, timeout=300)
        assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.pair_probe", *map(str, runs.values()), "--data",
                           str(data), "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["run"] for row in rows] == [str(run) for run in runs.values()], proc.stdout
    test_samples = json.loads((data / "meta.json").read_text())["counts"]["test"]
    for layers, row in zip(runs, rows):
        assert row["planted"] == 3.0 and 0 < row["pair_share"] < 1, (row, proc.stdout)
        assert all(np.isfinite(row[k]) for k in ("intercept", "blind", "pair")), (row, proc.stdout)
        partner = row["partner"]
        assert partner["samples"] == round(row["pair_share"] * test_samples) > 0, partner
        assert 0 <= partner["partner_selected"] <= 1 and 0 < partner["valid_slots"] <= 10, partner  # tiny: top_k 10
        weights = [f"layer{layer}_{kind}_weight" for layer in range(1, layers + 1) for kind in ("partner", "target")]
        searches = [f"layer2_{k}" for k in ("partner_selected", "partner_slots", "valid_slots")] if layers == 2 else []
        assert sorted(k for k in partner if k.startswith("layer")) == sorted(weights + searches), partner
        assert all(0 <= partner[k] <= 1 for k in weights) and partner["layer1_target_weight"] > 0, partner
        if layers == 2:  # layer 2's own search selects as many slots as layer 1's (both top_k of the same histories)
            assert partner["layer2_valid_slots"] == partner["valid_slots"], partner
            assert 0 <= partner["layer2_partner_selected"] <= 1, partner
