"""How much of a planted click-logit term a model's logits carry, and where its search and aggregation put a planted
pair's partner behavior (numpy only; ``benchmarks.pair_probe``)."""

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


def partner_selection(selected: np.ndarray, valid: np.ndarray, weights: Dict[str, np.ndarray],
                      hist_cate: np.ndarray, offsets: np.ndarray, partner: np.ndarray, target_cate: np.ndarray,
                      window: int, samples: np.ndarray) -> Dict[str, float]:
    """Where a model's search and aggregation put a planted pair's partner behavior, averaged over the
    ``samples`` (e.g. those that carry the pair term) of ``n``.

    The partner is a behavior of category ``partner`` (pi of the target's category) among the last ``window``
    behaviors, the ones the planted term counts.

    Args:
        selected: ``[n, K]`` the selected behaviors' indices into each history (0 = oldest).
        valid: ``[n, K]`` bool, the selected slots that exist.
        weights: name -> ``[n, K]`` an aggregation's weights over the same slots (e.g. layer 1's, layer 2's).
        hist_cate: ``[V]`` the histories' categories, sample after sample; ``offsets [n + 1]`` their bounds.
        partner: ``[n]`` pi(target category); ``target_cate [n]``.
        window: the planted term's window W.
        samples: ``[n]`` bool, the samples averaged over.

    Returns:
        ``partner_selected`` (share of the samples whose selection holds a partner), ``partner_slots`` (mean
        number of partner slots), ``valid_slots`` (mean number of valid slots), and per weights name
        ``<name>_partner_weight`` (mean weight on the partner slots; an aggregation blind to categories would
        give about partner_slots / valid_slots) and ``<name>_target_weight`` (on the selected behaviors of
        the target's own category, anywhere in the history).
    """
    lengths = np.diff(offsets)
    # masked slots may hold any index: clipped into the values, then dropped by valid
    cate = hist_cate[np.clip(offsets[:-1, None] + selected, 0, max(len(hist_cate) - 1, 0))]
    recent = selected >= (lengths[:, None] - window)
    is_partner = (valid & recent & (cate == partner[:, None]))[samples]
    is_target = (valid & (cate == target_cate[:, None]))[samples]
    out = {"samples": int(samples.sum()), "partner_selected": float(is_partner.any(1).mean()),
           "partner_slots": float(is_partner.sum(1).mean()), "valid_slots": float(valid[samples].sum(1).mean())}
    for name, w in weights.items():
        out[f"{name}_partner_weight"] = float((w[samples] * is_partner).sum(1).mean())
        out[f"{name}_target_weight"] = float((w[samples] * is_target).sum(1).mean())
    return out
