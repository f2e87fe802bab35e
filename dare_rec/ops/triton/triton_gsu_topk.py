"""Triton GSU: one fused pass per history row scores every behavior, adds the position bias (shared, or the row's
own when it is ``[B, P]``; and the optional
per-behavior key bias), writes the ``[B, N]`` scores and keeps a running top-K; the backward pass is one Triton
kernel per row as well. The same running top-K serves ``jagged_topk`` (scores computed elsewhere: DIN's MLP,
hard search).

Layout and contract: :func:`dare_rec.ops.gsu.gsu_topk` and ``ops/pytorch/pt_jagged.py``. One program handles
one row: it walks the row in chunks of ``BLOCK_N`` slots, so registers stay bounded for any N.

Top-K packs each candidate into one int64 key, ``(order-preserving int32 of the score) * 2^32 + (2^31 - 1 -
slot)``: keys are unique within a row, order by score and break ties towards the older slot (also among the
padding slots a short row has to return). The running top-K is a set of K keys; a chunk's candidates enter
largest first while they beat the set's minimum (at most K per chunk, on average ~K / chunks-seen), using only
max / min reductions, which are cheap on the GPU and in the Triton interpreter alike (bitonic sorts are not
in the interpreter). The final K keys are emitted in descending order.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from dare_rec.ops.triton.common import block_size, contiguous, num_slots_block

_INT64_MIN = tl.constexpr(-(2**63))
_INT64_MAX = tl.constexpr(2**63 - 1)


@triton.jit
def _sort_keys(scores, slots):
    """int64 keys ordering (score, -slot) lexicographically, for float32 ``scores``."""
    bits = scores.to(tl.int32, bitcast=True)
    ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: flip magnitude bits
    return ordered.to(tl.int64) * 4294967296 + (2147483647 - slots).to(tl.int64)


@triton.jit
def _empty_top_set(lanes, k):
    """Distinct sentinels below every real key; lanes past k hold the maximum and never leave the set."""
    return tl.where(lanes < k, _INT64_MIN + lanes.to(tl.int64), _INT64_MAX)


@triton.jit
def _keep_top(best, candidates):
    """Inserts ``candidates`` (one chunk's keys) into the top set ``best``, largest first, while they beat
    the set's minimum."""
    largest = tl.max(candidates, axis=0)
    smallest_kept = tl.min(best, axis=0)
    while largest > smallest_kept:
        best = tl.where(best == smallest_kept, largest, best)
        candidates = tl.where(candidates == largest, _INT64_MIN, candidates)
        largest = tl.max(candidates, axis=0)
        smallest_kept = tl.min(best, axis=0)
    return best


@triton.jit
def _store_top_slots(best, lanes, k, top_ptr):
    """Writes the slots of the top set's k keys to ``top_ptr[0:k]``, highest score first."""
    best = tl.where(lanes < k, best, _INT64_MIN)
    ordered = tl.zeros(best.shape, tl.int64)
    for i in range(0, k):
        largest = tl.max(best, axis=0)
        ordered = tl.where(lanes == i, largest, ordered)
        best = tl.where(best == largest, _INT64_MIN, best)
    top = 2147483647 - (ordered - ((ordered >> 32) << 32))  # low 32 bits (>> is arithmetic: floor)
    tl.store(top_ptr + lanes, top, mask=lanes < k)


@triton.jit
def _gsu_forward_kernel(
    keys_ptr, offsets_ptr, query_ptr, bias_ptr, key_bias_ptr, scores_ptr, top_ptr,
    dim, max_len, k, scale, mask_value, bias_stride,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, HAS_KEY_BIAS: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    cols = tl.arange(0, BLOCK_D)
    query = tl.load(query_ptr + row * dim + cols, mask=cols < dim, other=0.0).to(tl.float32)
    lanes = tl.arange(0, BLOCK_K)
    best = _empty_top_set(lanes, k)
    for chunk_start in range(0, max_len, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        keys = tl.load(keys_ptr + (start + slots)[:, None] * dim + cols[None, :],
                       mask=valid[:, None] & (cols[None, :] < dim), other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + row * bias_stride + (length - slots), mask=valid, other=0.0).to(tl.float32)
        if HAS_KEY_BIAS:
            bias += tl.load(key_bias_ptr + start + slots, mask=valid, other=0.0).to(tl.float32)
        scores = tl.where(valid, tl.sum(keys * query[None, :], axis=1) * scale + bias, mask_value)
        stored = scores.to(scores_ptr.dtype.element_ty)
        tl.store(scores_ptr + row * max_len + slots, stored, mask=slots < max_len)
        # rank by the stored value, as the reference ranks its stored scores
        best = _keep_top(best, tl.where(slots < max_len, _sort_keys(stored.to(tl.float32), slots), _INT64_MIN))
    _store_top_slots(best, lanes, k, top_ptr + row * k)


@triton.jit
def _jagged_topk_forward_kernel(
    jagged_scores_ptr, offsets_ptr, scores_ptr, top_ptr, max_len, k, mask_value,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    lanes = tl.arange(0, BLOCK_K)
    best = _empty_top_set(lanes, k)
    for chunk_start in range(0, max_len, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        scores = tl.load(jagged_scores_ptr + start + slots, mask=valid, other=0.0)
        stored = tl.where(valid, scores.to(scores_ptr.dtype.element_ty), mask_value)
        tl.store(scores_ptr + row * max_len + slots, stored, mask=slots < max_len)
        best = _keep_top(best, tl.where(slots < max_len, _sort_keys(stored.to(tl.float32), slots), _INT64_MIN))
    _store_top_slots(best, lanes, k, top_ptr + row * k)


@triton.jit
def _jagged_topk_backward_kernel(grad_scores_ptr, offsets_ptr, grad_jagged_ptr, max_len, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    for chunk_start in range(0, length, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        grad = tl.load(grad_scores_ptr + row * max_len + slots, mask=valid, other=0.0)
        tl.store(grad_jagged_ptr + start + slots, grad.to(grad_jagged_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _gsu_backward_kernel(
    grad_scores_ptr, keys_ptr, offsets_ptr, query_ptr, grad_keys_ptr, grad_query_ptr, grad_bias_ptr,
    grad_key_bias_ptr, dim, max_len, scale, bias_stride,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_KEY_BIAS: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(offsets_ptr + row)
    length = tl.load(offsets_ptr + row + 1) - start
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < dim
    query = tl.load(query_ptr + row * dim + cols, mask=col_ok, other=0.0).to(tl.float32)
    grad_query = tl.zeros([BLOCK_D], tl.float32)
    for chunk_start in range(0, length, BLOCK_N):
        slots = chunk_start + tl.arange(0, BLOCK_N)
        valid = slots < length
        grad = tl.load(grad_scores_ptr + row * max_len + slots, mask=valid, other=0.0).to(tl.float32)
        tile = valid[:, None] & col_ok[None, :]
        key_offsets = (start + slots)[:, None] * dim + cols[None, :]
        keys = tl.load(keys_ptr + key_offsets, mask=tile, other=0.0).to(tl.float32)
        grad_query += tl.sum(grad[:, None] * keys, axis=0)
        grad_keys = grad[:, None] * (query[None, :] * scale)
        tl.store(grad_keys_ptr + key_offsets, grad_keys.to(grad_keys_ptr.dtype.element_ty), mask=tile)
        # positions length - slot of different rows coincide in a shared bias: accumulate atomically
        tl.atomic_add(grad_bias_ptr + row * bias_stride + (length - slots), grad, mask=valid)
        if HAS_KEY_BIAS:  # one score per behavior: its gradient is the score's
            tl.store(grad_key_bias_ptr + start + slots, grad.to(grad_key_bias_ptr.dtype.element_ty), mask=valid)
    tl.store(grad_query_ptr + row * dim + cols, (grad_query * scale).to(grad_query_ptr.dtype.element_ty),
             mask=col_ok)


def _row_stride(position_bias: torch.Tensor) -> int:
    """Elements between two rows' position biases: 0 for a shared ``[P]`` bias, P for a contiguous ``[B, P]``."""
    return 0 if position_bias.dim() == 1 else position_bias.size(1)


class _TritonGsu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, keys, offsets, query, position_bias, k, max_len, scale, mask_value, key_bias):
        keys, offsets, query, position_bias = contiguous(keys, offsets, query, position_bias)
        num_rows, dim = query.shape
        k = min(k, max_len)
        dtype = torch.promote_types(torch.promote_types(keys.dtype, query.dtype), position_bias.dtype)
        if key_bias is not None:
            key_bias = key_bias.contiguous()
            dtype = torch.promote_types(dtype, key_bias.dtype)
        scores = torch.empty(num_rows, max_len, dtype=dtype, device=keys.device)
        top_indices = torch.empty(num_rows, k, dtype=torch.int64, device=keys.device)
        if num_rows > 0:
            block_d = block_size(dim)
            block_k = block_size(k)
            _gsu_forward_kernel[(num_rows,)](
                keys, offsets, query, position_bias, position_bias if key_bias is None else key_bias, scores,
                top_indices, dim, max_len, k, scale, mask_value, _row_stride(position_bias),
                BLOCK_D=block_d, BLOCK_N=num_slots_block(block_d, max_len), BLOCK_K=block_k,
                HAS_KEY_BIAS=key_bias is not None,
            )
        lengths = offsets[1:] - offsets[:-1]
        top_mask = top_indices < lengths.unsqueeze(1)
        ctx.save_for_backward(keys, offsets, query)
        ctx.bias_shape_dtype = (position_bias.shape, position_bias.dtype)
        ctx.key_bias_dtype = None if key_bias is None else key_bias.dtype
        ctx.max_len, ctx.scale = max_len, scale
        ctx.mark_non_differentiable(top_indices, top_mask)
        return scores, top_indices, top_mask

    @staticmethod
    def backward(ctx, grad_scores, _grad_top, _grad_mask):
        keys, offsets, query = ctx.saved_tensors
        bias_shape, bias_dtype = ctx.bias_shape_dtype
        num_rows, dim = query.shape
        grad_keys = torch.empty_like(keys)
        grad_query = torch.empty_like(query)
        grad_bias = torch.zeros(bias_shape, dtype=torch.float32, device=keys.device)
        has_key_bias = ctx.key_bias_dtype is not None
        grad_key_bias = torch.empty(keys.size(0), dtype=ctx.key_bias_dtype, device=keys.device) \
            if has_key_bias else None
        if num_rows > 0:
            block_d = block_size(dim)
            _gsu_backward_kernel[(num_rows,)](
                grad_scores.contiguous(), keys, offsets, query, grad_keys, grad_query, grad_bias,
                grad_key_bias if has_key_bias else grad_bias, dim, ctx.max_len, ctx.scale, _row_stride(grad_bias),
                BLOCK_D=block_d, BLOCK_N=num_slots_block(block_d, ctx.max_len), HAS_KEY_BIAS=has_key_bias,
            )
        return grad_keys, None, grad_query, grad_bias.to(bias_dtype), None, None, None, None, grad_key_bias


def triton_gsu_topk(
    keys: torch.Tensor,
    offsets: torch.Tensor,
    query: torch.Tensor,
    position_bias: torch.Tensor,
    k: int,
    max_len: int,
    scale: float,
    mask_value: float,
    key_bias: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton version of :func:`dare_rec.ops.pytorch.pt_gsu_topk.pt_gsu_topk` (same contract and outputs;
    top indices come sorted by descending score, ties broken towards the older slot)."""
    return _TritonGsu.apply(keys, offsets, query, position_bias, k, max_len, scale, mask_value, key_bias)


class _TritonJaggedTopk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, jagged_scores, offsets, k, max_len, mask_value):
        jagged_scores, offsets = contiguous(jagged_scores, offsets)
        num_rows = offsets.numel() - 1
        k = min(k, max_len)
        scores = torch.empty(num_rows, max_len, dtype=jagged_scores.dtype, device=jagged_scores.device)
        top_indices = torch.empty(num_rows, k, dtype=torch.int64, device=jagged_scores.device)
        if num_rows > 0:
            _jagged_topk_forward_kernel[(num_rows,)](
                jagged_scores, offsets, scores, top_indices, max_len, k, mask_value,
                BLOCK_N=num_slots_block(1, max_len), BLOCK_K=block_size(k))
        top_mask = top_indices < (offsets[1:] - offsets[:-1]).unsqueeze(1)
        ctx.save_for_backward(offsets)
        ctx.total, ctx.max_len = jagged_scores.size(0), max_len
        ctx.mark_non_differentiable(top_indices, top_mask)
        return scores, top_indices, top_mask

    @staticmethod
    def backward(ctx, grad_scores, _grad_top, _grad_mask):
        (offsets,) = ctx.saved_tensors
        grad_jagged = torch.empty(ctx.total, dtype=grad_scores.dtype, device=grad_scores.device)
        if offsets.numel() > 1:
            _jagged_topk_backward_kernel[(offsets.numel() - 1,)](
                grad_scores.contiguous(), offsets, grad_jagged, ctx.max_len, BLOCK_N=num_slots_block(1, ctx.max_len))
        return grad_jagged, None, None, None, None


def triton_jagged_topk(
    jagged_scores: torch.Tensor,
    offsets: torch.Tensor,
    k: int,
    max_len: int,
    mask_value: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton version of :func:`dare_rec.ops.pytorch.pt_jagged_topk.pt_jagged_topk` (top indices sorted by
    descending score, ties broken towards the older slot)."""
    return _TritonJaggedTopk.apply(jagged_scores, offsets, k, max_len, mask_value)
