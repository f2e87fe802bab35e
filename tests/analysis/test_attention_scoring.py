"""score_rankings on a hand-built split: the ideal ranking scores 1, data without relevance has no ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from dare_rec.analysis.attention import check_order, score_rankings
from dare_rec.analysis.ranking import CategoryPositionCounts, SkipRules
from dare_rec.analysis.split_data import SplitRows
from dare_rec.data import schema
from dare_rec.data.schema import DataError


def split(with_relevance):
    # sample 0: history (oldest -> newest) cates [1, 2, 1], target cate 1; sample 1: [2], target cate 2
    columns = {schema.USER_ID: np.array([7, 8]), schema.TARGET_CATE: np.array([1, 2]), schema.LABEL: np.array([1, 0]),
               schema.HIST_CATE: np.array([1, 2, 1, 2])}
    if with_relevance:
        columns[schema.HIST_RELEVANCE] = np.array([0.25, 0.0, 1.0, 1.0], dtype=np.float32)
    return SplitRows(columns, np.array([0, 3, 4]))


def test_ideal_and_reversed_rankings_on_ground_truth():
    rows = split(True)
    counts = CategoryPositionCounts(3, 4)
    counts.add(rows.columns[schema.TARGET_CATE], rows.columns[schema.LABEL], rows.columns[schema.HIST_CATE], rows.offsets)
    rankings = {"ideal": {"gsu": np.array([[1, 3], [1, 0]])},  # positions: relevance 1.0, then 0.25
                "reversed": {"gsu": np.array([[3, 1], [1, 0]])}}
    out = score_rankings(rankings, rows, counts, SkipRules(0, 0, 10), max_len=3)
    ideal = out["checkpoints"]["ideal"]["rankings"]["gsu"]["ground_truth"]
    assert ideal["ndcg"] == pytest.approx([1, 1]) and ideal["recall"] == pytest.approx([1, 1])
    reversed_ = out["checkpoints"]["reversed"]["rankings"]["gsu"]["ground_truth"]
    # sample 0: NDCG@1 = 0.25 / 1; NDCG@2 = (0.25 + 1 / log2 3) / (1 + 0.25 / log2 3); sample 1: 1
    l3 = np.log2(3)
    assert reversed_["ndcg"] == pytest.approx([(0.25 + 1) / 2, ((0.25 + 1 / l3) / (1 + 0.25 / l3) + 1) / 2])
    recent = out["checkpoints"]["ideal"]["baselines"]["recent"]["ground_truth"]
    assert recent["ndcg"][0] == pytest.approx(1.0)  # the most recent behavior is the most relevant one


def test_without_relevance_only_mi_gains_are_scored():
    rows = split(False)
    counts = CategoryPositionCounts(3, 4)
    counts.add(rows.columns[schema.TARGET_CATE], rows.columns[schema.LABEL], rows.columns[schema.HIST_CATE], rows.offsets)
    out = score_rankings({"m": {"gsu": np.array([[1, 2], [1, 0]])}}, rows, counts, SkipRules(0, 0, 10), 3)
    entry = out["checkpoints"]["m"]["rankings"]["gsu"]
    assert set(entry) == {"mutual_information"} and "ground_truth" not in out


def test_order_check_names_the_mismatch():
    rows = split(True)
    collected = {"labels": np.array([1, 0]), "target_cates": np.array([1, 2]), "user_ids": np.array([8, 7]),
                 "lengths": np.array([3, 1])}
    with pytest.raises(DataError, match="user_ids differs"):
        check_order(collected, rows, "data (test)")
