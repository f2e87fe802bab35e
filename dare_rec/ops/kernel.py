"""Kernel choice for the custom ops. Every op has one dispatcher that routes on this enum.

This module imports neither torch nor triton, so the configuration can validate ``model.op_kernel``
against :class:`Kernel` without loading either (``dare-rec prepare`` never imports torch).
"""

from __future__ import annotations

import enum
import functools
import importlib
import os
import shutil

TRITON_MODULE = "dare_rec.ops.triton"


class Kernel(str, enum.Enum):
    """Implementation of an op.

    * PYTORCH: the reference, autograd-able torch (and FBGEMM jagged) ops, CPU and GPU; the default.
    * TRITON: fused Triton kernels with Triton backward passes (``dare_rec.ops.triton``), parity-tested against
      PYTORCH forward and backward. Needs the optional ``triton`` package and CUDA tensors, or the Triton
      interpreter on CPU (``TRITON_INTERPRET=1`` in the environment before triton is first imported; torchrec
      imports it, so in practice before torchrec).
    * AUTO: TRITON for CUDA tensors when triton can be imported, PYTORCH otherwise; resolved per call from
      the inputs' device by :func:`resolve_kernel`.
    """

    PYTORCH = "pytorch"
    TRITON = "triton"
    AUTO = "auto"


class UpdateKernel(str, enum.Enum):
    """Implementation of the row-sparse Adam table update on CPU (``dare_rec.ops.row_sparse_adam``).

    * PYTORCH: the eager reference (a dozen gathers, element-wise ops and scatters over the updated rows).
    * COMPILED: the same function compiled by TorchInductor into one fused C++ loop over the updated rows; needs
      a C++ compiler, compiles once per process (about 20 s the first time on a machine, then from
      Inductor's on-disk cache) and is parity-tested against PYTORCH.
    * AUTO: COMPILED when a C++ compiler is on PATH, else PYTORCH.
    """

    PYTORCH = "pytorch"
    COMPILED = "compiled"
    AUTO = "auto"


def resolve_update_kernel(kernel: UpdateKernel) -> UpdateKernel:
    """AUTO -> COMPILED when a C++ compiler (``$CXX``, g++, c++ or clang++) is on PATH, else PYTORCH."""
    if kernel != UpdateKernel.AUTO:
        return kernel
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return UpdateKernel.COMPILED if any(c and shutil.which(c) for c in compilers) else UpdateKernel.PYTORCH


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether the Triton kernels import (triton installed and working); checked once per process."""
    try:
        importlib.import_module(TRITON_MODULE)
    except ImportError:
        return False
    return True


def resolve_kernel(kernel: Kernel, device_type: str) -> Kernel:
    """The concrete kernel for inputs on ``device_type`` ("cpu", "cuda", ...): AUTO becomes TRITON on CUDA
    when triton is importable and PYTORCH otherwise; PYTORCH and TRITON are returned as they are."""
    if kernel != Kernel.AUTO:
        return kernel
    return Kernel.TRITON if device_type == "cuda" and triton_available() else Kernel.PYTORCH


def triton_ops(device_type: str):
    """The ``dare_rec.ops.triton`` module for inputs on ``device_type``.

    Raises:
        ImportError: triton is missing (the message names the install command).
        RuntimeError: the inputs are not on CUDA and the Triton interpreter is off.
    """
    if device_type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"the 'triton' kernel runs on CUDA tensors (these are on {device_type}); set "
                           "TRITON_INTERPRET=1 before triton is imported to run it in Triton's CPU interpreter, "
                           "or use model.op_kernel 'pytorch' / 'auto'")
    try:
        return importlib.import_module(TRITON_MODULE)
    except ImportError as e:
        raise ImportError(
            "the 'triton' kernel needs the optional triton package: pip install -e '.[triton]' "
            f"(import failed: {e})"
        ) from e
