"""Top-K over jagged per-behavior scores, behind one dispatcher: the selection step of a GSU whose scores
come from elsewhere (DIN's attention MLP, or the hard-search key "same category, most recent first")."""

from __future__ import annotations

import torch

from dare_rec.ops.gsu_topk import GsuOutput, mask_value_for
from dare_rec.ops.kernel import Kernel
from dare_rec.ops.pytorch.pt_jagged_topk import pt_jagged_topk


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

    Returns:
        :class:`GsuOutput`: ``scores [B, N]`` (differentiable w.r.t. ``jagged_scores``, padding =
        the dtype's lowest value), ``top_indices [B, K']`` and ``top_mask [B, K']`` with K' = min(k, N).
    """
    if not torch.jit.is_scripting() and not torch.compiler.is_compiling():
        torch._assert(jagged_scores.dim() == 1, "jagged_topk: jagged_scores [L] expected")
        torch._assert(k > 0, "jagged_topk: k must be positive")
    if kernel == Kernel.PYTORCH:
        return GsuOutput(*pt_jagged_topk(jagged_scores, offsets, k, max_len, mask_value_for(jagged_scores.dtype)))
    raise NotImplementedError(f"jagged_topk: no {kernel} kernel")
