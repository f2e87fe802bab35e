"""Kernel choice: the enum the config validates against, AUTO resolution, and a triton-free install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dare_rec.config import OP_KERNELS, ConfigError
from dare_rec.ops.kernel import Kernel, resolve_kernel
from tests.conftest import tiny_config


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_config_accepts_exactly_the_kernel_enum():
    assert OP_KERNELS == ("pytorch", "triton", "auto") == tuple(k.value for k in Kernel)
    for name in OP_KERNELS:
        assert tiny_config("--model.op_kernel", name).validate().model.op_kernel == name
    with pytest.raises(ConfigError, match="model.op_kernel"):
        tiny_config("--model.op_kernel", "cuda").validate()


def test_explicit_kernels_are_not_resolved():
    assert resolve_kernel(Kernel.PYTORCH, "cuda") == Kernel.PYTORCH
    assert resolve_kernel(Kernel.TRITON, "cpu") == Kernel.TRITON


def test_triton_kernel_on_cpu_without_the_interpreter_fails_clearly():
    result = run_python("""
        import os
        os.environ['TRITON_INTERPRET'] = '0'
        import torch
        from dare_rec.ops import Kernel, gsu_topk
        args = (torch.randn(3, 2), torch.tensor([0, 3]), torch.randn(1, 2), torch.randn(5), 2, 4, 1.0)
        try:
            gsu_topk(*args, kernel=Kernel.TRITON)
        except RuntimeError as e:
            assert 'TRITON_INTERPRET=1' in str(e) and "'auto'" in str(e), e
        else:
            raise AssertionError('no error')
    """)
    assert result.returncode == 0, result.stderr


def test_config_does_not_import_torch():
    """``dare-rec prepare`` validates the config without loading torch (ops/__init__ resolves names lazily)."""
    result = run_python("""
        import sys
        import dare_rec.config, dare_rec.ops.kernel, dare_rec.pipelines.prepare
        assert 'torch' not in sys.modules, 'torch was imported'
    """)
    assert result.returncode == 0, result.stderr


def test_everything_imports_and_runs_without_triton():
    """A CPU install without the [triton] extra: importing fails for triton only; AUTO falls back to the
    reference, an explicit 'triton' kernel fails with the install command."""
    result = run_python("""
        import sys
        sys.modules['triton'] = None  # every 'import triton' now raises ImportError
        import torch
        import dare_rec.modules.model
        from dare_rec.ops import Kernel, gsu_topk
        from dare_rec.ops.kernel import resolve_kernel, triton_available
        assert not triton_available()
        assert resolve_kernel(Kernel.AUTO, 'cuda') == Kernel.PYTORCH
        args = (torch.randn(3, 2), torch.tensor([0, 3]), torch.randn(1, 2), torch.randn(5), 2, 4, 1.0)
        assert gsu_topk(*args, kernel=Kernel.AUTO).top_mask.all()
        try:
            gsu_topk(*args, kernel=Kernel.TRITON)
        except ImportError as e:
            assert "pip install -e '.[triton]'" in str(e), e
        else:
            raise AssertionError('the triton kernel ran without triton')
    """)
    assert result.returncode == 0, result.stderr
