"""Exact metrics vs independent computations (pairwise brute force, per-group loops, torchmetrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_auroc

from dare_rec.metrics.offline import (METRIC_HIGHER_IS_BETTER, auc, evaluation_metrics, grouped_auc, is_improvement,
                                     logloss)


def pairwise_auc(labels, scores):
    """P(score_pos > score_neg) + 1/2 P(tie), over every (positive, negative) pair."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


samples = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(-3, 3), min_size=n, max_size=n),  # few distinct values: many ties
    st.lists(st.integers(0, 4), min_size=n, max_size=n),
))


@settings(deadline=None, max_examples=100)
@given(samples)
def test_auc_matches_pairwise_brute_force(data):
    labels, scores, _ = (np.array(x) for x in data)
    expected = pairwise_auc(labels, scores.astype(float))
    got = auc(labels, scores)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_auc_matches_torchmetrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = rng.normal(size=5000) + labels
    assert auc(labels, scores) == pytest.approx(binary_auroc(torch.tensor(scores), torch.tensor(labels)).item(),
                                                abs=1e-6)


@settings(deadline=None, max_examples=100)
@given(samples)
def test_grouped_auc_matches_per_group_loop(data):
    labels, scores, groups = (np.array(x) for x in data)
    num, den, used = 0.0, 0.0, 0
    for g in np.unique(groups):
        m = groups == g
        if 0 < labels[m].sum() < m.sum():  # single-class groups are skipped
            num += m.sum() * pairwise_auc(labels[m], scores[m].astype(float))
            den += m.sum()
            used += 1
    out = grouped_auc(labels, scores, groups)
    assert out["groups"] == used and out["samples"] == den
    if used:
        assert out["gauc"] == pytest.approx(num / den, abs=1e-12)
    else:
        assert math.isnan(out["gauc"])


def test_metrics_do_not_depend_on_row_order():
    rng = np.random.default_rng(1)
    labels, logits = rng.integers(0, 2, 300), rng.integers(-2, 3, 300).astype(float)
    users, cates = rng.integers(0, 20, 300), rng.integers(0, 5, 300)
    perm = rng.permutation(300)
    a = evaluation_metrics(labels, logits, users, cates)
    b = evaluation_metrics(labels[perm], logits[perm], users[perm], cates[perm])
    assert a.pop("logloss") == pytest.approx(b.pop("logloss"), rel=1e-12)  # float summation order only
    assert a == b  # AUC and GAUC are exact rank statistics


def test_logloss_matches_formula_and_is_stable():
    labels = np.array([1, 0, 1, 0])
    logits = np.array([2.0, -1.0, 0.0, 800.0])
    p = 1 / (1 + np.exp(-logits[:3]))
    direct = -(labels[:3] * np.log(p) + (1 - labels[:3]) * np.log(1 - p))
    assert logloss(labels[:3], logits[:3]) == pytest.approx(direct.mean())
    assert logloss(labels, logits) == pytest.approx((direct.sum() + 800.0) / 4)  # no overflow to inf


def test_evaluation_metrics_reports_oracle_when_given_click_probabilities():
    labels = np.array([1, 0, 1, 0])
    out = evaluation_metrics(labels, np.zeros(4), np.arange(4), np.zeros(4), click_probs=np.array([.9, .1, .8, .2]))
    assert out["oracle_auc"] == 1.0 and set(out) >= {"auc", "gauc_user", "gauc_category", "logloss"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_are_an_error_not_a_rank(bad):
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.5, 0.1, bad, 0.2])
    for metric in (lambda: auc(labels, scores), lambda: grouped_auc(labels, scores, np.zeros(4)),
                   lambda: logloss(labels, scores),
                   lambda: evaluation_metrics(labels, scores, np.arange(4), np.zeros(4))):
        with pytest.raises(ValueError, match="1 of 4 scores are not finite \\(first at index 2\\)"):
            metric()


def test_improvement_follows_each_metrics_direction():
    assert set(METRIC_HIGHER_IS_BETTER) == {"auc", "gauc_user", "gauc_category", "logloss"}
    out = evaluation_metrics(np.array([1, 0, 1, 0]), np.array([1.0, -1.0, 0.5, 0.0]), np.arange(4), np.zeros(4))
    assert set(METRIC_HIGHER_IS_BETTER) <= set(out)  # every selectable metric is reported
    assert is_improvement("auc", 0.71, 0.70) and not is_improvement("auc", 0.70, 0.70)
    assert is_improvement("logloss", 0.40, 0.41) and not is_improvement("logloss", 0.42, 0.41)
    assert is_improvement("gauc_user", 0.5, None)
