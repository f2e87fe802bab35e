"""Row-sparse Adam update: by-hand values, equality with dense Adam when every row is updated, the compiled
fast path against the reference, and the rows it must leave alone."""

from __future__ import annotations

import math

import pytest
import torch

from dare_rec.ops.kernel import UpdateKernel, resolve_update_kernel
from dare_rec.ops.row_sparse_adam import row_sparse_adam_

LR, B1, B2, EPS = 0.1, 0.9, 0.999, 1e-8


def state(weights: torch.Tensor) -> list:
    return [weights, torch.zeros(weights.shape), torch.zeros(weights.shape), torch.zeros(weights.size(0))]


def test_by_hand_per_row_bias_correction():
    # row 0 updated at steps 1 and 2, row 2 only at step 2: each row's correction uses its own count, so
    # row 2's first update is lr * sign(g) although the table is on its second step
    w, m, v, c = state(torch.zeros(3, 1))
    row_sparse_adam_(w, m, v, c, torch.tensor([0]), torch.tensor([[2.0]]), LR, B1, B2, EPS)
    row_sparse_adam_(w, m, v, c, torch.tensor([0, 2]), torch.tensor([[1.0], [-4.0]]), LR, B1, B2, EPS)
    m0 = B1 * (1 - B1) * 2.0 + (1 - B1) * 1.0
    v0 = B2 * (1 - B2) * 4.0 + (1 - B2) * 1.0
    step0 = LR * (m0 / (1 - B1 ** 2)) / (math.sqrt(v0 / (1 - B2 ** 2)) + EPS)
    assert w[0, 0].item() == pytest.approx(-LR - step0, rel=2e-5)  # fp32 arithmetic
    assert w[2, 0].item() == pytest.approx(LR, rel=2e-5)
    assert w[1, 0].item() == 0.0 and m[1, 0].item() == 0.0 and v[1, 0].item() == 0.0
    assert c.tolist() == [2.0, 0.0, 1.0]
    assert m[2, 0].item() == pytest.approx(-(1 - B1) * 4.0) and v[2, 0].item() == pytest.approx((1 - B2) * 16.0)


def test_every_row_every_step_is_dense_adam():
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(50, 8))
    dense = torch.optim.Adam([table], lr=LR, betas=(B1, B2), eps=EPS)
    ours = state(table.detach().clone())
    for _ in range(20):
        grad = torch.randn(50, 8)
        table.grad = grad.clone()
        dense.step()
        row_sparse_adam_(*ours, torch.arange(50), grad, LR, B1, B2, EPS)
    torch.testing.assert_close(ours[0], table.detach(), atol=1e-5, rtol=1e-5)


def test_fp16_table_is_updated_in_fp32_and_stored_rounded():
    w16 = torch.full((4, 2), 1.0, dtype=torch.float16)
    w32 = torch.full((4, 2), 1.0)
    grads = torch.tensor([[1.0, -2.0]])
    row_sparse_adam_(*state(w16), torch.tensor([1]), grads, LR, B1, B2, EPS)
    row_sparse_adam_(*state(w32), torch.tensor([1]), grads, LR, B1, B2, EPS)
    assert w16.dtype == torch.float16
    torch.testing.assert_close(w16.float(), w32.half().float())


def test_compiled_matches_reference():
    assert resolve_update_kernel(UpdateKernel.AUTO) == UpdateKernel.COMPILED, "no C++ compiler on PATH"
    generator = torch.Generator().manual_seed(1)
    tables = {kernel: state(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)))
              for kernel in (UpdateKernel.PYTORCH, UpdateKernel.COMPILED)}
    for size in (120, 7, 300):  # one compilation serves every number of rows
        rows = torch.randperm(300, generator=generator)[:size]
        grads = torch.randn(size, 16, generator=generator)
        for kernel, tensors in tables.items():
            row_sparse_adam_(*tensors, rows, grads, LR, B1, B2, EPS, kernel)
    for reference, compiled in zip(tables[UpdateKernel.PYTORCH], tables[UpdateKernel.COMPILED]):
        torch.testing.assert_close(compiled, reference, atol=1e-6, rtol=1e-6)


def test_no_rows_is_a_no_op():
    w, m, v, c = state(torch.ones(3, 2))
    row_sparse_adam_(w, m, v, c, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2), LR, B1, B2, EPS,
                     UpdateKernel.COMPILED)
    assert w.eq(1).all() and c.eq(0).all()
