"""Kernel choice for the custom ops. Every op has one dispatcher that routes on this enum."""

from __future__ import annotations

import enum


class Kernel(str, enum.Enum):
    """Implementation of an op. PYTORCH is the reference: plain autograd-able torch ops, CPU and GPU.

    A fast path (e.g. Triton on GPU) is added as a new member plus one branch in each dispatcher, and is
    parity-tested against PYTORCH forward and backward.
    """

    PYTORCH = "pytorch"
