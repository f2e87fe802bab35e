"""NDCG / recall curves and the MI gains of the attention analysis, on hand-built rankings and counts."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dare_rec.analysis.ranking import (CategoryPositionCounts, SkipRules, by_position, capped_recall_curve, ideal,
                                       ndcg_curve, ranked)
from tests.analysis.test_information import brute_force_information

L3 = math.log2(3)


def test_by_position_puts_the_most_recent_behavior_at_position_one():
    # two samples: [a, b, c] (c most recent) and [d]; and an empty one
    got = by_position(np.array([10, 11, 12, 20]), np.array([0, 3, 4, 4]), 5)
    np.testing.assert_array_equal(got, [[0, 12, 11, 10, 0], [0, 20, 0, 0, 0], [0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="does not fit"):
        by_position(np.arange(5), np.array([0, 5]), 5)


def test_ideal_ranking_has_ndcg_one():
    gains = np.array([[0, 1.0, 3.0, 0.0, 2.0]])  # positions 1..4
    best = ideal(gains, 3)
    np.testing.assert_allclose(best, [[3.0, 2.0, 1.0]])
    ranking = np.array([[2, 4, 1]])  # positions in decreasing gain
    np.testing.assert_allclose(ndcg_curve(ranked(gains, ranking), best, True), [[1, 1, 1]])
    np.testing.assert_allclose(ndcg_curve(ranked(gains, ranking), best, False)[0, -1], 1.0)


def test_ndcg_of_a_known_permutation():
    gains = np.array([[0, 1.0, 3.0, 0.0, 2.0]])
    ranking = np.array([[4, 2, 1]])  # gains 2, 3, 1 instead of 3, 2, 1
    dcg = [2, 2 + 3 / L3, 2 + 3 / L3 + 1 / 2]
    idcg = [3, 3 + 2 / L3, 3 + 2 / L3 + 1 / 2]
    got = ndcg_curve(ranked(gains, ranking), ideal(gains, 3), True)[0]
    np.testing.assert_allclose(got, [d / i for d, i in zip(dcg, idcg)])
    assert got[0] == pytest.approx(2 / 3) and got[2] == pytest.approx(0.92249, abs=1e-5)
    # the paper's curve divides every DCG@k by the ideal DCG@K
    np.testing.assert_allclose(ndcg_curve(ranked(gains, ranking), ideal(gains, 3), False)[0],
                               [d / idcg[-1] for d in dcg])


def test_short_histories_and_empty_slots():
    gains = np.array([[0, 0.5, 0, 0], [0, 0, 0, 0]])
    ranking = np.array([[1, 0, 0], [0, 0, 0]])  # one behavior, then nothing; an empty history
    curve = ndcg_curve(ranked(gains, ranking), ideal(gains, 3), True)
    np.testing.assert_allclose(curve[0], [1, 1, 1])
    assert np.isnan(curve[1]).all()


def test_capped_recall():
    relevant = np.array([[True, False, True, False], [False, True, False, False], [False] * 4])
    got = capped_recall_curve(relevant, np.array([2, 1, 0]))
    np.testing.assert_allclose(got[0], [1, 1 / 2, 1, 1])
    np.testing.assert_allclose(got[1], [0, 1, 1, 1])
    assert np.isnan(got[2]).all()


def test_mi_gains_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    num_cats, max_len, n = 4, 5, 300
    lengths = rng.integers(0, max_len + 1, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hist = rng.integers(1, num_cats, offsets[-1])
    target = rng.integers(1, num_cats, n)
    labels = (rng.random(n) < 0.3 + 0.4 * (hist[np.minimum(offsets[:-1], offsets[-1] - 1)] == target)).astype(int)
    counts = CategoryPositionCounts(num_cats, max_len + 1)
    half = n // 2  # two batches, merged
    counts.add(target[:half], labels[:half], hist[:offsets[half]], offsets[:half + 1])
    counts.add(target[half:], labels[half:], hist[offsets[half]:], offsets[half:] - offsets[half])

    # brute force: for each sample of target t, the indicator "category c at position p"
    seqs = [list(hist[offsets[i]:offsets[i + 1]]) for i in range(n)]

    def at(seq, p):
        return seq[len(seq) - p] if p <= len(seq) else 0

    def brute(t, c, p):
        idx = [i for i in range(n) if target[i] == t]
        return brute_force_information([int(at(seqs[i], p) == c) for i in idx], [labels[i] for i in idx])

    cates = by_position(hist, offsets, max_len + 1)
    gains, keep, skips = counts.gains(target, cates, SkipRules(0, 0, max_len))
    assert keep.all() and skips == {"rare_target": 0, "sparse_counts": 0}
    for i in range(0, n, 7):
        for p in range(1, max_len + 1):
            c = at(seqs[i], p)
            expected = brute(target[i], c, p) if c else 0.0
            assert gains[i, p] == pytest.approx(expected, abs=1e-12), (i, p)
    pos = Counter((t, y) for t, y in zip(target, labels))
    assert counts.target_counts[2].tolist() == [pos[(2, 0)], pos[(2, 1)]]


def test_skip_rules():
    counts = CategoryPositionCounts(3, 3)
    # target category 1: 4 samples, all with category 2 at position 1; target category 2: 1 sample
    counts.add(np.array([1, 1, 1, 1, 2]), np.array([1, 0, 1, 0, 1]), np.array([2, 2, 2, 2, 1]),
               np.array([0, 1, 2, 3, 4, 5]))
    cates = np.array([[0, 2, 0], [0, 2, 1], [0, 1, 0]])
    _, keep, skips = counts.gains(np.array([1, 1, 2]), cates, SkipRules(min_target_samples=2, min_count=2,
                                                                        max_sparse_behaviors=0))
    # sample 0: one behavior with 2 positives and 2 negatives -> kept; sample 1: its behavior at position 2
    # was never seen -> sparse; sample 2: its target category has 1 training sample -> rare
    assert keep.tolist() == [True, False, False]
    assert skips == {"rare_target": 1, "sparse_counts": 1}
