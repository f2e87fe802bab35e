"""How much of a planted click-logit term a model's logits carry (numpy only; ``benchmarks.pair_probe``)."""

from __future__ import annotations

from typing import Dict

import numpy as np


def pair_coefficients(logits: np.ndarray, click_prob: np.ndarray, pair_bonus: np.ndarray) -> Dict[str, float]:
    """The least-squares fit ``logits ~ a + b * blind + c * pair`` over ``[n]`` samples, ``blind`` the true logit
    without the planted pair term (``log(p / (1 - p)) - pair_bonus``) and ``pair`` its indicator; also the
    planted weight (the largest ``pair_bonus``) and the share of samples that carry it. A model that read the
    pair fully would give ``c`` near ``b`` times the planted weight."""
    blind = np.log(click_prob / (1.0 - click_prob)) - pair_bonus
    design = np.stack([np.ones_like(blind), blind, (pair_bonus > 0).astype(blind.dtype)], axis=1)
    (intercept, slope, pair), *_ = np.linalg.lstsq(design, logits.astype(blind.dtype), rcond=None)
    return {"intercept": float(intercept), "blind": float(slope), "pair": float(pair),
            "planted": float(pair_bonus.max()), "pair_share": float((pair_bonus > 0).mean())}
