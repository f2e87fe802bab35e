"""Stand-in for ``fbgemm_gpu`` on a GPU machine that has PyTorch and Triton but no FBGEMM (and no network to
install it): registers, in plain torch, the two FBGEMM operators the op references use, so that ``tests/ops``
checks the compiled Triton kernels against the PyTorch references there (``benchmarks/device_check.sh``).

Never on the path where the real package is installed: the jobs and the rest of the suite need all of FBGEMM.

* ``jagged_dense_bmm(x [L, M], offsets [B + 1], y [B, M, N], max_L) -> (out [L, N], offsets)``:
  ``out[l] = x[l] @ y[row(l)]``.
* ``jagged_jagged_bmm(x [L, M], y [L, N], offsets [B + 1], max_L) -> [B, M, N]``: ``sum over l in row b of
  outer(x[l], y[l])``.

Rows are at most ``max_L`` long wherever the references call them (the reader enforces ``data.max_len``).
"""

from __future__ import annotations

import torch

STAND_IN = True

_LIB = torch.library.Library("fbgemm", "DEF")
_LIB.define("jagged_dense_bmm(Tensor x_values, Tensor x_offsets, Tensor y, int max_L) -> (Tensor, Tensor)")
_LIB.define("jagged_jagged_bmm(Tensor x_values, Tensor y_values, Tensor x_offsets, int max_L) -> Tensor")


def _rows(offsets: torch.Tensor, total: int) -> torch.Tensor:
    """``[L]`` the row of each jagged element."""
    return torch.repeat_interleave(torch.arange(offsets.numel() - 1, device=offsets.device), offsets.diff(),
                                   output_size=total)


def _jagged_dense_bmm(x_values, x_offsets, y, max_L):
    rows = _rows(x_offsets, x_values.shape[0])
    return torch.bmm(x_values.unsqueeze(1), y.index_select(0, rows)).squeeze(1), x_offsets


def _jagged_jagged_bmm(x_values, y_values, x_offsets, max_L):
    rows = _rows(x_offsets, x_values.shape[0])
    out = x_values.new_zeros(x_offsets.numel() - 1, x_values.shape[1], y_values.shape[1])
    return out.index_add_(0, rows, x_values.unsqueeze(2) * y_values.unsqueeze(1))


_LIB.impl("jagged_dense_bmm", _jagged_dense_bmm, "CompositeExplicitAutograd")
_LIB.impl("jagged_jagged_bmm", _jagged_jagged_bmm, "CompositeExplicitAutograd")
