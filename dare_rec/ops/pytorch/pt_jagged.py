"""Reference (PyTorch) jagged helpers. Layout conventions shared by every op:

* a jagged tensor is ``values [L, D]`` plus ``offsets [B + 1]`` (row b is ``values[offsets[b]:offsets[b+1]]``,
  ``offsets[0] = 0``, ``offsets[B] = L``), every row at most N long (the reader truncates histories to N);
* a row's entries are behaviors oldest -> newest; "slot" j of row b is its j-th oldest behavior;
* the padded view is ``[B, N]``, left-aligned: slot j of row b sits in column j, valid iff j < length_b;
* the target-relative position of slot j is ``length_b - j`` (1 = most recent behavior; 0 = the target).

No function here reads a tensor's values on the host (no ``.item()``, ``int(...)`` or ``.tolist()``): sizes come
from shapes, so the ops never synchronise a GPU stream with the host.

Two layouts of the same math: when every row is full (``L == B * N``; the paper's data protocol cuts every
history at N, so this is the common case on real logs) the jagged values *are* a padded ``[B, N, D]`` tensor
and the ops run as batched matrix products on that zero-copy view; otherwise they work per behavior on the
flat values (nothing ``[B, N, D]``-sized is built).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def pt_jagged_layout(offsets: torch.Tensor, total: Optional[int] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per flat value: its row ``[L]``, its slot within the row ``[L]``; and the row lengths ``[B]``.

    Args:
        offsets: ``[B + 1]`` row offsets.
        total: L, the number of values. Pass it (``values.size(0)``): without it L is read from ``offsets`` on
            the host, which synchronises a GPU stream with the host.
    """
    lengths = offsets[1:] - offsets[:-1]
    if total is None:
        total = int(offsets[-1])
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths,
                                   output_size=total)
    slots = torch.arange(total, device=offsets.device) - offsets[:-1][rows]
    return rows, slots, lengths


def pt_full_rows_view(values: torch.Tensor, num_rows: int, max_len: int) -> Optional[torch.Tensor]:
    """``values`` as a ``[B, N, D]`` view when every row is full (``L == B * N``, which with rows of at most N
    means every row has exactly N behaviors), else None. Decided from shapes only."""
    if values.size(0) != num_rows * max_len:
        return None
    return values.view(num_rows, max_len, values.size(1))


def autocast_off(device: torch.device) -> torch.autocast:
    """Disables autocast: the ops compute in their inputs' precision whatever the caller's autocast, so the
    batched-matmul layout gives the same results as the per-behavior one (and as the Triton kernels)."""
    return torch.autocast(device_type=device.type, enabled=False)


def pt_jagged_gather(values: torch.Tensor, offsets: torch.Tensor, indices: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """``out[b, k] = values[offsets[b] + indices[b, k]]`` where ``mask[b, k]``, else zeros. ``[B, K, D]``."""
    if values.size(0) == 0:  # every row empty: nothing to gather, everything is masked
        return values.new_zeros(indices.shape + values.shape[1:])
    flat = (offsets[:-1].unsqueeze(1) + indices).masked_fill(~mask, 0)
    gathered = values.index_select(0, flat.flatten()).view(indices.shape + values.shape[1:])
    return gathered * mask.unsqueeze(-1).to(values.dtype)


def pt_jagged_weighted_sum(values: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[b] = sum_j weights[b, j] * values[offsets[b] + j]`` over the row's valid slots. ``[B, D]``.

    ``weights`` is the padded ``[B, N]`` view; columns past a row's length are ignored.
    """
    num_rows, max_len = weights.shape
    dtype = torch.promote_types(values.dtype, weights.dtype)
    full = pt_full_rows_view(values, num_rows, max_len)
    if full is not None:  # [B, 1, N] @ [B, N, D]: reads every value once, builds nothing [L, D]-sized
        with autocast_off(values.device):
            return torch.bmm(weights.to(dtype).unsqueeze(1), full.to(dtype)).squeeze(1)
    rows, slots, _ = pt_jagged_layout(offsets, values.size(0))
    w = weights[rows, slots].unsqueeze(-1)
    out = values.new_zeros(num_rows, values.size(1), dtype=dtype)
    return out.index_add(0, rows, w * values)
