"""Reference (PyTorch) GSU: score every behavior against the target, keep the top K per row."""

from __future__ import annotations

import torch

from dare_rec.ops.pytorch.pt_jagged import pt_jagged_layout


def pt_gsu_topk(
    keys: torch.Tensor,
    offsets: torch.Tensor,
    query: torch.Tensor,
    position_bias: torch.Tensor,
    k: int,
    max_len: int,
    scale: float,
    mask_value: float,
):
    """See :func:`dare_rec.ops.gsu_topk.gsu_topk` for the contract.

    Scores are computed on the jagged values (cost O(L * D), no padded ``[B, N, D]`` tensor) and only the
    scalar scores are scattered into the padded ``[B, N]`` view that top-K runs on.
    """
    rows, slots, lengths = pt_jagged_layout(offsets)
    positions = lengths[rows] - slots
    jagged_scores = (keys * query[rows]).sum(-1) * scale + position_bias[positions]
    scores = jagged_scores.new_full((query.size(0), max_len), mask_value)
    scores = scores.index_put((rows, slots), jagged_scores)
    top_indices = scores.topk(min(k, max_len), dim=1).indices
    top_mask = top_indices < lengths.unsqueeze(1)
    return scores, top_indices, top_mask
