"""The FBGEMM stand-in of ``benchmarks/device_check.sh`` (``benchmarks/device_shim``): with it first on the path
the GSU reference gives FBGEMM's scores, selection and gradients, and the op tests pass without TorchRec."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import torch


REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "benchmarks" / "device_shim"

# jagged rows of 0..9 behaviors, dim 6, K 4: the reference's scores, selection and the gradients of keys, query
# and position bias for a fixed upstream gradient
GSU_RUN = textwrap.dedent("""
    import sys, torch
    from dare_rec.ops import Kernel, gsu_topk
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 0, 9, 1, 5])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    keys = torch.randn(int(lengths.sum()), 6, generator=g).requires_grad_()
    query = torch.randn(5, 6, generator=g).requires_grad_()
    bias = torch.randn(10, generator=g).requires_grad_()
    out = gsu_topk(keys, offsets, query, bias, 4, 9, 0.5, kernel=Kernel.PYTORCH)
    out.scores.backward(torch.randn(out.scores.shape, generator=g))
    torch.save({"scores": out.scores.detach(), "top": out.top_indices, "mask": out.top_mask, "keys": keys.grad,
                "query": query.grad, "bias": bias.grad}, sys.argv[1])
""")


def run_with(path: str, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", GSU_RUN, str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_gsu_reference_matches_fbgemm_with_the_stand_in(tmp_path):
    run_with(f"{SHIM}{os.pathsep}{REPO}", tmp_path / "shim.pt")
    run_with(str(REPO), tmp_path / "fbgemm.pt")
    shim, fbgemm = torch.load(tmp_path / "shim.pt"), torch.load(tmp_path / "fbgemm.pt")
    assert torch.equal(shim["top"], fbgemm["top"]) and torch.equal(shim["mask"], fbgemm["mask"])
    for name in ("scores", "keys", "query", "bias"):
        torch.testing.assert_close(shim[name], fbgemm[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(fbgemm["query"], torch.zeros_like(fbgemm["query"]))  # the gradient did reach it


def test_the_stand_in_is_what_the_subprocess_imports(tmp_path):
    code = "import fbgemm_gpu; print(getattr(fbgemm_gpu, 'STAND_IN', False))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REPO}"})
    assert proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_op_tests_pass_with_the_stand_in_and_without_torchrec():
    """What device_check.sh runs, here under Triton's interpreter, with TorchRec and torchx made unimportable."""
    blocker = textwrap.dedent("""
        import sys
        for name in ("torchrec", "torchx"):
            sys.modules[name] = None  # import raises ImportError, as on a machine without them
        import pytest
        sys.exit(pytest.main(sys.argv[1:]))
    """)
    # the tests the script leaves out, read from it, so that this runs what it runs
    deselected = re.findall(r"--deselect (\S+)", (REPO / "benchmarks" / "device_check.sh").read_text())
    assert len(deselected) == 2, deselected
    proc = subprocess.run(
        [sys.executable, "-c", blocker, "-q", "-p", "no:cacheprovider", "tests/ops", "-k", "gsu",
         *(arg for test in deselected for arg in ("--deselect", test))],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REPO}", "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
