"""Triton jagged gather and weighted sum (the ESU's and the aux head's reads of the representation vectors),
forward and backward, one program per row. Contracts: :mod:`dare_rec.ops.jagged`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dare_rec.ops.triton.common import block_size, contiguous, num_slots_block


@triton.jit
def _gather_forward_kernel(values_ptr, offsets_ptr, indices_ptr, mask_ptr, out_ptr, dim, k,
                           BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    ks = tl.arange(0, BLOCK_K)
    k_ok = ks < k
    slots = tl.load(indices_ptr + row * k + ks, mask=k_ok, other=0)
    selected = tl.load(mask_ptr + row * k + ks, mask=k_ok, other=0) != 0
    for col_start in range(0, dim, BLOCK_D):
        cols = col_start + tl.arange(0, BLOCK_D)
        col_ok = cols < dim
        gathered = tl.load(values_ptr + (start + slots)[:, None] * dim + cols[None, :],
                           mask=selected[:, None] & col_ok[None, :], other=0.0)
        tl.store(out_ptr + (row * k + ks)[:, None] * dim + cols[None, :], gathered,
                 mask=k_ok[:, None] & col_ok[None, :])


@triton.jit
def _gather_backward_kernel(grad_out_ptr, offsets_ptr, indices_ptr, mask_ptr, grad_values_ptr, dim, k,
                            BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    ks = tl.arange(0, BLOCK_K)
    k_ok = ks < k
    slots = tl.load(indices_ptr + row * k + ks, mask=k_ok, other=0)
    selected = tl.load(mask_ptr + row * k + ks, mask=k_ok, other=0) != 0
    for col_start in range(0, dim, BLOCK_D):
        cols = col_start + tl.arange(0, BLOCK_D)
        tile = selected[:, None] & (cols < dim)[None, :]
        grad = tl.load(grad_out_ptr + (row * k + ks)[:, None] * dim + cols[None, :], mask=tile, other=0.0)
        # the same slot may be gathered more than once: accumulate
        tl.atomic_add(grad_values_ptr + (start + slots)[:, None] * dim + cols[None, :], grad.to(tl.float32),
                      mask=tile)


class _TritonJaggedGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, offsets, indices, mask):
        values, offsets, indices, mask = contiguous(values, offsets, indices, mask)
        num_rows, k = indices.shape
        dim = values.size(1)
        out = torch.empty(num_rows, k, dim, dtype=values.dtype, device=values.device)
        if num_rows > 0 and k > 0:
            _gather_forward_kernel[(num_rows,)](values, offsets, indices, mask, out, dim, k,
                                                BLOCK_D=min(block_size(dim), 256), BLOCK_K=block_size(k))
        ctx.save_for_backward(offsets, indices, mask)
        ctx.values_shape_dtype = (values.shape, values.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        offsets, indices, mask = ctx.saved_tensors
        shape, dtype = ctx.values_shape_dtype
        num_rows, k = indices.shape
        grad_values = torch.zeros(shape, dtype=torch.float32, device=grad_out.device)
        if num_rows > 0 and k > 0:
            _gather_backward_kernel[(num_rows,)](grad_out.contiguous(), offsets, indices, mask, grad_values,
                                                 shape[1], k, BLOCK_D=min(block_size(shape[1]), 256),
                                                 BLOCK_K=block_size(k))
        return grad_values.to(dtype), None, None, None


@triton.jit
def _weighted_sum_forward_kernel(values_ptr, offsets_ptr, weights_ptr, out_ptr, dim, max_len,
                                 BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < dim
    acc = tl.zeros([BLOCK_D], tl.float32)
    for chunk_start in range(0, length, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        weights = tl.load(weights_ptr + row * max_len + slots, mask=valid, other=0.0).to(tl.float32)
        values = tl.load(values_ptr + (start + slots)[:, None] * dim + cols[None, :],
                         mask=valid[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(weights[:, None] * values, axis=0)
    tl.store(out_ptr + row * dim + cols, acc.to(out_ptr.dtype.element_ty), mask=col_ok)


@triton.jit
def _weighted_sum_backward_kernel(grad_out_ptr, values_ptr, offsets_ptr, weights_ptr, grad_values_ptr,
                                  grad_weights_ptr, dim, max_len,
                                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < dim
    grad = tl.load(grad_out_ptr + row * dim + cols, mask=col_ok, other=0.0).to(tl.float32)
    for chunk_start in range(0, length, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        tile = valid[:, None] & col_ok[None, :]
        value_offsets = (start + slots)[:, None] * dim + cols[None, :]
        weights = tl.load(weights_ptr + row * max_len + slots, mask=valid, other=0.0).to(tl.float32)
        values = tl.load(values_ptr + value_offsets, mask=tile, other=0.0).to(tl.float32)
        tl.store(grad_values_ptr + value_offsets,
                 (weights[:, None] * grad[None, :]).to(grad_values_ptr.dtype.element_ty), mask=tile)
        tl.store(grad_weights_ptr + row * max_len + slots,
                 tl.sum(values * grad[None, :], axis=1).to(grad_weights_ptr.dtype.element_ty), mask=valid)


class _TritonJaggedWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, offsets, weights):
        values, offsets, weights = contiguous(values, offsets, weights)
        num_rows, max_len = weights.shape
        dim = values.size(1)
        out = torch.empty(num_rows, dim, dtype=torch.promote_types(values.dtype, weights.dtype),
                          device=values.device)
        block_d = block_size(dim)
        if num_rows > 0:
            _weighted_sum_forward_kernel[(num_rows,)](values, offsets, weights, out, dim, max_len,
                                                      BLOCK_D=block_d, BLOCK_N=num_slots_block(block_d, max_len))
        ctx.save_for_backward(values, offsets, weights)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        values, offsets, weights = ctx.saved_tensors
        num_rows, max_len = weights.shape
        dim = values.size(1)
        grad_values = torch.empty_like(values)
        grad_weights = torch.zeros_like(weights)  # columns past a row's length get no gradient
        block_d = block_size(dim)
        if num_rows > 0:
            _weighted_sum_backward_kernel[(num_rows,)](
                grad_out.contiguous(), values, offsets, weights, grad_values, grad_weights, dim, max_len,
                BLOCK_D=block_d, BLOCK_N=num_slots_block(block_d, max_len))
        return grad_values, None, grad_weights


def triton_jagged_gather(values: torch.Tensor, offsets: torch.Tensor, indices: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """Triton version of :func:`dare_rec.ops.pytorch.pt_jagged.pt_jagged_gather`. ``[B, K, D]``."""
    return _TritonJaggedGather.apply(values, offsets, indices, mask)


def triton_jagged_weighted_sum(values: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Triton version of :func:`dare_rec.ops.pytorch.pt_jagged.pt_jagged_weighted_sum`. ``[B, D]``."""
    return _TritonJaggedWeightedSum.apply(values, offsets, weights)
