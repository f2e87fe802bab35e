"""Experiments: ``dare-rec experiment --config C --out DIR --variants dare twin --seeds 1 2 3 [--grid k=v1,v2]``.

Trains every (variant, setting, seed) with the real training job (``dare_rec.pipelines.train`` under torchrun, or as
torchx jobs), evaluates each run's best checkpoint on the test split (``dare_rec.pipelines.evaluate``), and writes a
Table-1-style report: ``results.json``, ``results.md`` and ``results.png`` under ``--out``.

* A setting is one point of the ``--grid`` product (``--grid model.d_att=8,16,32 --grid train.sparse_lr=0.05,0.1``
  gives 6 settings), times the named ``--setting NAME=OVERRIDES`` (``--setting "fast=--train.dense_lr 0.01"``)
  when given; overrides after ``--`` apply to every run.
* Runs are keyed by their resolved config: two (variant, setting) pairs that resolve to the same config (a
  shared-layout variant ignores ``model.d_att``) share one run. A run is finished when its test evaluation
  exists; rerunning the command skips finished runs, and an unfinished one continues from its own latest
  checkpoint when the training job resumes (``train.resume``), so a killed sweep loses at most the work
  since the last checkpoint.
* The report: mean +- std (over seeds) of test AUC, GAUC by category, GAUC by user and logloss per
  (variant, setting); the reference variant (``--reference``, default dare) minus every other variant,
  paired by seed: mean +- std of the differences and wins out of n; a plot of AUC vs setting per variant.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from dare_rec.config import ConfigError, Config, load_config, parse_overrides, to_dict
from dare_rec.modules.variants import VARIANTS
from dare_rec.pipelines.errors import cli_errors

METRICS = ("auc", "gauc_category", "gauc_user", "logloss")
EVAL_FILE = "eval-test.json"


@dataclass(frozen=True)
class Run:
    """One training run: a variant at one setting and seed, and the folder it trains into."""

    variant: str
    setting: str  # "model.d_att=8,train.sparse_lr=0.05" ("" without a grid)
    seed: int
    overrides: Tuple[str, ...]  # every config override of the run, as command-line tokens
    key: str  # hash of the resolved config (output_dir excluded)

    @property
    def folder(self) -> str:
        return f"{self.variant}-seed{self.seed}-{self.key}"


def parse_grid(items: Sequence[str]) -> List[List[Tuple[str, str]]]:
    """``["model.d_att=8,16", "train.epochs=1,2"]`` -> the product as lists of (field, value text)."""
    axes: List[List[Tuple[str, str]]] = []
    for item in items:
        field, sep, values = item.partition("=")
        if not sep or not field or not values or "." not in field:
            raise ConfigError(f"--grid: expected section.field=V1,V2,..., got {item!r}")
        axes.append([(field, v.strip()) for v in values.split(",")])
    return [list(point) for point in itertools.product(*axes)] if axes else [[]]


def effective_model(cfg: Config) -> Dict[str, Any]:
    """The model fields as they act: the resolved axes instead of the variant name, and the attention dims
    only where the layout has attention tables (so runs that differ in nothing else share one key)."""
    spec = cfg.model.spec()
    fields: Dict[str, Any] = {"variant": None, **spec.__dict__}
    if not spec.has_attention_tables:
        fields.update(d_att=None, d_pos_att=None)
    return fields


def parse_settings(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """``["fast=--train.dense_lr 0.01", "base="]`` -> ``[("fast", ["--train.dense_lr", "0.01"]), ("base", [])]``
    (no ``--setting``: one unnamed setting without overrides)."""
    settings = []
    for item in items:
        name, sep, overrides = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--setting: expected NAME=OVERRIDES (overrides may be empty), got {item!r}")
        settings.append((name, overrides.split()))
    if len({n for n, _ in settings}) != len(settings):
        raise ConfigError("--setting: names must be unique")
    return settings or [("", [])]


def plan_runs(config: str, variants: Sequence[str], seeds: Sequence[int], grid: Sequence[str],
              common: Sequence[str], settings: Sequence[str] = ()) -> Tuple[List[Run], Dict[str, Config]]:
    """Every run of the sweep, validated before anything trains; returns the runs and the config per key."""
    for variant in variants:
        if variant not in VARIANTS:
            raise ConfigError(f"--variants: unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    parse_overrides(common)  # syntax errors now, not after an hour of training
    runs: List[Run] = []
    configs: Dict[str, Config] = {}
    for (named, named_tokens), point in itertools.product(parse_settings(settings), parse_grid(grid)):
        setting = ",".join([named] * bool(named) + [f"{k}={v}" for k, v in point])
        grid_tokens = [*named_tokens, *(t for k, v in point for t in (f"--{k}", v))]
        for variant in variants:
            for seed in seeds:
                overrides = (*common, *grid_tokens, "--model.variant", variant, "--train.seed", str(seed))
                cfg = load_config(config, list(overrides))
                resolved = to_dict(cfg)
                resolved["train"].pop("output_dir")
                resolved["model"].update(effective_model(cfg))
                key = hashlib.sha256(yaml.safe_dump(resolved, sort_keys=True).encode()).hexdigest()[:10]
                configs[key] = cfg
                runs.append(Run(variant, setting, seed, overrides, key))
    return runs, configs


COMPONENTS = Path(__file__).resolve().parents[1] / "launch" / "components.py"


def job_commands(run: Run, folder: Path, config: str, nproc: int, launcher: str) -> List[List[str]]:
    """The training and the evaluation command of ``run`` (torchrun / plain python, or torchx jobs)."""
    train_args = [*run.overrides, "--train.output_dir", str(folder)]
    eval_args = ["--output", str(folder / "eval-test.tmp.json")]
    if launcher == "torchx":
        torchx = ["torchx", "run", "-s", "local_cwd"]
        return [[*torchx, f"{COMPONENTS}:train", "-j", f"1x{nproc}", "--name", f"exp-{run.key}",
                 "--config", config, "--", *train_args],
                [*torchx, f"{COMPONENTS}:evaluate", "-j", f"1x{nproc}", "--name", f"exp-eval-{run.key}",
                 "--checkpoint", str(folder), "--", *eval_args]]
    launch = [sys.executable, "-m"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"]
    return [[*launch, "dare_rec.pipelines.train", "--config", config, *train_args],
            [*launch, "dare_rec.pipelines.evaluate", "--checkpoint", str(folder), *eval_args]]


def run_one(run: Run, out: Path, config: str, nproc: int, launcher: str) -> Dict[str, Any]:
    """Trains (or resumes) and evaluates one run unless its evaluation exists; returns the test metrics."""
    folder = out / "runs" / run.folder
    result = folder / EVAL_FILE
    if result.is_file():
        return json.loads(result.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)),
           "PYTHONUNBUFFERED": "1"}
    with open(folder / "experiment.log", "a") as log:
        for cmd in job_commands(run, folder, config, nproc, launcher):
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            if status != 0:
                raise RuntimeError(f"{run.variant} {run.setting} seed {run.seed}: `{' '.join(cmd[:6])} ...` "
                                   f"failed (exit {status}); see {folder / 'experiment.log'}")
    (folder / "eval-test.tmp.md").replace(folder / "eval-test.md")
    os.replace(folder / "eval-test.tmp.json", result)  # the run counts as finished only now
    return json.loads(result.read_text())


def _mean_std(values: List[float]) -> Dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def summarize(results: List[Dict[str, Any]], reference: str) -> Dict[str, Any]:
    """Table-1 statistics from per-run records ``{variant, setting, seed, <metrics>}``.

    Returns ``{"rows": [...], "paired": [...]}``: one row per (variant, setting) with mean/std/n of every
    metric; one paired entry per (other variant, setting) with the reference's minus the other's test AUC
    over the seeds both have: mean, std, wins (reference strictly higher), n, and the per-seed differences.
    """
    groups: Dict[Tuple[str, str], Dict[int, Dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["setting"]), {})[r["seed"]] = r
    rows = []
    for (variant, setting), by_seed in groups.items():
        row: Dict[str, Any] = {"variant": variant, "setting": setting, "seeds": sorted(by_seed)}
        for metric in METRICS:
            row[metric] = _mean_std([by_seed[s][metric] for s in sorted(by_seed)])
        rows.append(row)
    paired = []
    for (variant, setting), by_seed in groups.items():
        ref = groups.get((reference, setting))
        if variant == reference or ref is None:
            continue
        seeds = sorted(set(ref) & set(by_seed))
        if not seeds:
            continue
        diffs = [ref[s]["auc"] - by_seed[s]["auc"] for s in seeds]
        paired.append({"reference": reference, "variant": variant, "setting": setting, "seeds": seeds,
                       "auc_diff": _mean_std(diffs), "wins": int(sum(d > 0 for d in diffs)),
                       "per_seed": dict(zip(map(str, seeds), diffs))})
    return {"rows": rows, "paired": paired}


def markdown_report(summary: Dict[str, Any]) -> str:
    def ms(stat: Dict[str, float]) -> str:
        return f"{stat['mean']:.4f} ± {stat['std']:.4f}"

    lines = ["| variant | setting | seeds | test AUC | GAUC (category) | GAUC (user) | logloss |",
             "|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['variant']} | {row['setting'] or '—'} | {len(row['seeds'])} | {ms(row['auc'])} | "
                     f"{ms(row['gauc_category'])} | {ms(row['gauc_user'])} | {ms(row['logloss'])} |")
    if summary["paired"]:
        lines += ["", "| paired by seed | setting | AUC difference | wins |", "|---|---|---|---|"]
        for p in summary["paired"]:
            d = p["auc_diff"]
            lines.append(f"| {p['reference']} − {p['variant']} | {p['setting'] or '—'} | {d['mean']:+.4f} ± "
                         f"{d['std']:.4f} | {p['wins']}/{d['n']} |")
    return "\n".join(lines) + "\n"


def plot_report(summary: Dict[str, Any], path: Path) -> None:
    """Test AUC (mean, std as error bars) per setting, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(row["setting"] for row in summary["rows"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(settings) + 3), 4))
    variants = list(dict.fromkeys(row["variant"] for row in summary["rows"]))
    for i, variant in enumerate(variants):
        rows = {row["setting"]: row for row in summary["rows"] if row["variant"] == variant}
        xs = [j + (i - (len(variants) - 1) / 2) * 0.06 for j, s in enumerate(settings) if s in rows]
        means = [rows[s]["auc"]["mean"] for s in settings if s in rows]
        stds = [rows[s]["auc"]["std"] for s in settings if s in rows]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=variant)
    ax.set_xticks(range(len(settings)), [s or "default" for s in settings], rotation=20, ha="right")
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[List[str]]) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog="dare-rec experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML preset every run starts from")
    parser.add_argument("--out", required=True, help="experiment folder (runs/, results.json/.md/.png)")
    parser.add_argument("--variants", nargs="+", default=["dare", "twin"], help="named variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--grid", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
                        help="a swept config field (repeatable; the settings are the product)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="a named set of overrides, e.g. \"fast=--train.dense_lr 0.01\" (repeatable; times the grid)")
    parser.add_argument("--reference", default="dare", help="variant the others are compared with, by seed")
    parser.add_argument("--nproc", type=int, default=2, help="processes per training / evaluation job")
    parser.add_argument("--launcher", choices=("torchrun", "torchx"), default="torchrun",
                        help="torchrun subprocesses, or torchx jobs (local_cwd scheduler)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.nproc <= 0:
        raise ConfigError(f"--nproc: must be > 0, got {args.nproc}")
    return args, rest


@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, common = parse_args(argv)
    out = Path(args.out)
    runs, _ = plan_runs(args.config, args.variants, args.seeds, args.grid, common, args.setting)
    unique = list(dict.fromkeys(r.key for r in runs))
    print(f"{len(runs)} (variant, setting, seed) combinations, {len(unique)} distinct runs -> {out}")
    if args.dry_run:
        for r in runs:
            print(f"  {r.variant:<11} {r.setting or '-':<30} seed {r.seed:<3} run {r.folder}")
        return 0
    results_by_key: Dict[str, Dict[str, Any]] = {}
    started = time.perf_counter()
    for i, key in enumerate(unique, 1):
        run = next(r for r in runs if r.key == key)
        done = (out / "runs" / run.folder / EVAL_FILE).is_file()
        print(f"[{i}/{len(unique)}] {run.variant} {run.setting or ''} seed {run.seed}: "
              f"{'finished earlier' if done else 'training'} ({time.perf_counter() - started:.0f}s)", flush=True)
        results_by_key[key] = run_one(run, out, args.config, args.nproc, args.launcher)
    records = [{"variant": r.variant, "setting": r.setting, "seed": r.seed, "run": r.folder,
                **{m: results_by_key[r.key][m] for m in METRICS}} for r in runs]
    summary = summarize(records, args.reference)
    report = {"config": args.config, "overrides": common, "variants": args.variants, "seeds": args.seeds,
              "grid": args.grid, "settings": args.setting, "runs": records, **summary}
    (out / "results.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (out / "results.md").write_text(markdown_report(summary))
    plot_report(summary, out / "results.png")
    print(markdown_report(summary))
    print(f"wrote {out / 'results.json'}, results.md, results.png in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
