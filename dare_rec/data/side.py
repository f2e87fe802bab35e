"""Side information derived from the contract columns (docs/design.md §3).

The time gap of a history behavior to its target is not stored: it is ``target_ts - hist_ts`` in seconds
(the reader refuses a negative one). Models read it as a bucket id, ``log2``-spaced so that minutes, hours,
days and weeks each get a few buckets:

======  ================================
bucket  gap g (seconds)
======  ================================
0       reserved (padding), never returned
1       g = 0 (same second; Tmall: same day)
b >= 2  2^(b-2) <= g < 2^(b-1)
B       g >= 2^(B-2) (the last bucket is open-ended)
======  ================================

With the default ``B = 24`` the last bucket starts at 2^22 s (about 49 days); a Taobao log spans 9 days
(buckets up to 21), Tmall's timestamps are days (86,400 s = bucket 18).
"""

from __future__ import annotations

import numpy as np

DEFAULT_TIME_GAP_BUCKETS = 24
# The largest bucket count whose edges are exact in float64 (frexp of an int64 gap below 2^53).
MAX_TIME_GAP_BUCKETS = 54


def time_gap_buckets(hist_ts: np.ndarray, target_ts: np.ndarray,
                     num_buckets: int = DEFAULT_TIME_GAP_BUCKETS) -> np.ndarray:
    """Bucket ids of the time gaps ``target_ts - hist_ts`` (see the module docstring for the edges).

    Args:
        hist_ts: ``[V]`` int64 timestamps (seconds) of history behaviors, flattened over the batch.
        target_ts: ``[V]`` int64 timestamp of each value's target (the row's ``target_ts`` repeated by its
            history length).
        num_buckets: B, the number of bucket ids (1..B); 2 <= B <= 54.

    Returns:
        ``[V]`` int64 ids in ``1..num_buckets``.

    Raises:
        ValueError: a negative gap (a behavior after its target; the Parquet reader refuses such rows first).
    """
    if not 2 <= num_buckets <= MAX_TIME_GAP_BUCKETS:
        raise ValueError(f"num_buckets must be in [2, {MAX_TIME_GAP_BUCKETS}], got {num_buckets}")
    gap = np.asarray(target_ts, dtype=np.int64) - np.asarray(hist_ts, dtype=np.int64)
    if gap.size and gap.min() < 0:
        bad = int(np.argmax(gap < 0))
        raise ValueError(f"value {bad}: negative time gap {gap[bad]} (hist_ts after target_ts)")
    # frexp(g) = (m, e) with g = m * 2^e, 0.5 <= m < 1: floor(log2 g) = e - 1, exact for integer g < 2^53.
    _, exponent = np.frexp(gap.astype(np.float64))
    return np.where(gap == 0, 1, np.minimum(exponent.astype(np.int64) + 1, num_buckets))
