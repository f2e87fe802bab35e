"""row_topk (the GSU's CPU top-K over long rows) against torch.topk: the same values, valid distinct indices."""

from __future__ import annotations

import math

import pytest
import torch

from dare_rec.ops import row_topk
from dare_rec.ops.topk import MIN_ROW, group_count


def check_same_top(values: torch.Tensor, k: int) -> None:
    """row_topk's values are torch.topk's (descending), and its indices point at them, distinct per row."""
    top_values, top_indices = row_topk(values, k)
    expected = values.topk(k, dim=1).values
    assert torch.equal(top_values, expected)
    assert top_indices.dtype == torch.long and top_indices.shape == (values.size(0), k)
    assert bool(((top_indices >= 0) & (top_indices < values.size(1))).all())
    assert torch.equal(values.gather(1, top_indices), expected)
    assert all(len(set(row.tolist())) == k for row in top_indices)


@pytest.mark.parametrize("n", [4_000, 10_000, 10_007])  # 10,007 (prime) leaves a tail past the groups
@pytest.mark.parametrize("k", [1, 7, 20])
def test_random_rows_match_torch_topk(n, k):
    g = torch.Generator().manual_seed(n + k)
    check_same_top(torch.randn(6, n, generator=g), k)


def test_random_rows_give_torch_topk_indices():
    """Without ties the K largest are unique, so the indices equal torch.topk's too."""
    values = torch.randn(4, 10_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(row_topk(values, 20)[1], values.topk(20, dim=1).indices)


def test_ties_and_minus_infinity():
    """Many equal values (a few distinct levels) and rows that are mostly -inf: the values still match and every
    index is a real slot (the soft fill's unmatched scores are -inf where a behavior matched)."""
    g = torch.Generator().manual_seed(1)
    values = torch.randint(0, 4, (5, 6_000), generator=g).float()
    values[0] = -math.inf
    values[1, 100:] = -math.inf
    check_same_top(values, 20)


def test_integer_ranks():
    """The heads' int64 ranks (recent_first_rank) go through the same path."""
    g = torch.Generator().manual_seed(2)
    check_same_top(torch.randint(-2**40, 2**40, (3, 9_000), generator=g), 20)


def test_strided_rows():
    """A column slice of a wider tensor (row stride above n) is read in place."""
    wide = torch.randn(4, 12_000, generator=torch.Generator().manual_seed(3))
    check_same_top(wide[:, 1_000:11_000], 20)


def test_short_rows_are_torch_topk():
    """Below MIN_ROW (and for K close to sqrt(n)) the call is torch.topk itself: indices equal even with ties."""
    g = torch.Generator().manual_seed(4)
    short = torch.randint(0, 3, (3, MIN_ROW - 1), generator=g).float()
    for values, k in ((short, 20), (torch.randint(0, 3, (3, 5_000), generator=g).float(), 40)):
        got, expected = row_topk(values, k), values.topk(k, dim=1)
        assert torch.equal(got[0], expected.values) and torch.equal(got[1], expected.indices)


def test_group_count_balances_the_two_small_topks():
    """G exceeds K and minimises G + K * (n // G) + n % G: for n = 10,000 and K = 20, 400 groups of 25."""
    assert group_count(10_000, 20) == 400
    for n, k in ((10_007, 20), (4_000, 7), (3_200, 1)):
        g = group_count(n, k)
        cost = g + k * (n // g) + n % g
        assert g > k and all(cost <= h + k * (n // h) + n % h for h in range(k + 1, n // 2 + 1))
