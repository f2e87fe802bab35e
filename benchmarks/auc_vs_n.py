"""AUC against the search width N on a planted synthetic dataset: the table and plot of a ``dare-rec experiment``
run with ``--grid data.max_len=...``.

For every variant and N: the mean and standard deviation of test AUC over seeds, next to two references
computed from the dataset's planted click model (``meta.json`` records the generator's parameters):

* the oracle AUC: the true click probability as the score (what a perfect model with the whole stored history
  would get);
* the planted logit on the last N behaviors: the same click logit with the relevance summed over the last N
  behaviors only (the item's quality term kept). It shows how much of the planted signal lies in the last N;
  it is not a bound, since a model also learns priors (a category's click rate, say) that predict what lies
  deeper in the history.

    dare-rec experiment --config configs/long_history.yaml --out runs/auc_vs_n --nproc 1 --variants dare twin \\
        --seeds 1 2 3 --grid data.max_len=50,200,1000,5000,10000
    python -m benchmarks.auc_vs_n --experiment runs/auc_vs_n --data data/long_history \\
        --output benchmarks/results/auc_vs_n_long_history.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow.parquet as pq

from benchmarks import SCRATCH
from dare_rec.metrics.offline import auc

RESULTS = SCRATCH / "auc_vs_n.json"  # committed: benchmarks/results (--output)


def references(data: Path, widths: List[int]) -> Dict[str, object]:
    """The oracle AUC on the test split, and per N the AUC of the planted logit on the last N behaviors."""
    params = json.loads((data / "meta.json").read_text())["params"]
    table = pq.read_table(data / "test", columns=["label", "click_prob", "hist_relevance"])
    labels = table.column("label").to_numpy()
    prob = table.column("click_prob").to_numpy().astype(np.float64)
    relevance = table.column("hist_relevance").to_pylist()
    cap = params.get("relevance_cap") or np.inf
    weight = params["relevance_weight"]

    def term(sums: np.ndarray) -> np.ndarray:
        return weight * np.log1p(np.minimum(sums, cap))

    logit = np.log(prob / (1 - prob))
    rest = logit - term(np.array([sum(r) for r in relevance]))  # base logit + the item's quality
    return {"oracle_auc": auc(labels, prob), "test_samples": int(len(labels)),
            "planted_auc_last_n": {n: auc(labels, rest + term(np.array([sum(r[-n:]) for r in relevance])))
                                  for n in widths}}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, help="the experiment's --out folder (results.json)")
    parser.add_argument("--data", required=True, help="the dataset the experiment trained on")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    results = json.loads((Path(args.experiment) / "results.json").read_text())
    by: Dict[tuple, List[float]] = {}
    for run in results["runs"]:
        match = re.search(r"data\.max_len=(\d+)", run["setting"])
        if match is None:
            raise SystemExit(f"run {run['run']}: setting {run['setting']!r} has no data.max_len=N")
        by.setdefault((run["variant"], int(match.group(1))), []).append(run["auc"])
    widths = sorted({n for _, n in by})
    reference = references(Path(args.data), widths)
    rows = [{"variant": variant, "max_len": n, "seeds": len(aucs), "auc_mean": statistics.mean(aucs),
             "auc_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0, "aucs": aucs,
             "planted_auc_last_n": reference["planted_auc_last_n"][n],
             "gap_to_oracle": reference["oracle_auc"] - statistics.mean(aucs)}
            for (variant, n), aucs in sorted(by.items())]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "auc_vs_n", "date": time.strftime("%Y-%m-%d"),
                               "experiment": results.get("config"), "data": str(args.data),
                               "oracle_auc": reference["oracle_auc"], "test_samples": reference["test_samples"],
                               "rows": rows}, indent=2) + "\n")
    plot(rows, reference, out.with_suffix(".png"))
    print(f"oracle AUC {reference['oracle_auc']:.4f} on {reference['test_samples']:,} test samples")
    for r in rows:
        print(f"{r['variant']:>6} N={r['max_len']:>6}: AUC {r['auc_mean']:.4f} +- {r['auc_std']:.4f} "
              f"({r['seeds']} seeds), planted logit on the last N {r['planted_auc_last_n']:.4f}, "
              f"gap to the oracle {r['gap_to_oracle']:+.4f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def plot(rows: List[dict], reference: Dict[str, object], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in sorted({r["variant"] for r in rows}):
        mine = [r for r in rows if r["variant"] == variant]
        ax.errorbar([r["max_len"] for r in mine], [r["auc_mean"] for r in mine], yerr=[r["auc_std"] for r in mine],
                    marker="o", capsize=3, label=f"{variant} (mean ± std over seeds)")
    widths = sorted(reference["planted_auc_last_n"])
    ax.plot(widths, [reference["planted_auc_last_n"][n] for n in widths], "k:", marker=".",
            label="planted logit on the last N behaviors")
    ax.axhline(reference["oracle_auc"], color="grey", linestyle="--", label="oracle (whole history)")
    ax.set_xscale("log")
    ax.set_xlabel("N, behaviors searched (data.max_len)")
    ax.set_ylabel("test AUC")
    ax.set_title("AUC vs search width on the planted long-history set")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
