"""The planted-term fit of ``dare_rec.analysis.planted_terms`` on logits built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dare_rec.analysis.planted_terms import pair_coefficients


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
