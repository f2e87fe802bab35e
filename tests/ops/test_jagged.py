"""Jagged gather / weighted sum references vs per-row loops."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dare_rec.ops import jagged_gather, jagged_weighted_sum


@settings(deadline=None, max_examples=30)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5), k=st.integers(1, 6), seed=st.integers(0, 999))
def test_jagged_gather_matches_loop(lengths, k, seed):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0] + lengths).cumsum(0)
    values = torch.randn(int(offsets[-1]), 3, generator=g, requires_grad=True)
    indices = torch.randint(0, 6, (len(lengths), k), generator=g)
    mask = indices < torch.tensor(lengths).unsqueeze(1)
    out = jagged_gather(values, offsets, indices, mask)
    assert out.shape == (len(lengths), k, 3)
    for b in range(len(lengths)):
        for j in range(k):
            expected = values[offsets[b] + indices[b, j]] if mask[b, j] else torch.zeros(3)
            torch.testing.assert_close(out[b, j], expected)
    if values.numel():
        out.sum().backward()
        # every gathered occurrence of a row contributes 1 to its gradient
        counts = torch.zeros(values.size(0))
        counts.index_add_(0, (offsets[:-1].unsqueeze(1) + indices)[mask], torch.ones(int(mask.sum())))
        torch.testing.assert_close(values.grad, counts.unsqueeze(1).expand(-1, 3))


@settings(deadline=None, max_examples=30)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5), seed=st.integers(0, 999))
def test_jagged_weighted_sum_matches_loop(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0] + lengths).cumsum(0)
    values = torch.randn(int(offsets[-1]), 2, generator=g)
    weights = torch.randn(len(lengths), 6, generator=g)  # columns past a row's length must be ignored
    out = jagged_weighted_sum(values, offsets, weights)
    for b, n in enumerate(lengths):
        expected = sum((weights[b, j] * values[offsets[b] + j] for j in range(n)), torch.zeros(2))
        torch.testing.assert_close(out[b], expected)
