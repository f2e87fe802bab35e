"""Row-sparse ("lazy") Adam update of an embedding table, behind one dispatcher.

Only the rows looked up in a step move, and each row keeps its own step count for the bias correction::

    c_r += 1;  m_r = b1 m_r + (1 - b1) g_r;  v_r = b2 v_r + (1 - b2) g_r^2
    w_r -= lr * (m_r / (1 - b1^c_r)) / (sqrt(v_r / (1 - b2^c_r)) + eps)

These are the semantics of FBGEMM's CUDA Adam with ``use_rowwise_bias_correction`` (its ``row_counter``), which
the CUDA path uses; this op is the CPU implementation, where FBGEMM has no Adam kernel. Why the correction
is per row, not per table: a row first seen at step 1000 gets the step Adam gives any parameter on its first
update (``lr`` times the gradient's sign), instead of a step scaled by a bias correction that belongs to the
table's age (with a table-wide count its first step is about ``(1 - b1) / sqrt(1 - b2) = 3.2`` times larger).
On a table whose rows are all looked up every step it is exactly dense Adam (tested).
"""

from __future__ import annotations

import functools

import torch

from dare_rec.ops.kernel import UpdateKernel, resolve_update_kernel
from dare_rec.ops.pytorch.pt_row_sparse_adam import pt_row_sparse_adam_


@functools.lru_cache(maxsize=None)
def _compiled():
    # dynamic: one compilation serves every number of updated rows and every table width
    return torch.compile(pt_row_sparse_adam_, dynamic=True, fullgraph=True)


def row_sparse_adam_(weights: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                     row_counter: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, lr: float, beta1: float,
                     beta2: float, eps: float, kernel: UpdateKernel = UpdateKernel.PYTORCH) -> None:
    """Adam on rows ``rows`` of one table, in place (shapes and math: :func:`pt_row_sparse_adam_`).

    Args:
        weights: ``[V, D]`` fp32 or fp16 table; exp_avg, exp_avg_sq ``[V, D]`` and row_counter ``[V]`` fp32.
        rows: ``[U]`` distinct row ids; grads ``[U, D]`` their summed gradients.
        kernel: implementation (AUTO resolved by :func:`resolve_update_kernel`).
    """
    if rows.numel() == 0:
        return
    if resolve_update_kernel(kernel) == UpdateKernel.COMPILED:
        _compiled()(weights, exp_avg, exp_avg_sq, row_counter, rows, grads, lr, beta1, beta2, eps)
    else:
        pt_row_sparse_adam_(weights, exp_avg, exp_avg_sq, row_counter, rows, grads, lr, beta1, beta2, eps)
