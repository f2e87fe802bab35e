"""GSU top-K reference vs a per-row brute force, including short and empty histories."""

from __future__ import annotations

import math
from typing import List

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dare_rec.ops import gsu_topk
from dare_rec.ops.gsu import mask_value_for


def make_inputs(lengths: List[int], dim: int, max_len: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0] + lengths).cumsum(0)
    keys = torch.randn(int(offsets[-1]), dim, generator=g, requires_grad=True)
    query = torch.randn(len(lengths), dim, generator=g, requires_grad=True)
    bias = torch.randn(max_len + 1, generator=g, requires_grad=True)
    return keys, offsets, query, bias


def brute_force(keys, offsets, query, bias, k, scale):
    """Per row: score every behavior with a Python loop, return {slot: score} of the top min(k, L)."""
    out = []
    keys, query, bias = keys.detach(), query.detach(), bias.detach()
    for b in range(query.size(0)):
        start, end = int(offsets[b]), int(offsets[b + 1])
        length = end - start
        scores = {j: float(keys[start + j] @ query[b]) * scale + float(bias[length - j]) for j in range(length)}
        best = sorted(scores, key=scores.get, reverse=True)[: min(k, length)]
        out.append({j: scores[j] for j in best})
    return out


@settings(deadline=None, max_examples=40)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    dim=st.sampled_from([1, 4, 16]),
    k=st.integers(1, 15),
    seed=st.integers(0, 2**16),
)
def test_matches_brute_force(lengths, dim, k, seed):
    max_len = 12
    keys, offsets, query, bias = make_inputs(lengths, dim, max_len, seed)
    scale = 1 / math.sqrt(dim)
    out = gsu_topk(keys, offsets, query, bias, k, max_len, scale)
    expected = brute_force(keys, offsets, query, bias, k, scale)
    k_eff = min(k, max_len)
    assert out.top_indices.shape == out.top_mask.shape == (len(lengths), k_eff)
    for b, exp in enumerate(expected):
        selected = out.top_indices[b][out.top_mask[b]].tolist()
        assert sorted(selected) == sorted(exp), f"row {b}: selected {selected}, expected {sorted(exp)}"
        for j, score in exp.items():
            assert out.scores[b, j].item() == pytest.approx(score, rel=1e-5, abs=1e-5)
        # padding slots carry the mask value and are never selected as valid
        assert (out.scores[b, lengths[b]:] == mask_value_for(torch.float32)).all()
        assert int(out.top_mask[b].sum()) == min(k_eff, lengths[b])


def test_histories_shorter_than_k_and_empty():
    lengths = [0, 1, 3, 0]
    keys, offsets, query, bias = make_inputs(lengths, 4, max_len=8, seed=0)
    out = gsu_topk(keys, offsets, query, bias, k=5, max_len=8, scale=0.5)
    assert out.top_mask.sum(1).tolist() == [0, 1, 3, 0]
    # every valid selection points inside its row
    assert (out.top_indices[out.top_mask] < torch.tensor(lengths).repeat_interleave(out.top_mask.sum(1))).all()
    assert torch.isfinite(out.scores.gather(1, out.top_indices)[out.top_mask]).all()


def test_whole_batch_without_history():
    keys, offsets, query, bias = make_inputs([0, 0], 4, max_len=6, seed=0)
    out = gsu_topk(keys, offsets, query, bias, k=3, max_len=6, scale=1.0)
    assert not out.top_mask.any()
    assert out.scores.shape == (2, 6)


def test_gradients_reach_scored_keys_query_and_position_bias():
    keys, offsets, query, bias = make_inputs([5, 2], 4, max_len=6, seed=1)
    out = gsu_topk(keys, offsets, query, bias, k=2, max_len=6, scale=0.5)
    selected = out.scores.gather(1, out.top_indices).masked_fill(~out.top_mask, 0).sum()
    selected.backward()
    # exactly the selected behaviors of each row receive a key gradient
    grad_rows = (keys.grad.abs().sum(1) > 0).nonzero().flatten().tolist()
    expected = sorted((offsets[:-1].unsqueeze(1) + out.top_indices)[out.top_mask].tolist())
    assert grad_rows == expected
    assert query.grad.abs().sum() > 0 and bias.grad.abs().sum() > 0


