"""The AUC-vs-N report (``python -m benchmarks.auc_vs_n``, run as a command) on an experiment's results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_report_groups_seeds_by_variant_and_n_next_to_the_planted_references(tiny_data, tmp_path):
    runs = [{"variant": v, "setting": f"data.max_len={n}", "seed": s, "run": f"{v}-{n}-{s}", "auc": auc}
            for v, n, s, auc in [("dare", 5, 1, 0.60), ("dare", 5, 2, 0.62), ("dare", 40, 1, 0.70),
                                 ("dare", 40, 2, 0.74), ("twin", 40, 1, 0.69)]]
    (tmp_path / "results.json").write_text(json.dumps({"config": "configs/tiny.yaml", "runs": runs}))
    out = tmp_path / "auc_vs_n.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.auc_vs_n", "--experiment", str(tmp_path), "--data",
                           str(tiny_data), "--output", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["variant"], r["max_len"]): r for r in report["rows"]}
    assert list(rows) == [("dare", 5), ("dare", 40), ("twin", 40)]
    assert rows[("dare", 40)]["auc_mean"] == pytest.approx(0.72) and rows[("dare", 40)]["seeds"] == 2
    assert rows[("twin", 40)]["auc_std"] == 0.0
    # 40 covers every tiny history (at most 40 behaviors): the planted logit on the last 40 is the oracle's
    assert rows[("dare", 40)]["planted_auc_last_n"] == pytest.approx(report["oracle_auc"], abs=1e-6)
    assert rows[("dare", 5)]["planted_auc_last_n"] < report["oracle_auc"]
    assert out.with_suffix(".png").stat().st_size > 0
