"""Scoring a model's search rankings of a split against ground-truth relevance and the paper's MI gains
(numpy + pyarrow, no torch; the rankings come from :func:`dare_rec.analysis.collect.search_rankings`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, Optional, Tuple

import numpy as np
from tqdm import tqdm

from dare_rec.analysis.ranking import (CategoryPositionCounts, SkipRules, by_position, capped_recall_curve, ideal,
                                       mean_curve, ndcg_curve, ranked)
from dare_rec.analysis.split_data import SplitRows, iter_split, read_split
from dare_rec.data import schema

# Rows scored at once (bounds the [rows, max_len + 1] temporaries).
_CHUNK = 8192
RANKINGS = ("gsu", "category_position")
# Model-free baseline ranking: the most recent K behaviors.
RECENT = "recent"


def count_training_split(root: str, num_categories: int, max_len: int, progress: bool = True
                         ) -> CategoryPositionCounts:
    """The (target category, behavior category, position) label counts of the training split."""
    counts = CategoryPositionCounts(num_categories, max_len + 1)
    columns = [schema.TARGET_CATE, schema.LABEL, schema.HIST_CATE]
    for rows in tqdm(iter_split(root, "train", columns, max_len), desc="count train co-occurrences",
                     unit="row group", leave=False, disable=not progress):
        counts.add(rows.columns[schema.TARGET_CATE], rows.columns[schema.LABEL], rows.columns[schema.HIST_CATE], rows.offsets)
    return counts


def read_scored_split(root: str, split: str, max_len: int, world_size: int, with_relevance: bool) -> SplitRows:
    """The columns scoring needs, in the order rank 0 gathered the model's outputs."""
    columns = [schema.USER_ID, schema.TARGET_CATE, schema.LABEL, schema.HIST_CATE] + ([schema.HIST_RELEVANCE] if with_relevance else [])
    return read_split(root, split, columns, max_len, world_size)


def check_order(collected: Dict[str, np.ndarray], rows: SplitRows, where: str) -> None:
    """Raises DataError unless the gathered samples are exactly ``rows``, in order."""
    expected = {"labels": rows.columns[schema.LABEL], "target_cates": rows.columns[schema.TARGET_CATE],
                "user_ids": rows.columns[schema.USER_ID], "lengths": np.diff(rows.offsets)}
    for key, values in expected.items():
        got = collected[key]
        if got.shape != values.shape or not np.array_equal(got.astype(np.int64), values.astype(np.int64)):
            raise schema.DataError(f"{where}: the model's samples do not match the split's rows in order ({key} "
                              f"differs); the batch reader's row order changed and the analysis must follow it")


