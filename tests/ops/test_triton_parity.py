"""Triton kernels (``Kernel.TRITON``) against the PyTorch references, forward and backward.

Without a GPU they run on CPU in Triton's interpreter (switched on in tests/conftest.py before triton is
imported); on a GPU machine run ``TRITON_INTERPRET=0 python -m pytest tests/ops/test_triton_parity.py`` to test
the compiled kernels on CUDA tensors. Shapes are small because the interpreter is slow, but cover empty rows,
rows shorter than K, full rows (the reference's batched-matmul layout), several widths D (powers of two and
not) and rows longer than one kernel chunk (the running top-K merge); float32 throughout, and one bf16 case.
"""

from __future__ import annotations

import os
from typing import List

import pytest
import torch

from dare_rec.ops import Kernel, gsu_topk, jagged_gather, jagged_topk, jagged_weighted_sum
from dare_rec.ops.gsu import mask_value_for
from dare_rec.ops.kernel import triton_available
from tests.conftest import tiny_config

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if torch.cuda.is_available() and not INTERPRETED else "cpu")
pytestmark = pytest.mark.skipif(not INTERPRETED and DEVICE.type != "cuda",
                                reason="compiled Triton kernels need CUDA; set TRITON_INTERPRET=1 to run on CPU")


def offsets_for(lengths: List[int]) -> torch.Tensor:
    return torch.tensor([0] + lengths, device=DEVICE).cumsum(0)


def exact_gsu_inputs(lengths: List[int], dim: int, max_len: int, seed: int):
    """Inputs whose scores are exact in float32 whatever the summation order, and distinct within a row.

    Keys and query are small integers (exact dot products); the position bias of position p is an integer
    plus p / 1024, distinct per position, and the scale is a power of two: two slots of a row never tie and
    every implementation computes bit-identical scores, so selections can be compared exactly.
    """
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    keys = torch.randint(-3, 4, (total, dim), generator=g).float()
    query = torch.randint(-3, 4, (len(lengths), dim), generator=g).float()
    bias = torch.randint(-4, 5, (max_len + 1,), generator=g).float() + torch.arange(max_len + 1) / 1024
    return [t.to(DEVICE).requires_grad_() for t in (keys, query, bias)]


def run_gsu(kernel: Kernel, inputs, offsets, k, max_len, scale, grad_seed=0):
    keys, query, bias = [t.detach().clone().requires_grad_() for t in inputs]
    out = gsu_topk(keys, offsets, query, bias, k, max_len, scale, kernel)
    # an upstream gradient on every column, padding included: both kernels must ignore the padding's
    g = torch.Generator().manual_seed(grad_seed)
    out.scores.backward(torch.randn(out.scores.shape, generator=g).to(DEVICE))
    return out, keys.grad, query.grad, bias.grad


@pytest.mark.parametrize("lengths,dim,max_len,k", [
    ([0, 3, 12, 7, 1, 12, 5, 0], 8, 12, 5),      # empty rows, rows shorter than K, full rows
    ([12, 12, 12, 12], 12, 12, 5),                # every row full: the reference's zero-copy [B, N, D] view
    ([0, 0, 0], 4, 6, 3),                         # a batch without history
    ([300, 17, 0, 250, 4], 64, 300, 20),          # N of a few hundred: several chunks per row
    ([90, 3, 120, 61], 20, 130, 8),               # D not a power of two
    ([5, 2, 0], 16, 5, 8),                        # K > N: K' = N
    ([40, 9, 33], 16, 40, 1),                     # K = 1
])
def test_gsu_topk_matches_reference(lengths, dim, max_len, k):
    offsets = offsets_for(lengths)
    inputs = exact_gsu_inputs(lengths, dim, max_len, seed=len(lengths) + dim)
    ref, ref_dkeys, ref_dquery, ref_dbias = run_gsu(Kernel.PYTORCH, inputs, offsets, k, max_len, 0.25)
    tri, tri_dkeys, tri_dquery, tri_dbias = run_gsu(Kernel.TRITON, inputs, offsets, k, max_len, 0.25)

    assert torch.equal(tri.scores, ref.scores)
    assert torch.equal(tri.top_mask, ref.top_mask)
    # valid selections first, in descending score order, identical; surplus entries point at padding
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    lengths_col = torch.tensor(lengths, device=DEVICE).unsqueeze(1)
    assert (tri.top_indices[~tri.top_mask] >= lengths_col.expand_as(tri.top_mask)[~tri.top_mask]).all()
    assert (tri.top_indices < max_len).all()
    assert (tri.scores[~(torch.arange(max_len, device=DEVICE) < lengths_col)] == mask_value_for(torch.float32)).all()

    torch.testing.assert_close(tri_dkeys, ref_dkeys)
    torch.testing.assert_close(tri_dquery, ref_dquery)
    torch.testing.assert_close(tri_dbias, ref_dbias)


