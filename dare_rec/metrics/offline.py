"""Exact offline metrics over a full evaluation set (numpy, vectorised, order-independent).

* AUC: Mann-Whitney U with average ranks for tied scores (exactly the area under the ROC curve with
  ties counted as 1/2), so the value does not depend on row order or on how rows were split across ranks.
* Grouped AUC (GAUC): AUC per group, averaged with weight = group size; groups whose labels are all 0 or all
  1 are skipped (their AUC is undefined). DARE's "category average AUC" is GAUC grouped by target category;
  the recommender-standard GAUC groups by user.
* Logloss: mean binary cross-entropy of sigmoid(logit), computed from logits (numerically stable).

Scores must be finite: a NaN would sort as the largest score and give a meaningless rank, so non-finite
scores are an error, not a rank.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

# The model-quality metrics of :func:`evaluation_metrics` and whether a larger value is better (validation
# keeps the best checkpoint by one of them: ``train.val_metric``).
METRIC_HIGHER_IS_BETTER = {"auc": True, "gauc_user": True, "gauc_category": True, "logloss": False}


def is_improvement(metric: str, value: float, best: Optional[float]) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (None: nothing to beat yet). Ties do not improve."""
    if best is None:
        return True
    return value > best if METRIC_HIGHER_IS_BETTER[metric] else value < best


def _check_finite(scores: np.ndarray) -> None:
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(scores)} scores are not finite (first at index "
                         f"{int(np.nonzero(bad)[0][0])})")


def _average_ranks(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-based rank of every score within its group, tied scores sharing their average rank."""
    order = np.lexsort((scores, groups))
    s, g = scores[order], groups[order]
    n = len(s)
    # Runs of equal (group, score) are ties; group starts reset the rank.
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
    run_id = np.cumsum(new_run) - 1
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    position = np.arange(n) - group_start + 1  # 1-based position within the group
    starts = np.nonzero(new_run)[0]
    ends = np.append(starts[1:], n) - 1
    run_first, run_last = position[starts], position[ends]
    ranks = np.empty(n)
    ranks[order] = (run_first[run_id] + run_last[run_id]) / 2.0
    return ranks


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> Dict[str, float]:
    """Size-weighted mean of per-group AUCs, skipping single-class groups.

    Args:
        labels: ``[n]`` 0/1.
        scores: ``[n]`` any monotone score (logits or probabilities).
        groups: ``[n]`` integer group key.

    Returns:
        ``{"gauc": value (nan if no group qualifies), "groups": groups used, "samples": samples used}``.
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    _check_finite(scores)
    _, gid = np.unique(np.asarray(groups), return_inverse=True)
    ranks = _average_ranks(scores, gid)
    n_groups = gid.max() + 1 if len(gid) else 0
    size = np.bincount(gid, minlength=n_groups).astype(np.float64)
    pos = np.bincount(gid, weights=labels, minlength=n_groups)
    neg = size - pos
    pos_rank_sum = np.bincount(gid, weights=ranks * labels, minlength=n_groups)
    ok = (pos > 0) & (neg > 0)
    auc = (pos_rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2.0) / (pos[ok] * neg[ok])
    weight = size[ok]
    value = float((auc * weight).sum() / weight.sum()) if ok.any() else float("nan")
    return {"gauc": value, "groups": int(ok.sum()), "samples": int(weight.sum())}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (nan when only one class is present)."""
    return grouped_auc(labels, scores, np.zeros(len(labels), dtype=np.int64))["gauc"]


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits)``: ``softplus(z) - y * z``."""
    z = np.asarray(logits, dtype=np.float64)
    _check_finite(z)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def evaluation_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    user_ids: np.ndarray,
    target_cates: np.ndarray,
    click_probs: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    """The evaluation report: ``auc``, ``gauc_user``, ``gauc_category``, ``logloss``, and ``oracle_auc``
    (AUC of the true click probabilities) when the data carries them. Raises ValueError for non-finite
    logits."""
    by_user = grouped_auc(labels, logits, user_ids)
    by_cate = grouped_auc(labels, logits, target_cates)
    out = {
        "auc": auc(labels, logits),
        "gauc_user": by_user["gauc"],
        "gauc_category": by_cate["gauc"],
        "logloss": logloss(labels, logits),
        "samples": int(len(labels)),
        "positive_rate": float(np.mean(labels)) if len(labels) else float("nan"),
        "gauc_user_groups": by_user["groups"],
        "gauc_category_groups": by_cate["groups"],
    }
    if click_probs is not None:
        out["oracle_auc"] = auc(labels, click_probs)
        p = np.clip(np.asarray(click_probs, dtype=np.float64), 1e-12, 1 - 1e-12)
        out["oracle_logloss"] = logloss(labels, np.log(p) - np.log1p(-p))
    return out
