"""The paper's analyses on the demo dataset, DARE against TWIN: the README's "Analysis" numbers, regenerated.

    python -m benchmarks.analysis_demo --train      # prepare data/synthetic, train the dare and twin runs, analyse
    python -m benchmarks.analysis_demo              # analyse the existing runs

The runs live in ``--runs`` (default ``runs/benchmarks/analysis_demo/{dare,twin}``); ``--train`` refuses runs
that already exist there unless ``--force`` replaces them.

Runs the real commands as subprocesses, one after the other, and times each (wall clock, imports included):

    dare-rec analyze attention --checkpoint RUNS/dare RUNS/twin [skip rules]
    dare-rec analyze gradients --config configs/synthetic.yaml --model.variant twin --train.max_steps S
    dare-rec analyze gradients --config configs/synthetic.yaml --model.variant dare --train.max_steps S
    dare-rec analyze representation --checkpoint RUNS/dare RUNS/twin
    dare-rec plot RUNS/dare RUNS/twin

JSON and PNG files go to ``--output`` (default ``runs/benchmarks/analysis``; the committed ones:
``--output benchmarks/results/analysis``) with ``summary.md`` (the tables docs/experiments.md quotes)
and ``summary.json`` (headline numbers, commands, wall times). Both variants are trained with the same
recipe, the config's (``dare-rec train --config configs/synthetic.yaml --model.variant V``), so rerunning
this after the recipe changes regenerates everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List
from benchmarks import SCRATCH

RESULTS = SCRATCH / "analysis"  # committed: benchmarks/results/analysis (--output)
VARIANTS = ("dare", "twin")


def run(cmd: List[str], log: Path) -> float:
    """Runs ``cmd`` (output to ``log``), fails loudly, returns its wall time in seconds."""
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}); see {log}")
    print(f"  {wall:.0f} s", flush=True)
    return wall


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def summarise(out: Path, walls: Dict[str, float], commands: Dict[str, List[str]]) -> Dict[str, Any]:
    """Headline numbers of the JSON results and a markdown summary of them."""
    attention = json.loads((out / "attention.json").read_text())
    representation = json.loads((out / "representation.json").read_text())
    gradients = {v: json.loads((out / f"gradients-{v}.json").read_text()) for v in VARIANTS}
    lines = ["| run | ranking | NDCG@K (ground truth) | recall@K (ground truth) | NDCG@K (MI gains, paper's method) |",
             "|---|---|---|---|---|"]
    headline: Dict[str, Any] = {"attention": {}, "gradients": {}, "representation": {}}
    for i, r in enumerate(attention["checkpoints"]):
        entries = {name: r["rankings"][name] for name in ("gsu", "category_position") if name in r["rankings"]}
        if i == 0:  # the model-free baseline depends on the data only
            entries["most recent K (baseline)"] = r["baselines"]["recent"]
        for ranking, entry in entries.items():
            truth, mi = entry["ground_truth"], entry["mutual_information"]
            row = {"truth_ndcg": truth["ndcg"][-1], "truth_recall": truth["recall"][-1], "mi_ndcg": mi["ndcg"][-1],
                   "mi_samples": mi["samples"]}
            name = "-" if "baseline" in ranking else r["name"]
            headline["attention"][f"{name}/{ranking}"] = row
            lines.append(f"| {name} | {ranking} | {_num(row['truth_ndcg'])} | {_num(row['truth_recall'])} | "
                         f"{_num(row['mi_ndcg'])} |")
    mi_info = attention["mutual_information"]
    lines += ["", f"K = {len(attention['checkpoints'][0]['k'])}; {attention['samples']:,} test samples; MI-gain "
                  f"skip rules {mi_info['skip_rules']}, skipped {mi_info['skipped']}.", ""]
    lines += ["| variant | table | conflicting steps | conflicting row updates | rows (categories) mostly conflicting "
              "| mean row cosine | norm ratio rep/att | mean row norm att / rep |", "|---|---|---|---|---|---|---|---|"]
    for v, g in gradients.items():
        for t in g["tables"]:
            norms = " / ".join(_num(t.get(f"{role}_mean_row_norm"), 6) if role in t["roles"] else "-"
                               for role in ("att", "rep"))
            lines.append(f"| {v} | {t['table']} | {_pct(t.get('conflicting_step_share'))} | "
                         f"{_pct(t.get('conflicting_update_share'))} | {_pct(t.get('rows_mostly_conflicting_share'))} | "
                         f"{_num(t.get('mean_row_cosine'), 3)} | {_num(t.get('norm_ratio'), 2)} | {norms} |")
            headline["gradients"][f"{v}/{t['table']}"] = {k: t.get(k) for k in (
                "conflicting_step_share", "conflicting_update_share", "rows_mostly_conflicting_share",
                "mean_row_cosine", "norm_ratio", "att_mean_row_norm", "rep_mean_row_norm")}
    steps = gradients[VARIANTS[0]]["steps"]
    lines += ["", f"{steps} training steps from scratch per variant, gradients recorded at every step.", ""]
    ks = representation["checkpoints"][0]["representations"]["esu"]["k"]
    lines += ["| run | representation | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for r in representation["checkpoints"]:
        for name, rep in r["representations"].items():
            lines.append(f"| {r['name']} | {name} | " + " | ".join(f"{v:.4f}" for v in rep["mi_bits"]["mean"]) + " |")
            headline["representation"][f"{r['name']}/{name}"] = dict(zip(ks, rep["mi_bits"]["mean"]))
    entropy = representation["checkpoints"][0]["representations"]["esu"]["label_entropy_bits"]
    lines += ["", f"I(cluster; label) in bits (H(label) = {entropy:.4f} bits), "
                  f"{representation['checkpoints'][0]['samples']:,} test samples.", "",
              "| analysis | wall time |", "|---|---|"]
    lines += [f"| `{' '.join(commands[name])}` | {wall:.0f} s |" for name, wall in walls.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    summary = {"headline": headline, "wall_s": walls, "commands": {k: " ".join(v) for k, v in commands.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--runs", default=str(SCRATCH / "analysis_demo"), help="folder of the dare and twin runs")
    parser.add_argument("--train", action="store_true", help="prepare the data and train both variants first")
    parser.add_argument("--force", action="store_true", help="with --train: replace runs that already exist")
    parser.add_argument("--gradient-steps", type=int, default=300, help="training steps of the gradient analysis")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="with --train: stop each run after this many steps (0: the config's epochs)")
    parser.add_argument("--output", default=str(RESULTS))
    # The demo data (288k training samples over 200 categories) is far smaller than Taobao: almost every
    # behavior whose category differs from the target's has fewer than 50 positive or negative training
    # samples at its position, so the paper's "at most 20 sparse behaviors" rule would skip every test sample.
    parser.add_argument("--skip-rules", default="--max-sparse-behaviors 200",
                        help="skip-rule options of analyze attention (default: %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(args.runs) / "analysis-logs"
    logs.mkdir(parents=True, exist_ok=True)
    dare_rec = [sys.executable, "-m", "dare_rec.pipelines.cli"]
    runs = [str(Path(args.runs) / v) for v in VARIANTS]
    if args.train:
        existing = [path for path in runs if Path(path).exists()]
        if existing and not args.force:
            parser.error(f"--train: {', '.join(existing)} already exist; pass --force to replace them, or --runs "
                         f"another folder")
        run([*dare_rec, "prepare", "--source", "synthetic", "--config", args.config], logs / "prepare.log")
        for v, path in zip(VARIANTS, runs):
            run([*dare_rec, "train", "--config", args.config, "--model.variant", v, "--train.output_dir", path,
                 "--train.resume", "never", "--train.overwrite", "true", "--train.max_steps", str(args.max_steps)],
                logs / f"train-{v}.log")
    commands = {
        "attention": ["dare-rec", "analyze", "attention", "--checkpoint", *runs, *args.skip_rules.split(),
                      "--output", str(out / "attention.json")],
        **{f"gradients-{v}": ["dare-rec", "analyze", "gradients", "--config", args.config, "--model.variant", v,
                              "--train.max_steps", str(args.gradient_steps),
                              "--output", str(out / f"gradients-{v}.json")] for v in VARIANTS},
        "representation": ["dare-rec", "analyze", "representation", "--checkpoint", *runs,
                           "--output", str(out / "representation.json")],
        "plot": ["dare-rec", "plot", *runs, "--output", str(out / "training-curves.png")],
    }
    walls = {name: run([*dare_rec, *cmd[1:]], logs / f"{name}.log") for name, cmd in commands.items()}
    summary = summarise(out, walls, commands)
    print((out / "summary.md").read_text())
    print(json.dumps(summary["wall_s"], indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
