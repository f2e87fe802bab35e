"""GSU top-K: the search step of long-sequence CTR models, behind one dispatcher.

For every sample b with history keys ``e_1 .. e_L`` (attention space) and target query ``v``::

    s_j = <e_j, v> * scale + position_bias[(b,) pos_j] (+ key_bias_j)     pos_j = L - j (1 = most recent)
    idx = TopK(s, K)                                     over valid behaviors only

Cost is O(L * D) for scoring plus a top-K over ``[B, N]``: everything on the N axis is cheap in D = d_att,
which is DARE's point (a small attention dimension makes search cheap).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from dare_rec.ops.kernel import Kernel, resolve_kernel, triton_ops
from dare_rec.ops.pytorch.pt_gsu_topk import pt_gsu_topk


class GsuOutput(NamedTuple):
    """Result of :func:`gsu_topk`.

    Attributes:
        scores: ``[B, N]`` relevance of every slot (slot j = j-th oldest behavior), differentiable w.r.t.
            keys, query and position_bias; ``mask_value`` past a row's length.
        top_indices: ``[B, K']`` int64 slots of the selected behaviors, K' = min(K, N). Where a row has
            fewer than K' behaviors the surplus entries point at padding and are masked out.
        top_mask: ``[B, K']`` bool, True where the selected slot is a real behavior.
    """

    scores: torch.Tensor
    top_indices: torch.Tensor
    top_mask: torch.Tensor


def mask_value_for(dtype: torch.dtype) -> float:
    """Score given to padding: below any real score, and softmax-safe (exp underflows to exactly 0)."""
    return torch.finfo(dtype).min


def gsu_topk(
    keys: torch.Tensor,
    offsets: torch.Tensor,
    query: torch.Tensor,
    position_bias: torch.Tensor,
    k: int,
    max_len: int,
    scale: float,
    kernel: Kernel = Kernel.PYTORCH,
    key_bias: Optional[torch.Tensor] = None,
) -> GsuOutput:
    """Scores every history behavior against its target and selects the top ``k`` per sample.

    Args:
        keys: ``[L, D]`` attention vectors of all behaviors of the batch (jagged values).
        offsets: ``[B + 1]`` int64 row offsets into ``keys`` (``offsets[0] = 0``, ``offsets[B] = L``); every
            row length must be <= ``max_len`` (the reader truncates histories; not re-checked here, because
            checking values would synchronise the device with the host every step).
        query: ``[B, D]`` attention vector of each sample's target.
        position_bias: ``[P]`` additive score per target-relative position, P > ``max_len``, shared by every
            sample; or ``[B, P]``, one row per sample (target-decoupled positions: each sample's objective slice).
        k: behaviors to select per sample (fewer are valid when a history is shorter).
        max_len: N, the padded width of ``scores``.
        scale: multiplies the dot product (e.g. 1 / sqrt(D)).
        kernel: implementation (AUTO is resolved from the inputs' device, see :func:`resolve_kernel`).
        key_bias: ``[L]`` optional additive score of each behavior (jagged like ``keys``; the side fields'
            term), differentiable like ``position_bias``.

    Returns:
        :class:`GsuOutput`. Empty histories select nothing (``top_mask`` all False), never produce NaN.
    """
    if not torch.jit.is_scripting() and not torch.compiler.is_compiling():
        torch._assert(keys.dim() == 2 and query.dim() == 2, "gsu_topk: keys [L, D] and query [B, D] expected")
        torch._assert(keys.size(1) == query.size(1), "gsu_topk: keys and query must have the same width D")
        torch._assert(offsets.numel() == query.size(0) + 1, "gsu_topk: offsets must have B + 1 entries")
        torch._assert(position_bias.size(-1) > max_len, "gsu_topk: position_bias needs max_len + 1 entries")
        torch._assert(position_bias.dim() == 1 or (position_bias.dim() == 2
                                                    and position_bias.size(0) == query.size(0)),
                      "gsu_topk: position_bias must be [P] or [B, P]")
        torch._assert(k > 0, "gsu_topk: k must be positive")
        torch._assert(keys.size(0) <= query.size(0) * max_len, "gsu_topk: more keys than B * max_len")
        torch._assert(key_bias is None or key_bias.shape == keys.shape[:1], "gsu_topk: key_bias must be [L]")
    mask_value = mask_value_for(torch.promote_types(keys.dtype, query.dtype))
    if resolve_kernel(kernel, keys.device.type) == Kernel.TRITON:
        triton = triton_ops(keys.device.type)
        return GsuOutput(*triton.triton_gsu_topk(keys, offsets, query, position_bias, k, max_len, scale, mask_value,
                                                 key_bias))
    return GsuOutput(*pt_gsu_topk(keys, offsets, query, position_bias, k, max_len, scale, mask_value, key_bias))
