"""Reference (PyTorch) GSU: score every behavior against the target, keep the top K per row."""

from __future__ import annotations

import torch

from dare_rec.ops.pytorch.pt_jagged import pt_jagged_layout
from dare_rec.ops.pytorch.pt_jagged_topk import pt_jagged_topk


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
    return pt_jagged_topk(jagged_scores, offsets, k, max_len, mask_value)
