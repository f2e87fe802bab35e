"""The long-history benchmark's small run (``python -m benchmarks.long_history``, run as a command): datasets
generated per N, the real training job per case, the bounded and the full aux head, and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_small_run_trains_every_case_and_reports_rates_memory_and_ratios(tmp_path):
    out = tmp_path / "long_history.json"
    cmd = [sys.executable, "-m", "benchmarks.long_history", "--max-len", "100", "300", "--full-aux-at", "300",
           "--users", "80", "--behaviors", "0", "--rounds", "1", "--steps", "2", "--workdir", str(tmp_path),
           "--output", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = {c["case"]: c for c in result["cases"]}
    assert list(cases) == ["N=100", "N=300", "N=300 full aux"]
    assert cases["N=300 full aux"]["overrides"] == ["--model.aux_behaviors", "null"]
    for case in cases.values():
        run = case["rounds"][0]
        assert run["steps"] == 2 and run["samples_per_s"] > 0 and run["peak_rss_bytes"] > 100 * 2**20
        assert 0.9 * case["max_len"] <= case["mean_history"] <= case["max_len"]
        assert run["behaviors_per_s"] == run["samples_per_s"] * case["mean_history"]
    assert cases["N=100"]["behaviors_per_s_vs_shortest"]["median"] == 1.0
    assert out.with_suffix(".png").stat().st_size > 0
