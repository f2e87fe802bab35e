"""Time-gap buckets (dare_rec.data.side): the documented edges, exact at powers of two."""

import numpy as np
import pytest

from dare_rec.data.side import time_gap_buckets


def test_bucket_edges_are_powers_of_two():
    gaps = np.array([0, 1, 2, 3, 4, 7, 8, 86_400, 2**22 - 1, 2**22, 10**12])
    target = np.full(len(gaps), 2 * 10**12, dtype=np.int64)
    ids = time_gap_buckets(target - gaps, target)
    # bucket 1: gap 0; bucket b >= 2: [2^(b-2), 2^(b-1)); the last (24) from 2^22 on
    assert ids.tolist() == [1, 2, 3, 3, 4, 4, 5, 18, 23, 24, 24]
    assert ids.dtype == np.int64


def test_every_gap_below_2_to_the_50_matches_integer_log2():
    rng = np.random.default_rng(0)
    gaps = np.concatenate([rng.integers(1, 2**50, size=1000), 2 ** np.arange(50), 2 ** np.arange(1, 50) - 1])
    ids = time_gap_buckets(np.zeros(len(gaps), dtype=np.int64), gaps, num_buckets=54)
    assert ids.tolist() == [2 + int(g).bit_length() - 1 for g in gaps]


def test_a_negative_gap_and_a_bad_bucket_count_are_refused():
    with pytest.raises(ValueError, match="value 1: negative time gap -5"):
        time_gap_buckets(np.array([0, 15]), np.array([3, 10]))
    with pytest.raises(ValueError, match="num_buckets"):
        time_gap_buckets(np.array([0]), np.array([1]), num_buckets=1)
    assert time_gap_buckets(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
