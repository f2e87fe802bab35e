"""The GPU check's dry run (``python -m benchmarks.gpu_check --device cpu --quick``, run as a command): every
part that can run without CUDA runs at small sizes, so the device time of a lent GPU goes to measuring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_check(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "TRITON_INTERPRET": "1"})


def test_cpu_dry_run_runs_every_part_but_the_cuda_smoke_test_and_reports_them(tmp_path):
    proc = run_check("--device", "cpu", "--quick", "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    parts = result["parts"]
    assert parts["smoke"]["status"] == "skipped" and "CUDA" in parts["smoke"]["reason"]
    assert {name: p["status"] for name, p in parts.items() if name != "smoke"} == dict.fromkeys(
        ["triton", "recipe", "throughput", "op", "profile"], "passed")
    assert " passed" in parts["triton"]["summary"] and "failed" not in parts["triton"]["summary"]
    assert parts["recipe"]["resumed_at_step"] == 3 and 0.0 <= parts["recipe"]["test_auc"] <= 1.0
    rows = parts["throughput"]["rows"]
    assert [(r["variant"], r["d_att"]) for r in rows] == [("dare", 8), ("dare", 16), ("dare", 32), ("dare", 64),
                                                          ("twin", 16), ("twin", 64)]
    assert all(r["pipeline"] == "sparse_dist" and r["samples_per_s"] > 0 for r in rows)
    assert "target" not in parts["throughput"]  # the target and the prefetch speedup are CUDA measurements
    assert {r["d_att"] for r in parts["op"]["rows"]} == {8, 16}
    assert all(0 < r["fraction_of_memcpy"] and r["fraction_of_nominal"] is None for r in parts["op"]["rows"])
    assert parts["profile"]["model_only_samples_per_s"] > 0
    assert "aten::" in (tmp_path / parts["profile"]["table"]).read_text()
    assert (tmp_path / "gpu_check_cpu.png").stat().st_size > 0
    assert "no part failed" in proc.stdout


def test_asking_for_cuda_without_a_device_is_refused_in_one_line(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_check("--device", "cuda", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert "torch sees no CUDA device" in proc.stderr
    assert not (tmp_path / "gpu_check_cuda.json").exists()
