"""The candidate-scoring benchmark's small run (``python -m benchmarks.candidates``, run as a command): both
models, both paths, the top-K A/B, and the ratios it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_small_run_times_every_case_with_both_topks_and_reports_ratios(tmp_path):
    out = tmp_path / "candidates.json"
    # N = 4,000 takes row_topk's two-pass path (rows of at least MIN_ROW and 8 K^2 slots)
    cmd = [sys.executable, "-m", "benchmarks.candidates", "--max-len", "4000", "--candidates", "6", "--rounds", "1",
           "--repeats", "1", "--topk", "row", "torch", "--output", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = {(r["model"], r["path"], r["topk"]) for r in result["rows"]}
    assert cases == {(model, path, topk) for model in ("DARE d_att 16", "TWIN d 64")
                     for path in ("score_candidates", "replicated forward") for topk in ("row", "torch")}
    assert all(r["candidates_per_s"] > 0 and r["max_len"] == 4000 for r in result["rows"])
    assert set(result["dare_over_twin"]) == {f"N=4000, {path}, {topk}" for path in ("score_candidates",
                                                                                   "replicated forward")
                                             for topk in ("row", "torch")}
    assert set(result["row_topk_over_torch_topk"]) == {f"{model}, N=4000, {path}"
                                                       for model in ("DARE d_att 16", "TWIN d 64")
                                                       for path in ("score_candidates", "replicated forward")}
