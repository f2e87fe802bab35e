"""Gradient conflict and domination between the attention and representation paths (numpy only).

For one table and one training step, each role r contributes a gradient row ``g_r[i]`` to every row i it
touched. With both roles on a table (TWIN's shared tables, projection variants):

* row cosine ``cos_i = <g_att[i], g_rep[i]> / (|g_att[i]| |g_rep[i]|)`` over rows both roles touched;
* the step's *mean row cosine*; a step is conflicting when it is negative (the paper's Fig. 3 counts steps
  this way: 62.88% conflicting for TWIN on Taobao);
* a row update is conflicting when ``<g_att[i], g_rep[i]> < 0``; per row (for the category table: per
  category) the share of its updates that conflict, and the share of rows conflicting in more than half of
  their updates (Fig. 14: 80.91% of categories for TWIN);
* domination: ``sum_i |g_rep[i]| / sum_i |g_att[i]|``, summed over steps (Fig. 2: about 5x).

With one role per table (DARE) only the norms are reported, per table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

ATT, REP = "att", "rep"
COSINE_BINS = np.linspace(-1.0, 1.0, 41)
RATIO_BINS = np.linspace(0.0, 1.0, 11)


def align_rows(ids_a: np.ndarray, rows_a: np.ndarray, ids_b: np.ndarray, rows_b: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two sparse row sets -> (union ids ``[U]``, a ``[U, d]``, b ``[U, d]``), zero rows where one is absent."""
    ids = np.union1d(ids_a, ids_b)
    a = np.zeros((ids.size, rows_a.shape[1]), dtype=np.float64)
    b = np.zeros((ids.size, rows_b.shape[1]), dtype=np.float64)
    a[np.searchsorted(ids, ids_a)] = rows_a
    b[np.searchsorted(ids, ids_b)] = rows_b
    return ids, a, b


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[U]`` cosine of each pair of rows; NaN where either row is zero."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((na > 0) & (nb > 0), (a * b).sum(1) / (na * nb), np.nan)


def table_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the two whole-table gradients (NaN if either is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float((a * b).sum() / (na * nb)) if na > 0 and nb > 0 else float("nan")


class TableGradientStats:
    """Accumulates one table's per-role gradients over the recorded steps of a run.

    Args:
        name: table name (``cate_shared``, ``pos_att``, ...).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.series: List[Dict[str, Any]] = []
        self.roles: set = set()
        self._cos_hist = np.zeros(COSINE_BINS.size - 1, dtype=np.int64)
        self._row_conflicts = np.zeros(0, dtype=np.int64)
        self._row_agreements = np.zeros(0, dtype=np.int64)

    def add(self, step: int, grads: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> None:
        """Records one step: role -> (ids ``[U]``, rows ``[U, d]``) of the gradient from that role's path."""
        entry: Dict[str, Any] = {"step": step}
        for role, (ids, rows) in sorted(grads.items()):
            self.roles.add(role)
            norms = np.linalg.norm(rows, axis=1)
            entry[f"{role}_norm_sum"] = float(norms.sum())
            entry[f"{role}_rows"] = int((norms > 0).sum())
        if ATT in grads and REP in grads:
            ids, a, b = align_rows(*grads[ATT], *grads[REP])
            cos = row_cosines(a, b)
            both = ~np.isnan(cos)
            entry["mean_row_cosine"] = float(cos[both].mean()) if both.any() else float("nan")
            dots = (a * b).sum(1)
            signed = dots != 0
            entry["conflicting_row_share"] = float((dots[signed] < 0).mean()) if signed.any() else float("nan")
            entry["table_cosine"] = table_cosine(a, b)
            att, rep = entry[f"{ATT}_norm_sum"], entry[f"{REP}_norm_sum"]
            entry["norm_ratio"] = rep / att if att > 0 else float("nan")
            self._cos_hist += np.histogram(cos[both], bins=COSINE_BINS)[0]
            size = max(self._row_conflicts.size, int(ids.max()) + 1 if ids.size else 0)
            self._row_conflicts = np.bincount(ids, weights=dots < 0, minlength=size).astype(np.int64) + \
                np.pad(self._row_conflicts, (0, size - self._row_conflicts.size))
            self._row_agreements = np.bincount(ids, weights=dots > 0, minlength=size).astype(np.int64) + \
                np.pad(self._row_agreements, (0, size - self._row_agreements.size))
        self.series.append(entry)

    def summary(self) -> Dict[str, Any]:
        """Totals over the recorded steps (see the module docstring), plus the per-step series."""
        out: Dict[str, Any] = {"table": self.name, "roles": sorted(self.roles), "steps": len(self.series)}
        for role in sorted(self.roles):
            sums = np.array([e.get(f"{role}_norm_sum", 0.0) for e in self.series])
            rows = np.array([e.get(f"{role}_rows", 0) for e in self.series])
            out[f"{role}_mean_norm_sum"] = float(sums.mean())
            out[f"{role}_mean_row_norm"] = float(sums.sum() / rows.sum()) if rows.sum() else float("nan")
        if {ATT, REP} <= self.roles:
            step_cos = np.array([e["mean_row_cosine"] for e in self.series if "mean_row_cosine" in e])
            step_cos = step_cos[~np.isnan(step_cos)]
            att = sum(e[f"{ATT}_norm_sum"] for e in self.series)
            rep = sum(e[f"{REP}_norm_sum"] for e in self.series)
            counted = self._row_conflicts + self._row_agreements
            seen = counted > 0
            ratio = self._row_conflicts[seen] / counted[seen]
            out.update(
                conflicting_step_share=float((step_cos < 0).mean()) if step_cos.size else float("nan"),
                mean_row_cosine=float(step_cos.mean()) if step_cos.size else float("nan"),
                conflicting_update_share=float(self._row_conflicts.sum() / counted.sum()) if counted.sum()
                else float("nan"),
                norm_ratio=rep / att if att > 0 else float("nan"),
                rows_seen=int(seen.sum()),
                rows_mostly_conflicting_share=float((ratio > 0.5).mean()) if ratio.size else float("nan"),
                row_conflict_ratio_histogram={"bins": RATIO_BINS.tolist(),
                                              "counts": np.histogram(ratio, bins=RATIO_BINS)[0].tolist()},
                row_cosine_histogram={"bins": COSINE_BINS.tolist(), "counts": self._cos_hist.tolist()},
            )
        out["series"] = self.series
        return out