@pytest.mark.parametrize("lengths,max_len", [([0, 3, 12, 7, 1, 12, 5, 0], 12), ([6, 6, 6], 6)])
def test_gsu_topk_key_bias_matches_reference(lengths, max_len):
    """The per-behavior key bias (side fields): same scores, selections and gradients as the reference,
    key bias included; exact values (integers plus distinct 1/4096 steps) so selections compare exactly."""
    offsets = offsets_for(lengths)
    inputs = exact_gsu_inputs(lengths, 8, max_len, seed=11)
    g = torch.Generator().manual_seed(5)
    key_bias = (torch.randint(-4, 5, (sum(lengths),), generator=g).float()
                + torch.arange(sum(lengths)) / 4096).to(DEVICE)
    results = {}
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        keys, query, bias, kb = [t.detach().clone().requires_grad_() for t in (*inputs, key_bias)]
        out = gsu_topk(keys, offsets, query, bias, 4, max_len, 0.25, kernel, key_bias=kb)
        out.scores.backward(torch.randn(out.scores.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE))
        results[kernel] = (out, keys.grad, query.grad, bias.grad, kb.grad)
    (ref, *ref_grads), (tri, *tri_grads) = results[Kernel.PYTORCH], results[Kernel.TRITON]
    assert torch.equal(tri.scores, ref.scores)
    assert torch.equal(tri.top_mask, ref.top_mask)
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    for tri_grad, ref_grad in zip(tri_grads, ref_grads):
        torch.testing.assert_close(tri_grad, ref_grad)


@pytest.mark.parametrize("lengths,max_len,key_bias", [([0, 3, 12, 7, 1, 12, 5, 0], 12, False),
                                                   ([6, 6, 6], 6, False), ([300, 17, 0, 250], 300, True)])
def test_gsu_topk_per_row_position_bias_matches_reference(lengths, max_len, key_bias):
    """A ``[B, N + 1]`` position bias (target-decoupled positions: each row its objective's slice): same scores,
    selections and gradients (the bias's per row) as the reference; exact values, distinct per row and position,
    so selections compare exactly; with the key bias too on rows of several chunks."""
    offsets = offsets_for(lengths)
    keys, query, _ = exact_gsu_inputs(lengths, 8, max_len, seed=13)
    g = torch.Generator().manual_seed(7)
    bias = (torch.randint(-4, 5, (len(lengths), max_len + 1), generator=g).float()
            + torch.arange(len(lengths) * (max_len + 1)).reshape(len(lengths), -1) / 2**16).to(DEVICE)
    kb = (torch.randint(-4, 5, (sum(lengths),), generator=g).float() / 4).to(DEVICE) if key_bias else None
    results = {}
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        inputs = [t.detach().clone().requires_grad_() for t in (keys, query, bias)]
        out = gsu_topk(inputs[0], offsets, inputs[1], inputs[2], 4, max_len, 0.25, kernel, key_bias=kb)
        out.scores.backward(torch.randn(out.scores.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE))
        results[kernel] = (out, *(t.grad for t in inputs))
    (ref, *ref_grads), (tri, *tri_grads) = results[Kernel.PYTORCH], results[Kernel.TRITON]
    assert torch.equal(tri.scores, ref.scores)
    assert torch.equal(tri.top_mask, ref.top_mask)
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    assert ref_grads[2].shape == (len(lengths), max_len + 1)
    for tri_grad, ref_grad in zip(tri_grads, ref_grads):
        torch.testing.assert_close(tri_grad, ref_grad)


