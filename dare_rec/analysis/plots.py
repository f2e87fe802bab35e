"""PNG figures of the analyses (matplotlib, imported lazily with the non-interactive Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from dare_rec.analysis.runs import RunCurves
from dare_rec.config import ConfigError


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ConfigError("plots need matplotlib; install the analysis extra (pip install -e '.[analysis]')") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()


def training_curves(runs: Sequence[RunCurves], path: Path) -> None:
    """Training loss and validation AUC / GAUC / logloss, against steps (top row) and samples (bottom row)."""
    plt = _pyplot()
    panels = [("train", "loss", "training loss"), ("val", "auc", "validation AUC"),
              ("val", "gauc_user", "validation GAUC (user)"), ("val", "logloss", "validation logloss")]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.0), squeeze=False)
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    for i, run in enumerate(runs):
        for col, (part, key, title) in enumerate(panels):
            steps, values = getattr(run, part).get(key, ([], []))
            for row, scale in enumerate((1, run.samples_per_step)):
                ax = axes[row][col]
                if steps and scale:
                    ax.plot(np.asarray(steps) * scale, values, color=colors(i % colors.N), label=run.name,
                            marker="o" if part == "val" and len(steps) < 30 else None, markersize=3)
                ax.set_title(title)
                ax.set_xlabel("step" if row == 0 else "training samples")
                if row == 1:
                    ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")
                ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def attention_curves(results: List[Dict[str, Any]], path: Path) -> None:
    """NDCG@k / capped recall@k against ground truth and the paper's MI-based NDCG@k, one line per checkpoint
    (solid: the GSU's ranking; dashed: category + position scores only; dotted gray: the most recent K
    behaviors, a model-free baseline)."""
    plt = _pyplot()
    panels = [("ground_truth", "ndcg", "ground truth: NDCG@k"), ("ground_truth", "recall", "ground truth: recall@k"),
              ("mutual_information", "ndcg", "MI gains (paper): NDCG@k")]
    panels = [p for p in panels if any(p[0] in r["rankings"]["gsu"] for r in results)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    styles = {"gsu": "-", "category_position": "--"}
    for i, result in enumerate(results):
        for ax, (source, metric, title) in zip(axes[0], panels):
            for ranking, style in styles.items():
                curve = result["rankings"].get(ranking, {}).get(source, {}).get(metric)
                if curve is not None:
                    label = result["name"] + ("" if ranking == "gsu" else " (category+position)")
                    ax.plot(result["k"], curve, style, color=colors(i % 10), label=label, marker=".")
            if i == 0 and source in result.get("baselines", {}).get("recent", {}):
                ax.plot(result["k"], result["baselines"]["recent"][source][metric], ":", color="gray",
                        label="baseline: most recent K")
            ax.set_title(title)
            ax.set_xlabel("k (behaviors retrieved)")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def gradient_figure(summary: Dict[str, Any], path: Path) -> None:
    """For tables both roles read: histogram of per-step mean row cosines (paper Fig. 3), histogram of row
    cosines, norm ratio over training (Fig. 2), per-row conflict ratios (Fig. 14). Otherwise: each table's
    gradient norm (sum of row norms) per role over training."""
    plt = _pyplot()
    tables = summary["tables"]
    shared = [t for t in tables if "norm_ratio" in t]
    if shared:
        fig, axes = plt.subplots(len(shared), 4, figsize=(18, 3.6 * len(shared)), squeeze=False)
        for row, t in zip(axes, shared):
            step_cos = [e["mean_row_cosine"] for e in t["series"] if np.isfinite(e.get("mean_row_cosine", np.nan))]
            row[0].hist(step_cos, bins=np.linspace(-1, 1, 41), color="tab:blue", edgecolor="black")
            row[0].axvline(0, color="red")
            row[0].set_ylabel("steps")
            row[0].set_title(f"{t['table']}: mean row cosine per step\n"
                             f"{100 * t['conflicting_step_share']:.1f}% of steps < 0")
            hist = t["row_cosine_histogram"]
            row[1].stairs(hist["counts"], hist["bins"], fill=True, color="tab:orange")
            row[1].axvline(0, color="red")
            row[1].set_ylabel("row updates")
            row[1].set_title(f"{t['table']}: row cosines\n"
                             f"{100 * t['conflicting_update_share']:.1f}% of row updates < 0")
            steps = [e["step"] for e in t["series"] if "norm_ratio" in e]
            ratio = [e["norm_ratio"] for e in t["series"] if "norm_ratio" in e]
            row[2].plot(steps, ratio, color="tab:green")
            row[2].axhline(1, color="gray", linestyle=":")
            row[2].set_yscale("log")
            row[2].set_title(f"{t['table']}: |g_rep| / |g_att| (overall {t['norm_ratio']:.2f}x)")
            row[2].set_xlabel("step")
            hist = t["row_conflict_ratio_histogram"]
            row[3].stairs(hist["counts"], hist["bins"], fill=True, color="tab:purple")
            row[3].axvline(0.5, color="red")
            row[3].set_ylabel("rows")
            row[3].set_title(f"{t['table']}: conflict ratio per row\n"
                             f"{100 * t['rows_mostly_conflicting_share']:.1f}% of rows > 50%")
            for ax in row:
                ax.grid(alpha=0.3)
    else:
        fig, axes = plt.subplots(1, 1, figsize=(8, 4.5), squeeze=False)
        ax = axes[0][0]
        fields = sorted({t["table"].split("_")[0] for t in tables})
        colors = plt.get_cmap("tab10")
        for t in tables:  # one colour per field (item, cate, pos), one line style per role
            for role in t["roles"]:
                steps = [e["step"] for e in t["series"]]
                values = [e.get(f"{role}_norm_sum", np.nan) for e in t["series"]]
                ax.plot(steps, values, label=f"{t['table']} ({role} path)", linestyle="--" if role == "att" else "-",
                        color=colors(fields.index(t["table"].split("_")[0]) % 10))
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{summary['variant']}: gradient norm per table (sum of row norms)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def representation_curves(results: List[Dict[str, Any]], path: Path) -> None:
    """I(cluster; label) against the number of clusters, one panel per representation, one line per checkpoint
    (band: spread over k-means seeds); the label entropy, the ceiling, is in the title."""
    plt = _pyplot()
    names = list(results[0]["representations"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, rep in zip(axes[0], names):
        for i, result in enumerate(results):
            r = result["representations"][rep]
            mean, std = np.array(r["mi_bits"]["mean"]), np.array(r["mi_bits"]["std"])
            ax.plot(r["k"], mean, marker=".", color=colors(i % 10), label=result["name"])
            ax.fill_between(r["k"], mean - std, mean + std, color=colors(i % 10), alpha=0.2)
        ks = results[0]["representations"][rep]["k"]
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks], fontsize=7, rotation=60)
        ax.minorticks_off()
        ax.set_xlabel("clusters k")
        ax.set_ylabel("I(cluster; label), bits")
        title = {"esu": "ESU output h", "target_aware": "target-aware v_t * h"}.get(rep, rep)
        ax.set_title(f"{title}\n(H(label) = {results[0]['representations'][rep]['label_entropy_bits']:.3f} bits)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