def score_rankings(rankings: Dict[str, Dict[str, np.ndarray]], rows: SplitRows, counts: CategoryPositionCounts,
                   rules: SkipRules, max_len: int) -> Dict[str, Any]:
    """Mean NDCG@k / capped recall@k (k = 1..K) of every ranking of every checkpoint, in one pass over ``rows``.

    Ground truth (when ``rows`` has hist_relevance): gains = relevance, standard NDCG@k (ideal DCG@k), capped
    recall of the behaviors with relevance > 0; samples without any are skipped. MI gains: NDCG normalised by
    the ideal DCG@K (the paper's curve), samples dropped by ``rules`` or without any gain are skipped.
    The most recent K behaviors are scored too, as the model-free baseline ``recent``.

    Args:
        rankings: checkpoint name -> ranking name (``gsu``, ``category_position``) -> ``[n, K]`` positions,
            rows in the order of ``rows``.

    Returns:
        ``{"samples": n, "mutual_information": {skip_rules, skipped}, "ground_truth": {...},
        "checkpoints": {name: {"k": [1..K], "rankings": {...}, "baselines": {"recent": {...}}}}}``.
    """
    num_positions = max_len + 1
    with_truth = schema.HIST_RELEVANCE in rows.columns
    widths = {name: next(iter(r.values())).shape[1] for name, r in rankings.items()}
    top_k = max(widths.values())
    curves: Dict[Tuple[str, str], Dict[str, list]] = {}
    skipped = {"rare_target": 0, "sparse_counts": 0, "no_gain": 0}
    no_relevant = 0
    for lo in range(0, rows.num_rows, _CHUNK):
        hi = min(lo + _CHUNK, rows.num_rows)
        offsets = rows.offsets[lo:hi + 1] - rows.offsets[lo]
        flat = slice(rows.offsets[lo], rows.offsets[hi])
        lengths = np.diff(offsets)
        cates = by_position(rows.columns[schema.HIST_CATE][flat], offsets, num_positions)
        gains, keep, skips = counts.gains(rows.columns[schema.TARGET_CATE][lo:hi], cates, rules)
        mi_ideal = ideal(gains, top_k)
        no_gain = keep & (mi_ideal.sum(1) == 0)
        for key, n in skips.items():
            skipped[key] += n
        skipped["no_gain"] += int(no_gain.sum())
        keep &= ~no_gain
        if with_truth:
            relevance = by_position(rows.columns[schema.HIST_RELEVANCE][flat].astype(np.float64), offsets, num_positions)
            truth_ideal = ideal(relevance, top_k)
            num_relevant = (relevance > 0).sum(1)
            has_relevant = num_relevant > 0
            no_relevant += int((~has_relevant).sum())
        for checkpoint, by_name in rankings.items():
            k = widths[checkpoint]
            ranks = np.arange(1, k + 1)[None, :]
            chunk = {name: r[lo:hi] for name, r in by_name.items()}
            chunk[RECENT] = np.where(ranks <= lengths[:, None], ranks, 0)
            for name, ranking in chunk.items():
                parts = curves.setdefault((checkpoint, name), {})
                parts.setdefault("mi_ndcg", []).append(
                    ndcg_curve(ranked(gains, ranking), mi_ideal[:, :k], False)[keep])
                if with_truth:
                    picked = ranked(relevance, ranking)
                    parts.setdefault("truth_ndcg", []).append(
                        ndcg_curve(picked, truth_ideal[:, :k], True)[has_relevant])
                    parts.setdefault("truth_recall", []).append(
                        capped_recall_curve(picked > 0, num_relevant)[has_relevant])
    out: Dict[str, Any] = {"samples": rows.num_rows,
                           "mutual_information": {"skip_rules": asdict(rules), "skipped": skipped},
                           "checkpoints": {c: {"k": list(range(1, widths[c] + 1)), "rankings": {}, "baselines": {}}
                                           for c in rankings}}
    if with_truth:
        out["ground_truth"] = {"skipped_no_relevant_behavior": no_relevant}
    for (checkpoint, name), lists in curves.items():
        parts = {key: np.concatenate(value) for key, value in lists.items()}
        entry: Dict[str, Any] = {"mutual_information": {"ndcg": mean_curve(parts["mi_ndcg"]),
                                                        "samples": int(parts["mi_ndcg"].shape[0])}}
        if with_truth:
            entry["ground_truth"] = {"ndcg": mean_curve(parts["truth_ndcg"]),
                                     "recall": mean_curve(parts["truth_recall"]),
                                     "samples": int(parts["truth_ndcg"].shape[0])}
        out["checkpoints"][checkpoint]["baselines" if name == RECENT else "rankings"][name] = entry
    return out


def headline(result: Dict[str, Any], ranking: str = "gsu") -> Dict[str, Optional[float]]:
    """NDCG@K and recall@K (ground truth) and the MI-based NDCG@K of one ranking."""
    entry = result["rankings"].get(ranking, {})
    truth = entry.get("ground_truth", {})
    return {"truth_ndcg_at_K": truth.get("ndcg", [None])[-1], "truth_recall_at_K": truth.get("recall", [None])[-1],
            "mi_ndcg_at_K": entry.get("mutual_information", {}).get("ndcg", [None])[-1]}
