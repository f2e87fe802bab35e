"""Jagged ops behind one dispatcher each (layout: see ``ops/pytorch/pt_jagged.py``): the ESU's gathers and the
selection step of a GSU whose scores come from elsewhere (DIN's attention MLP, hard search)."""

from __future__ import annotations

from typing import Tuple

import torch

from dare_rec.ops.gsu import GsuOutput, mask_value_for
from dare_rec.ops.kernel import Kernel, resolve_kernel, triton_ops
from dare_rec.ops.pytorch.pt_jagged import pt_jagged_gather, pt_jagged_layout, pt_jagged_weighted_sum
from dare_rec.ops.pytorch.pt_jagged_topk import pt_jagged_topk


def jagged_layout(offsets: torch.Tensor, total: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per flat value of a jagged tensor with ``total`` values: its row ``[L]`` and its slot within the row
    ``[L]``; and the row lengths ``[B]``. Index arithmetic without a fast path of its own (the Triton kernels
    compute it inline); ``total`` is a shape (``values.size(0)``), so nothing is read on the host."""
    return pt_jagged_layout(offsets, total)


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
    if resolve_kernel(kernel, values.device.type) == Kernel.TRITON:
        return triton_ops(values.device.type).triton_jagged_gather(values, offsets, indices, mask)
    return pt_jagged_gather(values, offsets, indices, mask)


def jagged_weighted_sum(
    values: torch.Tensor,
    offsets: torch.Tensor,
    weights: torch.Tensor,
    kernel: Kernel = Kernel.PYTORCH,
) -> torch.Tensor:
    """Weighted sum of every behavior of each row (the full-sequence pooling of the aux head).

    Args:
        values: ``[L, D]`` jagged values.
        offsets: ``[B + 1]`` row offsets, rows at most N long.
        weights: ``[B, N]`` padded weights; column j weighs slot j, columns past the row length are ignored.

    Returns:
        ``[B, D]``; empty rows give zeros.
    """
    if resolve_kernel(kernel, values.device.type) == Kernel.TRITON:
        return triton_ops(values.device.type).triton_jagged_weighted_sum(values, offsets, weights)
    return pt_jagged_weighted_sum(values, offsets, weights)


def jagged_topk(
    jagged_scores: torch.Tensor,
    offsets: torch.Tensor,
    k: int,
    max_len: int,
    kernel: Kernel = Kernel.PYTORCH,
) -> GsuOutput:
    """Selects the ``k`` highest-scoring behaviors of every row.

    Args:
        jagged_scores: ``[L]`` one score per behavior (jagged values, rows oldest -> newest).
        offsets: ``[B + 1]`` int64 row offsets; every row length must be <= ``max_len``.
        k: behaviors to select per row (fewer are valid when a row is shorter).
        max_len: N, the padded width of the returned scores.
        kernel: implementation.

    Returns:
        :class:`GsuOutput`: ``scores [B, N]`` (differentiable w.r.t. ``jagged_scores``, padding =
        the dtype's lowest value), ``top_indices [B, K']`` and ``top_mask [B, K']`` with K' = min(k, N).
    """
    if not torch.jit.is_scripting() and not torch.compiler.is_compiling():
        torch._assert(jagged_scores.dim() == 1, "jagged_topk: jagged_scores [L] expected")
        torch._assert(k > 0, "jagged_topk: k must be positive")
    mask_value = mask_value_for(jagged_scores.dtype)
    if resolve_kernel(kernel, jagged_scores.device.type) == Kernel.TRITON:
        triton = triton_ops(jagged_scores.device.type)
        return GsuOutput(*triton.triton_jagged_topk(jagged_scores, offsets, k, max_len, mask_value))
    return GsuOutput(*pt_jagged_topk(jagged_scores, offsets, k, max_len, mask_value))
