"""Jagged gathers used by the ESU, behind one dispatcher each (layout: see ``ops/pytorch/pt_jagged.py``)."""

from __future__ import annotations

import torch

from dare_rec.ops.kernel import Kernel
from dare_rec.ops.pytorch.pt_jagged import pt_jagged_gather, pt_jagged_weighted_sum


def jagged_gather(
    values: torch.Tensor,
    offsets: torch.Tensor,
    indices: torch.Tensor,
    mask: torch.Tensor,
    kernel: Kernel = Kernel.PYTORCH,
) -> torch.Tensor:
    """Gathers K behaviors per row of a jagged tensor (the ESU reading only the selected behaviors).

    Args:
        values: ``[L, D]`` jagged values.
        offsets: ``[B + 1]`` row offsets.
        indices: ``[B, K]`` slots within each row.
        mask: ``[B, K]`` bool; masked entries come back as zeros (their index is never read).

    Returns:
        ``[B, K, D]``; gradients flow to the gathered rows of ``values``.
    """
    if kernel == Kernel.PYTORCH:
        return pt_jagged_gather(values, offsets, indices, mask)
    raise NotImplementedError(f"jagged_gather: no {kernel} kernel")


def jagged_weighted_sum(
    values: torch.Tensor,
    offsets: torch.Tensor,
    weights: torch.Tensor,
    kernel: Kernel = Kernel.PYTORCH,
) -> torch.Tensor:
    """Weighted sum of every behavior of each row (the full-sequence pooling of the aux head).

    Args:
        values: ``[L, D]`` jagged values.
        offsets: ``[B + 1]`` row offsets.
        weights: ``[B, N]`` padded weights; column j weighs slot j, columns past the row length are ignored.

    Returns:
        ``[B, D]``; empty rows give zeros.
    """
    if kernel == Kernel.PYTORCH:
        return pt_jagged_weighted_sum(values, offsets, weights)
    raise NotImplementedError(f"jagged_weighted_sum: no {kernel} kernel")
