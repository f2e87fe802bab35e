"""GSU (general search unit) and ESU (exact search unit, TIN style) of DESIGN.md §4.

These modules hold no sharded tables, so TorchRec's train pipelines treat them as leaves when they
fx-trace the model: their data-dependent code (top-K, jagged gathers) is never symbolically traced.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dare_rec.modules.embeddings import PositionTable
from dare_rec.ops import GsuOutput, Kernel, gsu_topk, jagged_gather, jagged_weighted_sum


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``mask``; rows with nothing valid give all-zero weights.

    Args:
        scores: ``[B, K]``.
        mask: ``[B, K]`` bool.
    """
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * mask.to(scores.dtype)


class GeneralSearchUnit(nn.Module):
    """Selects the K behaviors most relevant to the target in attention space.

    ``s_i = <e_i^A, v_t^A> / sqrt(D_att) + <p_i^A, p_0^A> / sqrt(d_pos)`` with D_att the width of the
    concatenated [item; cate] attention vector (2 * d_att), then top-K over valid behaviors.
    """

    def __init__(self, att_width: int, d_pos: int, top_k: int, max_len: int, kernel: Kernel) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(att_width)
        self.position_scale = 1.0 / math.sqrt(d_pos)
        self.top_k = top_k
        self.max_len = max_len
        self.kernel = kernel

    def forward(self, att_hist: torch.Tensor, offsets: torch.Tensor, att_target: torch.Tensor,
                positions: PositionTable) -> GsuOutput:
        """
        Args:
            att_hist: ``[L, D_att]`` jagged attention vectors; offsets ``[B + 1]``.
            att_target: ``[B, D_att]``.
            positions: the attention position table (``[N + 1, d_pos]``).
        """
        table = positions.weight
        position_bias = (table @ table[0]) * self.position_scale
        return gsu_topk(att_hist, offsets, att_target, position_bias, self.top_k, self.max_len, self.scale,
                        self.kernel)


class ExactSearchUnit(nn.Module):
    """TIN-style aggregation of the selected behaviors in representation space.

    ``w = softmax(s_idx)`` over the selected K, ``h = sum_k w_k * e_k^R`` with ``e^R = [item; cate; p^R]``.
    The target-aware product ``v_t^R * h`` is formed by the over-arch input (see DareModel).
    """

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, gsu: GsuOutput, rep_hist: torch.Tensor, offsets: torch.Tensor,
                positions: PositionTable) -> torch.Tensor:
        """
        Args:
            gsu: the search result (scores ``[B, N]``, top_indices / top_mask ``[B, K]``).
            rep_hist: ``[L, 2 * d_rep]`` jagged representation vectors; offsets ``[B + 1]``.
            positions: the representation position table.

        Returns:
            h ``[B, 2 * d_rep + d_pos]``.
        """
        weights = masked_softmax(gsu.scores.gather(1, gsu.top_indices), gsu.top_mask)
        selected = jagged_gather(rep_hist, offsets, gsu.top_indices, gsu.top_mask, self.kernel)
        lengths = (offsets[1:] - offsets[:-1]).unsqueeze(1)
        selected_pos = positions((lengths - gsu.top_indices).clamp(min=0))
        return torch.cat([
            (weights.unsqueeze(-1) * selected).sum(1),
            (weights.unsqueeze(-1) * selected_pos).sum(1),
        ], dim=1)


class FullSequenceAttention(nn.Module):
    """The ESU aggregation with a softmax over *all* valid behaviors instead of the top K (the aux head's
    input, as in the reference code); costs O(N * d_rep) and so only runs in training."""

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, scores: torch.Tensor, rep_hist: torch.Tensor, offsets: torch.Tensor,
                positions: PositionTable) -> torch.Tensor:
        """
        Args:
            scores: ``[B, N]`` GSU scores of every slot.
            rep_hist: ``[L, 2 * d_rep]`` jagged representation vectors; offsets ``[B + 1]``.
            positions: the representation position table.

        Returns:
            ``[B, 2 * d_rep + d_pos]``.
        """
        lengths = (offsets[1:] - offsets[:-1]).unsqueeze(1)
        slots = torch.arange(scores.size(1), device=scores.device).unsqueeze(0)
        weights = masked_softmax(scores, slots < lengths)
        slot_pos = positions((lengths - slots).clamp(min=0))
        return torch.cat([
            jagged_weighted_sum(rep_hist, offsets, weights, self.kernel),
            (weights.unsqueeze(-1) * slot_pos).sum(1),
        ], dim=1)
