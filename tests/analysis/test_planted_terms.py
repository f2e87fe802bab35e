"""The planted-term fit and the partner selection of ``dare_rec.analysis.planted_terms`` on inputs built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dare_rec.analysis.planted_terms import pair_coefficients, partner_selection


def test_fit_recovers_the_weights_a_logit_was_built_with():
    """Logits built as 0.5 + 0.9 * blind + 2.0 * pair give back exactly those weights; planted is the pair
    term's size and pair_share the fraction of samples that carry it."""
    rng = np.random.default_rng(0)
    click_prob = rng.uniform(0.05, 0.95, 1000)
    pair_bonus = np.where(rng.random(1000) < 0.2, 3.0, 0.0)
    blind = np.log(click_prob / (1 - click_prob)) - pair_bonus
    fit = pair_coefficients(0.5 + 0.9 * blind + 2.0 * (pair_bonus > 0), click_prob, pair_bonus)
    assert (fit["intercept"], fit["blind"], fit["pair"]) == pytest.approx((0.5, 0.9, 2.0), abs=1e-9)
    assert fit["planted"] == 3.0 and fit["pair_share"] == pytest.approx((pair_bonus > 0).mean())


def test_partner_selection_counts_partners_in_the_window_and_their_weight():
    """Two samples with histories (oldest first) [3, 5, 7, 5] and [5, 3, 5], target category 3, partner 5,
    window 2; K = 3 slots. Sample 0 selects indices 3 (cate 5, in the window: a partner), 0 (cate 3, the
    target's) and 1 (cate 5 but outside the window); sample 1 selects 0 (cate 5, outside the window) and 1
    (cate 3), and its third slot is masked though its index points at a partner in the window."""
    hist_cate = np.array([3, 5, 7, 5, 5, 3, 5])
    offsets = np.array([0, 4, 7])
    selected = np.array([[3, 0, 1], [0, 1, 2]])
    valid = np.array([[True, True, True], [True, True, False]])
    layer1 = np.array([[0.5, 0.3, 0.2], [0.4, 0.6, 0.0]])
    args = (selected, valid, {"layer1": layer1}, hist_cate, offsets, np.array([5, 5]), np.array([3, 3]), 2)
    both = partner_selection(*args, samples=np.array([True, True]))
    assert both["samples"] == 2
    assert both["partner_selected"] == 0.5 and both["partner_slots"] == 0.5 and both["valid_slots"] == 2.5
    assert both["layer1_partner_weight"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert both["layer1_target_weight"] == pytest.approx(0.45)  # (0.3 + 0.6) / 2
    second = partner_selection(*args, samples=np.array([False, True]))
    assert second["samples"] == 1 and second["partner_selected"] == 0 and second["layer1_partner_weight"] == 0