def test_gsu_topk_over_ten_thousand_behaviors_merges_the_top_k_across_chunks():
    """N = 10,000 (the longest history supported): the kernel walks each row in chunks of a few hundred slots,
    never a [B, N, D] tile, and merges its running top-K across ~80 chunks; selections, scores and gradients
    equal the reference's. Integer dot products (scale 1) plus a bias of p / 2^14 make every score of a row
    exact and distinct."""
    lengths, dim, max_len, k = [10_000, 7_001, 0, 12], 32, 10_000, 20
    offsets = offsets_for(lengths)
    g = torch.Generator().manual_seed(7)
    keys = torch.randint(-3, 4, (sum(lengths), dim), generator=g).float()
    query = torch.randint(-3, 4, (len(lengths), dim), generator=g).float()
    bias = torch.randint(-4, 5, (max_len + 1,), generator=g).float() + torch.arange(max_len + 1) / 2 ** 14
    inputs = [t.to(DEVICE) for t in (keys, query, bias)]
    ref, ref_dkeys, ref_dquery, ref_dbias = run_gsu(Kernel.PYTORCH, inputs, offsets, k, max_len, 1.0)
    tri, tri_dkeys, tri_dquery, tri_dbias = run_gsu(Kernel.TRITON, inputs, offsets, k, max_len, 1.0)
    assert torch.equal(tri.scores, ref.scores)
    assert torch.equal(tri.top_mask, ref.top_mask)
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    # the winners are spread over the whole row, not only the first or last chunk
    assert tri.top_indices[0].min() < 5_000 < tri.top_indices[0].max()
    torch.testing.assert_close(tri_dkeys, ref_dkeys)
    # a sum of 10,000 terms in another order: float32 rounding of ~1e-5 relative
    torch.testing.assert_close(tri_dquery, ref_dquery, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(tri_dbias, ref_dbias)


def test_gsu_topk_random_floats_and_selected_score_gradients():
    """Gaussian inputs (the model's case) and the gradient path the model takes: top-K scores -> softmax."""
    lengths, dim, max_len, k = [50, 0, 7, 64, 33], 32, 64, 10
    g = torch.Generator().manual_seed(3)
    offsets = offsets_for(lengths)
    inputs = [torch.randn(sum(lengths), dim, generator=g), torch.randn(len(lengths), dim, generator=g),
              torch.randn(max_len + 1, generator=g)]
    results = {}
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        keys, query, bias = [t.to(DEVICE).requires_grad_() for t in inputs]
        out = gsu_topk(keys, offsets, query, bias, k, max_len, 1 / dim ** 0.5, kernel)
        selected = out.scores.gather(1, out.top_indices).masked_fill(~out.top_mask, float("-inf"))
        weights = torch.softmax(selected, dim=1).nan_to_num(0.0)
        (weights * torch.arange(k, device=DEVICE)).sum().backward()
        results[kernel] = (out, keys.grad, query.grad, bias.grad)
    (ref, *ref_grads), (tri, *tri_grads) = results[Kernel.PYTORCH], results[Kernel.TRITON]
    torch.testing.assert_close(tri.scores, ref.scores)
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    for tri_grad, ref_grad in zip(tri_grads, ref_grads):
        torch.testing.assert_close(tri_grad, ref_grad)


@pytest.mark.parametrize("lengths,max_len,k", [
    ([0, 3, 9, 1, 9, 4], 9, 5),       # empty rows, rows shorter than K
    ([300, 0, 77, 250], 300, 20),     # several chunks per row
    ([4, 2], 4, 8),                   # K > N
])
def test_jagged_topk_matches_reference(lengths, max_len, k):
    g = torch.Generator().manual_seed(max_len)
    offsets = offsets_for(lengths)
    jagged_scores = torch.randperm(sum(lengths), generator=g).float() / 7 - 20  # distinct, exact, negative too
    upstream = torch.randn(len(lengths), max_len, generator=g).to(DEVICE)
    results = []
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        scores_in = jagged_scores.to(DEVICE).requires_grad_()
        out = jagged_topk(scores_in, offsets, k, max_len, kernel)
        out.scores.backward(upstream)
        results.append((out, scores_in.grad))
    (ref, ref_grad), (tri, tri_grad) = results
    assert torch.equal(tri.scores, ref.scores)
    assert torch.equal(tri.top_mask, ref.top_mask)
    assert torch.equal(tri.top_indices[tri.top_mask], ref.top_indices[ref.top_mask])
    assert torch.equal(tri_grad, ref_grad)


@pytest.mark.parametrize("lengths,dim,k", [
    ([0, 3, 6, 1, 6], 3, 4),
    ([20, 20, 20], 64, 8),
    ([0, 0], 16, 2),
])
def test_jagged_gather_matches_reference(lengths, dim, k):
    g = torch.Generator().manual_seed(dim)
    offsets = offsets_for(lengths)
    values = torch.randn(sum(lengths), dim, generator=g)
    # repeated slots within a row accumulate their gradients
    indices = torch.randint(0, max(lengths) + 1, (len(lengths), k), generator=g).to(DEVICE)
    mask = indices < torch.tensor(lengths, device=DEVICE).unsqueeze(1)
    upstream = torch.randn(len(lengths), k, dim, generator=g).to(DEVICE)
    outs, grads = [], []
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        v = values.to(DEVICE).requires_grad_()
        out = jagged_gather(v, offsets, indices, mask, kernel)
        if out.requires_grad:  # the reference returns constant zeros when there are no values at all
            out.backward(upstream)
        outs.append(out)
        grads.append(v.grad)
    assert torch.equal(outs[1], outs[0])
    if values.numel():
        torch.testing.assert_close(grads[1], grads[0])


@pytest.mark.parametrize("lengths,dim,max_len", [
    ([0, 3, 12, 7, 1], 5, 12),
    ([16, 16, 16], 32, 16),             # full rows: the reference's batched-matmul layout
    ([200, 0, 129, 64], 48, 200),       # several chunks per row
])
def test_jagged_weighted_sum_matches_reference(lengths, dim, max_len):
    g = torch.Generator().manual_seed(dim)
    offsets = offsets_for(lengths)
    values = torch.randn(sum(lengths), dim, generator=g)
    weights = torch.randn(len(lengths), max_len, generator=g)  # columns past a row's length are ignored
    upstream = torch.randn(len(lengths), dim, generator=g).to(DEVICE)
    results = []
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        v, w = values.to(DEVICE).requires_grad_(), weights.to(DEVICE).requires_grad_()
        out = jagged_weighted_sum(v, offsets, w, kernel)
        out.backward(upstream)
        results.append((out, v.grad, w.grad))
    for tri, ref in zip(results[1], results[0]):
        torch.testing.assert_close(tri, ref)


def test_bf16_inputs_match_the_fp32_reference_within_bf16_rounding():
    """bf16 keys, query, values and weights (the dtype a bf16 dense part can hand the ops): both kernels keep
    their outputs and gradients in bf16 and agree with the fp32 reference on the same (bf16-rounded) inputs to
    bf16's precision; the top-K picks the same behaviors up to ties that bf16 rounding creates."""
    lengths, dim, max_len, k = [50, 0, 7, 64, 33], 32, 64, 10
    g = torch.Generator().manual_seed(5)
    offsets = offsets_for(lengths)
    bf16_inputs = [t.bfloat16() for t in (torch.randn(sum(lengths), dim, generator=g),
                                          torch.randn(len(lengths), dim, generator=g),
                                          torch.randn(max_len + 1, generator=g),
                                          torch.randn(len(lengths), max_len, generator=g))]
    upstream = torch.randn(len(lengths), max_len, generator=g).to(DEVICE)
    upstream_sum = torch.randn(len(lengths), dim, generator=g).to(DEVICE)

    def run(kernel: Kernel, dtype: torch.dtype):
        keys, query, bias, weights = [t.to(DEVICE, dtype).clone().requires_grad_() for t in bf16_inputs]
        out = gsu_topk(keys, offsets, query, bias, k, max_len, 1 / dim ** 0.5, kernel)
        pooled = jagged_weighted_sum(keys, offsets, weights, kernel)
        (out.scores.float() * upstream).sum().backward(retain_graph=True)
        (pooled.float() * upstream_sum).sum().backward()
        return out, pooled, keys.grad, query.grad, bias.grad, weights.grad

    ref = run(Kernel.PYTORCH, torch.float32)
    for kernel in (Kernel.PYTORCH, Kernel.TRITON):
        out, pooled, *grads = run(kernel, torch.bfloat16)
        assert out.scores.dtype == pooled.dtype == torch.bfloat16
        valid = ref[0].scores > mask_value_for(torch.float32)
        torch.testing.assert_close(out.scores.float()[valid], ref[0].scores[valid], rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(pooled.float(), ref[1], rtol=2e-2, atol=5e-2)
        # the picked behaviors' exact (fp32) scores: the same multiset up to bf16 ties
        picked = ref[0].scores.gather(1, out.top_indices).masked_fill(~out.top_mask, 0.0)
        best = ref[0].scores.gather(1, ref[0].top_indices).masked_fill(~ref[0].top_mask, 0.0)
        assert torch.equal(out.top_mask, ref[0].top_mask)
        torch.testing.assert_close(picked.sort(dim=1).values, best.sort(dim=1).values, rtol=2e-2, atol=2e-2)
        for grad, ref_grad in zip(grads, ref[2:]):
            assert grad.dtype == torch.bfloat16
            # sums of up to 64 bf16 products: about 2% of their magnitude
            torch.testing.assert_close(grad.float(), ref_grad, rtol=2e-2, atol=0.1,
                                       msg=lambda m: f"{kernel} {tuple(grad.shape)}: {m}")


# gsu_topk; + jagged_topk (hard, DIN MLP); the attention heads' stacked gsu_topk (H * B rows, key_bias); stacked
# TIN's second gsu_topk (its query a learned map of layer 1's output)
@pytest.mark.parametrize("variant,extra", [("dare", ()), ("twin_hard", ()), ("din", ()),
                                           ("dare", ("--model.attention_heads", "[[item, cate], [cate, pos]]")),
                                           ("dare", ("--model.esu_layers", "2"))],
                         ids=["dare", "twin_hard", "din", "dare_attention_heads", "dare_stacked_tin"])
def test_model_forward_and_gradients_match_with_triton_kernels(tiny_data, variant, extra):
    """The whole model (with the aux head, unsharded, fp32): outputs and every parameter gradient of one
    training step agree between ``model.op_kernel: triton`` and ``pytorch``; evaluation outputs too."""
    from dare_rec.data.parquet import ParquetBatchReader
    from dare_rec.modules.model import build_model

    cfg = tiny_config()
    # a small batch (the interpreter is slow) with an empty and a shorter-than-K history
    for batch in ParquetBatchReader(tiny_data, "train", 16, max_len=cfg.data.max_len):
        lengths = batch.sparse_features["hist_item"].lengths()
        if (lengths == 0).any() and ((lengths > 0) & (lengths < cfg.model.top_k)).any():
            break
    else:
        pytest.fail("the tiny dataset lost its short histories")
    batch = batch.to(DEVICE)
    runs = {}
    for kernel in ("pytorch", "triton"):
        torch.manual_seed(0)
        train = build_model(tiny_config("--model.variant", variant, "--model.op_kernel", kernel, *extra), 501, 21,
                            DEVICE, DEVICE)
        loss, (_, logits, _) = train(batch)
        loss.backward()
        train.eval()
        with torch.no_grad():
            _, (_, eval_logits, _) = train(batch)
        grads = {name: p.grad for name, p in train.named_parameters()}
        runs[kernel] = (loss.detach(), logits, eval_logits, grads)
    (ref_loss, ref_logits, ref_eval, ref_grads), (loss, logits, eval_logits, grads) = runs["pytorch"], runs["triton"]
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(eval_logits, ref_eval)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], msg=lambda m: f"{name}: {m}")


def test_auto_resolves_to_pytorch_on_cpu_and_triton_on_cuda():
    from dare_rec.ops.kernel import resolve_kernel

    assert resolve_kernel(Kernel.AUTO, "cpu") == Kernel.PYTORCH
    assert resolve_kernel(Kernel.AUTO, "cuda") == (Kernel.TRITON if triton_available() else Kernel.PYTORCH)
    assert resolve_kernel(Kernel.TRITON, "cpu") == Kernel.TRITON
    assert triton_available(), "the test setup installs the [triton] extra"
