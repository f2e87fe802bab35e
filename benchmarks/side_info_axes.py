"""Side-information axes on and off (issue 16): one table and one plot over several ``dare-rec experiment`` runs.

Each axis is compared, paired by seed, with its "off" setting: on a dataset where the axis's effect is planted
(acceptance: the mean test-AUC gain is at least ``--min-gain``, 0.005), and on click-only data, where the mean
must not fall below ``--max-cost`` (−0.002): the synthetic world's twin with the effect off (``twin``) and the
click-only planted Taobao log (``log``, configs/planted_taobao.yaml). A comparison names the two settings of one experiment folder
(its ``results.json``), so the two sides share the dataset, the recipe and the seeds:

    python -m benchmarks.side_info_axes --output benchmarks/results/side_info_axes/axes.json \\
        --compare "behavior type" planted runs/side_on btype off \\
        --compare "behavior type" twin runs/side_click btype off

``AXIS KIND DIR ON OFF``: KIND is ``planted``, ``twin`` or ``log``; ON and OFF are setting names of DIR's
experiment (``--setting NAME=...``), each with the variant given by ``--variant`` (default dare). The JSON
holds every paired difference; the Markdown table and the PNG (ΔAUC with its spread per axis, one marker per
kind, the two acceptance lines drawn) sit next to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

KINDS = ("planted", "twin", "log")
KIND_LABELS = {"planted": "effect planted", "twin": "twin, effect off", "log": "click-only planted log"}


def _stat(values: List[float]) -> Dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def compare(axis: str, kind: str, folder: Path, on: str, off: str, variant: str) -> Dict[str, Any]:
    """Paired test-AUC difference ``on − off`` over the seeds both settings finished in ``folder``."""
    results = json.loads((folder / "results.json").read_text())
    by_setting: Dict[str, Dict[int, float]] = {}
    for run in results["runs"]:
        if run["variant"] == variant:
            by_setting.setdefault(run["setting"], {})[run["seed"]] = run["auc"]
    for name in (on, off):
        if name not in by_setting:
            raise SystemExit(f"side_info_axes: {folder}/results.json has no {variant} runs of setting {name!r}; "
                             f"it has {sorted(by_setting)}")
    seeds = sorted(set(by_setting[on]) & set(by_setting[off]))
    if len(seeds) < 2:
        raise SystemExit(f"side_info_axes: {axis!r} in {folder}: settings {on!r} and {off!r} share "
                         f"{len(seeds)} seed(s); pairing needs at least 2")
    diffs = [by_setting[on][s] - by_setting[off][s] for s in seeds]
    return {"axis": axis, "kind": kind, "experiment": str(folder), "config": results.get("config"),
            "overrides": results.get("overrides"), "variant": variant, "on": on, "off": off, "seeds": seeds,
            "auc_on": _stat([by_setting[on][s] for s in seeds]),
            "auc_off": _stat([by_setting[off][s] for s in seeds]),
            "difference": _stat(diffs), "wins": sum(d > 0 for d in diffs)}


def verdict(row: Dict[str, Any], min_gain: float, max_cost: float) -> bool:
    mean = row["difference"]["mean"]
    return mean >= min_gain if row["kind"] == "planted" else mean >= max_cost


def markdown(rows: List[Dict[str, Any]], min_gain: float, max_cost: float) -> str:
    lines = [f"Test AUC, {rows[0]['variant']}, paired by seed with each axis's 'off' setting. Acceptance: gain "
             f"≥ {min_gain} where the effect is planted, change ≥ {max_cost} on click-only data.", "",
             "| axis | data | on | off | AUC off | AUC on − off | wins | meets |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d, off = row["difference"], row["auc_off"]
        lines.append(f"| {row['axis']} | {KIND_LABELS[row['kind']]} ({Path(row['experiment']).name}) | {row['on']} | "
                     f"{row['off']} | {off['mean']:.4f} ± {off['std']:.4f} | {d['mean']:+.4f} ± {d['std']:.4f} | "
                     f"{row['wins']}/{d['n']} | {'yes' if row['meets'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(rows: List[Dict[str, Any]], path: Path, min_gain: float, max_cost: float) -> None:
    """ΔAUC (mean ± std over seeds) per axis; one marker per data kind; the acceptance lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = list(dict.fromkeys(row["axis"] for row in rows))
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(axes) + 1.8))
    for k, (kind, marker, color) in enumerate(zip(KINDS, ("o", "s", "D"), ("tab:blue", "tab:gray", "tab:orange"))):
        picked = [row for row in rows if row["kind"] == kind]
        if not picked:
            continue
        ys = [axes.index(row["axis"]) + 0.2 * (k - 1) for row in picked]
        ax.errorbar([row["difference"]["mean"] for row in picked], ys,
                    xerr=[row["difference"]["std"] for row in picked], fmt=marker, color=color, capsize=3,
                    label=KIND_LABELS[kind])
    ax.axvline(0.0, color="black", lw=0.8)
    ax.axvline(min_gain, color="tab:blue", ls="--", lw=0.8, label=f"needed where planted (+{min_gain})")
    ax.axvline(max_cost, color="tab:gray", ls="--", lw=0.8, label=f"allowed cost on click-only data ({max_cost})")
    ax.set_yticks(range(len(axes)), axes)
    ax.invert_yaxis()
    ax.set_xlabel("test AUC, on − off (mean ± std over seeds, paired)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)  # below: rows stay clear
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", nargs=5, action="append", required=True,
                        metavar=("AXIS", "KIND", "DIR", "ON", "OFF"))
    parser.add_argument("--variant", default="dare")
    parser.add_argument("--min-gain", type=float, default=0.005)
    parser.add_argument("--max-cost", type=float, default=-0.002)
    parser.add_argument("--output", type=Path, required=True, help="JSON path; .md and .png are written beside it")
    args = parser.parse_args(argv)
    rows = []
    for axis, kind, folder, on, off in args.compare:
        if kind not in KINDS:
            parser.error(f"--compare {axis!r}: KIND must be one of {KINDS}, got {kind!r}")
        row = compare(axis, kind, Path(folder), on, off, args.variant)
        row["meets"] = verdict(row, args.min_gain, args.max_cost)
        rows.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"min_gain": args.min_gain, "max_cost": args.max_cost, "rows": rows},
                                      indent=1) + "\n")
    table = markdown(rows, args.min_gain, args.max_cost)
    args.output.with_suffix(".md").write_text(table)
    plot(rows, args.output.with_suffix(".png"), args.min_gain, args.max_cost)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
