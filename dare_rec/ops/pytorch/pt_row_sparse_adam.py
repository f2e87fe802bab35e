"""Reference (PyTorch) row-sparse Adam update of an embedding table (see ``dare_rec.ops.row_sparse_adam``)."""

from __future__ import annotations

import torch


def pt_row_sparse_adam_(weights: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                        row_counter: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, lr: float,
                        beta1: float, beta2: float, eps: float) -> None:
    """Adam on the rows ``rows`` of one table, in place; every other row and its state stay as they are.

    Args:
        weights: ``[V, D]`` the table (fp32 or fp16; the update is computed in fp32).
        exp_avg, exp_avg_sq: ``[V, D]`` fp32 first and second moments.
        row_counter: ``[V]`` fp32, how many updates each row has had (its own Adam step count).
        rows: ``[U]`` int64 distinct row ids.
        grads: ``[U, D]`` fp32 gradient of each of ``rows`` (every lookup of the row in the step summed).
        lr, beta1, beta2, eps: Adam's hyper-parameters; the update is
            ``w -= lr * (m / (1 - beta1^c)) / (sqrt(v / (1 - beta2^c)) + eps)`` with c the row's new count.
    """
    count = row_counter[rows] + 1
    m = exp_avg[rows] * beta1 + grads * (1 - beta1)
    v = exp_avg_sq[rows] * beta2 + grads * grads * (1 - beta2)
    m_hat = m / (1 - torch.pow(beta1, count)).unsqueeze(1)
    v_hat = v / (1 - torch.pow(beta2, count)).unsqueeze(1)
    updated = weights[rows].float() - lr * m_hat / (v_hat.sqrt() + eps)
    weights.index_put_((rows,), updated.to(weights.dtype))
    exp_avg.index_put_((rows,), m)
    exp_avg_sq.index_put_((rows,), v)
    row_counter.index_put_((rows,), count)
