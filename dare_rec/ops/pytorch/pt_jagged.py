"""Reference (PyTorch) jagged helpers. Layout conventions shared by every op:

* a jagged tensor is ``values [L, D]`` plus ``offsets [B + 1]`` (row b is ``values[offsets[b]:offsets[b+1]]``);
* a row's entries are behaviors oldest -> newest; "slot" j of row b is its j-th oldest behavior;
* the padded view is ``[B, N]``, left-aligned: slot j of row b sits in column j, valid iff j < length_b;
* the target-relative position of slot j is ``length_b - j`` (1 = most recent behavior; 0 = the target).
"""

from __future__ import annotations

from typing import Tuple

import torch


def pt_jagged_layout(offsets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per flat value: its row ``[L]``, its slot within the row ``[L]`` and the row lengths ``[B]``."""
    lengths = offsets[1:] - offsets[:-1]
    total = offsets[-1]
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths,
                                   output_size=int(total))
    slots = torch.arange(int(total), device=offsets.device) - offsets[:-1][rows]
    return rows, slots, lengths


def pt_jagged_gather(values: torch.Tensor, offsets: torch.Tensor, indices: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """``out[b, k] = values[offsets[b] + indices[b, k]]`` where ``mask[b, k]``, else zeros. ``[B, K, D]``."""
    flat = (offsets[:-1].unsqueeze(1) + indices).masked_fill(~mask, 0)
    if values.size(0) == 0:  # every row empty: nothing to gather, everything is masked
        return values.new_zeros(indices.shape + values.shape[1:])
    return values[flat] * mask.unsqueeze(-1).to(values.dtype)


def pt_jagged_weighted_sum(values: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[b] = sum_j weights[b, j] * values[offsets[b] + j]`` over the row's valid slots. ``[B, D]``.

    ``weights`` is the padded ``[B, N]`` view; columns past a row's length are ignored.
    """
    rows, slots, _ = pt_jagged_layout(offsets)
    w = weights[rows, slots].unsqueeze(-1)
    out = values.new_zeros(weights.size(0), values.size(1), dtype=torch.promote_types(values.dtype, w.dtype))
    return out.index_add(0, rows, w * values)
