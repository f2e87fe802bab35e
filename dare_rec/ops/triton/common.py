"""Launch helpers shared by the Triton kernels."""

from __future__ import annotations

from typing import Tuple

import torch
import triton

# Elements of one [BLOCK_N, BLOCK_D] tile a program loads at once: bounded registers for any D and N.
TILE_ELEMENTS = 4096


def block_size(n: int) -> int:
    """Smallest power of two >= n (>= 1): Triton block shapes must be powers of two."""
    return triton.next_power_of_2(max(n, 1))


def num_slots_block(block_d: int, max_len: int) -> int:
    """Slots per chunk of a row: a tile of about TILE_ELEMENTS, no wider than the padded row."""
    return min(block_size(max_len), max(16, TILE_ELEMENTS // block_d))


def contiguous(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The kernels index with row-major strides."""
    return tuple(t.contiguous() for t in tensors)
