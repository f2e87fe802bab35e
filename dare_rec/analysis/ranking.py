"""How well a search ranks a sample's behaviors: NDCG / capped recall against per-behavior gains (numpy only).

Per-sample quantities are indexed by **target-relative position** (1 = most recent behavior, as the GSU's
position tables; column 0 is padding), so a ``[B, P]`` array holds a jagged batch of histories of up to
``P - 1`` behaviors and a ranking is ``[B, K]`` positions (0 where a sample has fewer than K behaviors).

Gains come from two sources:

* ground truth (synthetic data): ``hist_relevance``, the behavior's true contribution to the click logit;
* the paper's estimate (DARE §4.3): the mutual information between the label and "the history has category c
  at position p", counted on the training split for the target's category (:class:`CategoryPositionCounts`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from dare_rec.analysis.information import binary_feature_information


def by_position(values: np.ndarray, offsets: np.ndarray, num_positions: int) -> np.ndarray:
    """Jagged per-behavior values (each row oldest -> newest) -> ``[B, num_positions]``, column p = the value of
    the behavior p before the target, 0 where there is none (and in column 0).

    Args:
        values: ``[L]`` flat values.
        offsets: ``[B + 1]`` row offsets; no row may be longer than ``num_positions - 1``.
    """
    lengths = np.diff(offsets)
    if lengths.size and lengths.max() >= num_positions:
        raise ValueError(f"by_position: a history of {lengths.max()} behaviors does not fit {num_positions} "
                         f"positions")
    rows = np.repeat(np.arange(lengths.size), lengths)
    positions = lengths[rows] - (np.arange(offsets[-1]) - offsets[:-1][rows])
    out = np.zeros((lengths.size, num_positions), dtype=np.asarray(values).dtype)
    out[rows, positions] = values
    return out


def ranked(values_by_position: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """``[B, K]`` values of the ranked behaviors (0 where the ranking holds position 0 = nothing)."""
    return np.take_along_axis(values_by_position, ranking, axis=1)


def ideal(gains_by_position: np.ndarray, k: int) -> np.ndarray:
    """``[B, k]`` the k largest gains of each sample in decreasing order (the ideal ranking's gains)."""
    gains = gains_by_position[:, 1:]
    k_eff = min(k, gains.shape[1])
    top = -np.sort(-np.partition(gains, gains.shape[1] - k_eff, axis=1)[:, gains.shape[1] - k_eff:], axis=1)
    return np.pad(top, ((0, 0), (0, k - k_eff)))


def cumulative_dcg(gains: np.ndarray) -> np.ndarray:
    """``[B, K]`` gains in rank order -> ``[B, K]`` DCG@k for k = 1..K (``sum_{r<=k} g_r / log2(r + 1)``)."""
    discounts = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
    return np.cumsum(gains * discounts, axis=1)


def ndcg_curve(ranked_gains: np.ndarray, ideal_gains: np.ndarray, normalise_at_k: bool) -> np.ndarray:
    """``[B, K]`` NDCG at k = 1..K of each sample.

    Args:
        ranked_gains: gains of the model's ranking, ``[B, K]``.
        ideal_gains: gains of the ideal ranking, ``[B, K]`` (see :func:`ideal`).
        normalise_at_k: divide DCG@k by the ideal DCG@k (standard NDCG@k); otherwise by the ideal DCG@K, as
            the paper's curve does (it rises from 0 to NDCG@K). Rows whose ideal DCG is 0 give NaN.
    """
    dcg = cumulative_dcg(ranked_gains)
    ideal_dcg = cumulative_dcg(ideal_gains)
    norm = ideal_dcg if normalise_at_k else ideal_dcg[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norm > 0, dcg / norm, np.nan)


def capped_recall_curve(ranked_relevant: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """``[B, K]`` capped recall at k = 1..K: relevant behaviors among the top k / min(k, relevant behaviors);
    NaN for samples without relevant behaviors.

    Args:
        ranked_relevant: ``[B, K]`` bool, the model's k-th pick is relevant.
        num_relevant: ``[B]`` relevant behaviors of the sample.
    """
    hits = np.cumsum(ranked_relevant, axis=1)
    cap = np.minimum(np.arange(1, ranked_relevant.shape[1] + 1)[None, :], num_relevant[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cap > 0, hits / cap, np.nan)


@dataclass(frozen=True)
class SkipRules:
    """When the MI gains of a sample are too poorly estimated to score it (the official script's rules).

    Attributes:
        min_target_samples: skip targets whose category has fewer training samples (paper: 700).
        min_count: a behavior's gain is "sparse" when fewer than this many positive or negative training
            samples of the target's category have its category at its position (paper: 50).
        max_sparse_behaviors: skip samples with more sparse behaviors than this (paper: 20).
    """

    min_target_samples: int = 700
    min_count: int = 50
    max_sparse_behaviors: int = 20


class CategoryPositionCounts:
    """Training-split counts behind the MI gains: for every (target category t, behavior category c, position
    p), how many positive and how many negative samples with target category t have a behavior of category c
    at position p; and how many positive / negative samples each target category has.

    Keys are packed into int64 (``((t * C + c) * P + p) * 2 + label``) and kept sorted with their counts, so
    memory grows with the distinct triples seen, not with C^2 * P.

    Args:
        num_categories: category vocabulary size C (ids 0..C-1).
        num_positions: P = max_len + 1 (positions 1..max_len).
    """

    def __init__(self, num_categories: int, num_positions: int) -> None:
        self.num_categories = num_categories
        self.num_positions = num_positions
        self.target_counts = np.zeros((num_categories, 2), dtype=np.int64)  # [t, label]
        self._keys = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: List[Tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, target_cate: np.ndarray, labels: np.ndarray, hist_cate: np.ndarray, offsets: np.ndarray) -> None:
        """Counts a batch: ``target_cate``, ``labels`` ``[B]``; ``hist_cate`` ``[L]`` jagged by ``offsets``
        ``[B + 1]`` (rows oldest -> newest, at most P - 1 behaviors)."""
        labels = np.asarray(labels).astype(np.int64)
        np.add.at(self.target_counts, (target_cate, labels), 1)
        lengths = np.diff(offsets)
        rows = np.repeat(np.arange(lengths.size), lengths)
        positions = lengths[rows] - (np.arange(offsets[-1]) - offsets[:-1][rows])
        keys = self._pack(target_cate[rows], hist_cate, positions, labels[rows])
        uniq, counts = np.unique(keys, return_counts=True)
        self._pending.append((uniq, counts))
        self._pending_size += uniq.size
        if self._pending_size > 2 * self._keys.size + (1 << 23):
            self._merge()

    def _pack(self, target: np.ndarray, cate: np.ndarray, position: np.ndarray, label: np.ndarray) -> np.ndarray:
        key = (target.astype(np.int64) * self.num_categories + cate) * self.num_positions + position
        return key * 2 + label

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [k for k, _ in self._pending])
        counts = np.concatenate([self._counts] + [c for _, c in self._pending])
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        self._keys, self._counts = keys[starts], np.add.reduceat(counts, starts) if keys.size else counts
        self._pending, self._pending_size = [], 0

    def lookup(self, target: np.ndarray, cate: np.ndarray, position: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(positive counts, negative counts) for arrays of (target category, behavior category, position)."""
        self._merge()
        negative = self._pack(target, cate, position, np.zeros(np.shape(cate), dtype=np.int64))
        if not self._keys.size:
            return np.zeros(negative.shape, dtype=np.int64), np.zeros(negative.shape, dtype=np.int64)
        # the positive key is negative + 1, so it sits right after the negative one when both exist
        idx = np.minimum(np.searchsorted(self._keys, negative), self._keys.size - 1)
        has_negative = self._keys[idx] == negative
        x_neg = np.where(has_negative, self._counts[idx], 0)
        idx = np.minimum(idx + has_negative, self._keys.size - 1)
        x_pos = np.where(self._keys[idx] == negative + 1, self._counts[idx], 0)
        return x_pos, x_neg

    def gains(self, target_cate: np.ndarray, hist_cate_by_position: np.ndarray, rules: SkipRules
              ) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
        """MI gains of a batch of samples and which samples the skip rules keep.

        Args:
            target_cate: ``[B]``.
            hist_cate_by_position: ``[B, P]`` category at each position (0 = no behavior), see
                :func:`by_position`.

        Returns:
            gains ``[B, P]`` (bits, 0 where there is no behavior), keep ``[B]`` bool, and the skip counts
            ``{"rare_target": n, "sparse_counts": n}``.
        """
        rows, positions = np.nonzero(hist_cate_by_position > 0)
        targets = target_cate[rows]
        x_pos, x_neg = self.lookup(targets, hist_cate_by_position[rows, positions], positions)
        t_neg, t_pos = self.target_counts[targets, 0], self.target_counts[targets, 1]
        gains = np.zeros(hist_cate_by_position.shape)
        gains[rows, positions] = binary_feature_information(x_pos, x_neg, t_pos, t_neg)
        rare = self.target_counts[target_cate].sum(1) < rules.min_target_samples
        sparse_behavior = (x_pos < rules.min_count) | (x_neg < rules.min_count)
        sparse = np.bincount(rows, weights=sparse_behavior, minlength=target_cate.size)
        too_sparse = ~rare & (sparse > rules.max_sparse_behaviors)
        return gains, ~(rare | too_sparse), {"rare_target": int(rare.sum()), "sparse_counts": int(too_sparse.sum())}


def mean_curve(curves: np.ndarray) -> List[float]:
    """Mean over samples of ``[B, K]`` per-sample curves, ignoring NaN (NaN where nothing is left)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return [float(v) for v in np.nanmean(curves, axis=0)]
