"""Reference (PyTorch) top-K over the valid slots of jagged per-behavior scores."""

from __future__ import annotations

from typing import Tuple

import torch

from dare_rec.ops.pytorch.pt_jagged import pt_jagged_layout
from dare_rec.ops.topk import row_topk


def pt_jagged_topk(jagged_scores: torch.Tensor, offsets: torch.Tensor, k: int, max_len: int,
                   mask_value: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See :func:`dare_rec.ops.jagged.jagged_topk`: scatters ``[L]`` scores into the padded ``[B, N]``
    view (``mask_value`` past each row's length) and takes the top ``k`` per row."""
    rows, slots, lengths = pt_jagged_layout(offsets, jagged_scores.size(0))
    scores = jagged_scores.new_full((offsets.numel() - 1, max_len), mask_value)
    scores = scores.index_put((rows, slots), jagged_scores)
    top_indices = row_topk(scores, min(k, max_len))[1]
    return scores, top_indices, top_indices < lengths.unsqueeze(1)