def test_full_rows_use_the_same_math_as_ragged_rows():
    """Every row full (the reference's zero-copy [B, N, D] layout with its own backward) vs the same rows
    inside a ragged batch (the per-behavior layout): same scores, selections and gradients."""
    keys, offsets, query, bias = make_inputs([6, 6, 6], 4, max_len=6, seed=2)
    upstream = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    full = gsu_topk(keys, offsets, query, bias, k=3, max_len=6, scale=0.5)
    full.scores.backward(upstream)
    full_grads = [t.grad.clone() for t in (keys, query, bias)]
    for t in (keys, query, bias):
        t.grad = None
    # a fourth, shorter row makes the batch ragged; it gets no upstream gradient
    ragged = gsu_topk(torch.cat([keys, keys[:2]]), torch.cat([offsets, offsets[-1:] + 2]),
                      torch.cat([query, query[:1]]), bias, k=3, max_len=6, scale=0.5)
    ragged.scores[:3].backward(upstream)
    torch.testing.assert_close(full.scores, ragged.scores[:3])
    assert torch.equal(full.top_indices, ragged.top_indices[:3])
    for full_grad, t in zip(full_grads, (keys, query, bias)):
        torch.testing.assert_close(full_grad, t.grad)


def test_rejects_inconsistent_shapes():
    keys, offsets, query, bias = make_inputs([5, 2], 4, max_len=6, seed=0)
    with pytest.raises(AssertionError, match="position_bias"):
        gsu_topk(keys, offsets, query, bias[:6], k=2, max_len=6, scale=1.0)
    with pytest.raises(AssertionError, match=r"position_bias must be \[P\] or \[B, P\]"):  # 3 rows for B = 2
        gsu_topk(keys, offsets, query, bias.expand(3, -1), k=2, max_len=6, scale=1.0)
    with pytest.raises(AssertionError, match="same width"):
        gsu_topk(keys, offsets, query[:, :3], bias, k=2, max_len=6, scale=1.0)
    with pytest.raises(AssertionError, match="B \\* max_len"):
        gsu_topk(keys, offsets, query, bias[:4], k=2, max_len=3, scale=1.0)


@pytest.mark.parametrize("lengths", [[5, 0, 2, 6], [6, 6, 6]])  # ragged (with an empty row), every row full
def test_key_bias_adds_a_score_per_behavior(lengths):
    """``key_bias [L]`` (the side fields' term) is added to each behavior's score, moves the selection, and
    its gradient is the score's, in both layouts of the reference."""
    keys, offsets, query, bias = make_inputs(lengths, 4, max_len=6, seed=3)
    key_bias = torch.zeros(keys.size(0))
    key_bias[offsets[:-1][torch.tensor(lengths) > 0]] = 100.0  # the oldest behavior of every non-empty row wins
    key_bias.requires_grad_()
    out = gsu_topk(keys, offsets, query, bias, k=2, max_len=6, scale=0.5, key_bias=key_bias)
    plain = gsu_topk(keys, offsets, query, bias, k=2, max_len=6, scale=0.5)
    for b, length in enumerate(lengths):
        if length:
            assert out.top_indices[b, 0] == 0
            torch.testing.assert_close(out.scores[b, :length], plain.scores[b, :length] + key_bias[
                int(offsets[b]):int(offsets[b + 1])].detach())
    upstream = torch.randn(out.scores.shape, generator=torch.Generator().manual_seed(1))
    out.scores.backward(upstream)
    valid = torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    torch.testing.assert_close(key_bias.grad, upstream[valid])


@pytest.mark.parametrize("lengths", [[5, 0, 2, 6], [6, 6, 6, 6]])  # ragged (with an empty row), every row full
def test_a_position_bias_per_row_is_the_shared_one_broadcast(lengths):
    """``position_bias [B, N + 1]`` (each sample its objective's slice): equal rows give the scores, selections
    and summed gradient of the shared ``[N + 1]`` bias; a row of its own moves only that row's selection."""
    keys, offsets, query, bias = make_inputs(lengths, 4, max_len=6, seed=5)
    shared = gsu_topk(keys, offsets, query, bias, k=2, max_len=6, scale=0.5)
    upstream = torch.randn(shared.scores.shape, generator=torch.Generator().manual_seed(2))
    shared.scores.backward(upstream)
    per_row = bias.detach().expand(len(lengths), -1).clone().requires_grad_()
    out = gsu_topk(keys, offsets, query, per_row, k=2, max_len=6, scale=0.5)
    assert torch.equal(out.scores, shared.scores) and torch.equal(out.top_indices, shared.top_indices)
    out.scores.backward(upstream)
    torch.testing.assert_close(per_row.grad.sum(0), bias.grad)
    moved = per_row.detach().clone()
    moved[-1, lengths[-1]] += 100.0  # the last row's oldest behavior (position = its length)
    top = gsu_topk(keys, offsets, query, moved, k=2, max_len=6, scale=0.5).top_indices
    assert top[-1, 0] == 0 and torch.equal(top[:-1], shared.top_indices[:-1])
