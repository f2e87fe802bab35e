"""Conflict / domination statistics on constructed gradients."""

from __future__ import annotations

import numpy as np
import pytest

from dare_rec.analysis.conflict import TableGradientStats, align_rows, row_cosines


def rows(ids, values):
    return np.array(ids), np.array(values, dtype=float)


def test_aligned_gradients_do_not_conflict():
    a = [[1.0, 2.0], [0.5, -1.0]]
    stats = TableGradientStats("cate_shared")
    stats.add(1, {"att": rows([3, 7], a), "rep": rows([3, 7], 2 * np.array(a))})
    s = stats.summary()
    assert s["mean_row_cosine"] == pytest.approx(1.0)
    assert s["conflicting_step_share"] == 0 and s["conflicting_update_share"] == 0
    assert s["norm_ratio"] == pytest.approx(2.0)
    assert s["rows_seen"] == 2 and s["rows_mostly_conflicting_share"] == 0


def test_opposed_gradients_conflict_everywhere():
    a = np.array([[1.0, 2.0], [0.5, -1.0]])
    stats = TableGradientStats("cate_shared")
    for step in (1, 2):
        stats.add(step, {"att": rows([3, 7], a), "rep": rows([3, 7], -3 * a)})
    s = stats.summary()
    assert s["mean_row_cosine"] == pytest.approx(-1.0)
    assert s["conflicting_step_share"] == 1 and s["conflicting_update_share"] == 1
    assert s["norm_ratio"] == pytest.approx(3.0)
    assert s["rows_mostly_conflicting_share"] == 1
    assert s["series"][0]["table_cosine"] == pytest.approx(-1.0)


def test_rows_one_role_missed_count_for_norms_not_cosines():
    stats = TableGradientStats("cate_shared")
    # row 1: opposed; row 2: only the representation path; row 5: orthogonal
    stats.add(1, {"att": rows([1, 5], [[1.0, 0.0], [0.0, 1.0]]),
                  "rep": rows([1, 2, 5], [[-1.0, 0.0], [0.0, 4.0], [2.0, 0.0]])})
    entry = stats.summary()["series"][0]
    assert entry["mean_row_cosine"] == pytest.approx(-0.5)  # mean of -1 and 0 over rows both touched
    assert entry["conflicting_row_share"] == 1.0  # the orthogonal row has a zero dot: neither
    assert entry["norm_ratio"] == pytest.approx((1 + 4 + 2) / 2)


def test_single_role_tables_report_norms_only():
    stats = TableGradientStats("cate_att")
    stats.add(1, {"att": rows([1, 2], [[3.0, 4.0], [0.0, 1.0]])})
    s = stats.summary()
    assert s["roles"] == ["att"] and "norm_ratio" not in s
    assert s["att_mean_row_norm"] == pytest.approx(3.0)


def test_align_and_cosines():
    ids, a, b = align_rows(np.array([5, 1]), np.ones((2, 2)), np.array([2, 5]), np.full((2, 2), -1.0))
    assert ids.tolist() == [1, 2, 5]
    cos = row_cosines(a, b)
    assert np.isnan(cos[0]) and np.isnan(cos[1]) and cos[2] == pytest.approx(-1.0)
