"""Accuracy: the same prepared dataset, the same seeds, the same global batch size, epochs and
validation cadence, trained by both codes and scored on the test split::

    python -m benchmarks.vs_official accuracy --official-repo ~/DARE --config configs/planted_taobao.yaml \\
        --seeds 1 2 3 4 5 --models dare twin --name planted

* **official**: the dataset is exported once to the reference sample format
  (:mod:`dare_rec.data.official_format`), then the checkout's ``train_pytorch.py`` runs **unmodified**
  (cwd = the checkout, ``--official-python`` interpreter, one seed per process) with the flags of its
  ``scripts/taobao.sh`` line for the model, except ``-max_length/-item_n/-cate_n`` (from the dataset),
  ``-long_seq_split 0:max_length``, ``-batch_size``, ``-epoch`` and ``-test_interval`` (given here, so that
  small data validates at all and the reference's final reload of its best checkpoint finds one). Its
  final test AUC, category-average AUC and logloss (which includes its aux loss) are read from its log.
* **ours**: ``dare-rec train --config PRESET [setting overrides] --model.variant M --train.seed S
  --data.batch_size B --train.epochs E --train.val_every V`` on one process (global batch = B), then
  ``dare-rec evaluate --checkpoint RUN`` (whichever checkpoint it picks; the JSON records its step). Each
  ``--setting NAME=OVERRIDES`` is one configuration of ours (default: the preset as is).

Every finished run is cached under ``--cache`` in a folder keyed by a hash of its inputs (dataset file
hashes, code hash of the side, flags or resolved config, seed, protocol), so a rerun, or a killed sweep
run again, only runs what is missing. The report (JSON + markdown, ``--results-dir/vs_official_NAME``):
mean ± std of test AUC, GAUC by category and logloss per (code, model); ours − official paired by seed per
model; the seeds on which DARE beats TWIN in each code. Only numpy and pyarrow are imported by this mode; torch
is imported by the runs, in their own processes.

Only numpy and pyarrow are imported here; torch is imported by the runs, in their own processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.vs_official.reference import (OFFICIAL_BASE_FLAGS, OFFICIAL_MODELS, OFFICIAL_SOURCES, ROOT,
                                              HarnessError, script_argv, digest, shown_path, source_hash)
from benchmarks import SCRATCH
from dare_rec.config import ConfigError, load_config, to_dict
from dare_rec.data import schema
from dare_rec.data.official_format import MARKER, ROWS_PER_FILE, export_official
from dare_rec.metrics.offline import auc

OUR_SOURCES = ("dare_rec/**/*.py", "pipelines/**/*.py", "sharding/**/*.py")
# Modules that only write datasets: a run's dataset is identified by its file hashes, so these are not inputs.
OUR_DATA_WRITERS = ("dare_rec/data/raw_logs.py", "dare_rec/data/logs.py", "dare_rec/data/log_readers.py",
                    "dare_rec/data/synthetic.py", "dare_rec/data/writer.py", "dare_rec/data/official_format.py",
                    "pipelines/prepare.py", "pipelines/make_raw_logs.py")
# Config fields the harness sets for every run of ours; a setting may not override them.
PROTOCOL_FIELDS = ("data.path", "data.max_len", "model.variant", "train.seed", "data.batch_size", "train.epochs",
                   "train.val_every", "train.output_dir")
_FLOAT = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


@dataclass
class Protocol:
    """What both codes share: data, seeds, global batch size, epochs, validation cadence."""

    data: Path
    meta: schema.DatasetMeta
    batch_size: int
    epochs: int
    val_every: int
    max_length: int

    @property
    def fingerprint(self) -> str:
        return digest({"files": self.meta.files, "counts": self.meta.counts})


@dataclass
class Run:
    """One (code, setting, model, seed): its cache folder and what it produced."""

    side: str  # "official" or "ours"
    setting: str  # "official" for the reference code
    model: str
    seed: int
    key: str
    folder: Path
    inputs: Dict[str, Any] = field(default_factory=dict)

    @property
    def result_path(self) -> Path:
        return self.folder / "result.json"

    def finished(self) -> Optional[Dict[str, Any]]:
        return json.loads(self.result_path.read_text()) if self.result_path.is_file() else None

    def label(self) -> str:
        code = "official" if self.side == "official" else f"ours ({self.setting})"
        return f"{code} {self.model} seed {self.seed}"


def _cache_folder(cache: Path, side: str, model: str, seed: int, inputs: Dict[str, Any]) -> Tuple[str, Path]:
    key = digest(inputs)[:16]
    return key, cache / "runs" / f"{side}-{model}-seed{seed}-{key}"



def official_flags(model: str, protocol: Protocol, export: Dict[str, Any], seed: int) -> List[str]:
    """The reference ``train_pytorch.py`` arguments for one run, paths excluded."""
    if model not in OFFICIAL_MODELS:
        raise HarnessError(f"--models: no reference script line for {model!r}; known: {sorted(OFFICIAL_MODELS)}")
    flags: Dict[str, Optional[str]] = {
        "-max_length": str(export["max_length"]), "-item_n": str(export["item_n"]),
        "-cate_n": str(export["cate_n"]), "-long_seq_split": f"0:{export['max_length']}",
        **OFFICIAL_BASE_FLAGS,
        "-epoch": str(protocol.epochs), "-batch_size": str(protocol.batch_size),
        "-test_interval": str(protocol.val_every), "-seed": str(seed),
    }
    flags.update(OFFICIAL_MODELS[model])
    return script_argv(flags)



def parse_official_log(text: str) -> Dict[str, Any]:
    """Final test metrics and the validation history from the reference trainer's output.

    Raises HarnessError when the final lines are missing (the run did not finish).
    """
    def last(pattern: str) -> Optional[float]:
        found = re.findall(pattern, text)
        return float(found[-1]) if found else None

    auc = last(r"Final test auc: " + _FLOAT)
    gauc = last(r"Final test category average auc: " + _FLOAT)
    logloss = last(r"Final test logloss: " + _FLOAT)
    if auc is None or gauc is None or logloss is None:
        raise HarnessError("the reference log has no 'Final test auc / category average auc / logloss' lines")
    val = [{"epoch": int(e), "step": int(s), "auc": float(a)} for e, s, a in
           re.findall(r"Testing finishes: epoch=(\d+), iteration=(\d+), test_auc=" + _FLOAT, text)]
    scored = re.findall(r"Final test num: (\d+)/(\d+)", text)
    best = max(val, key=lambda v: v["auc"]) if val else None  # max() keeps the first of equal values
    return {
        "auc": auc, "gauc_category": gauc, "logloss": logloss,
        "test_samples_scored": int(scored[-1][1]) if scored else None,
        "gauc_samples": int(scored[-1][0]) if scored else None,
        "val": val, "best_val_step": best["step"] if best else None,
        "best_val_auc": best["auc"] if best else None,
    }


def ensure_export(protocol: Protocol, cache: Path) -> Tuple[Path, Dict[str, Any]]:
    """The dataset in the reference format under the cache (exported once per dataset and history width)."""
    folder = cache / "exports" / f"{protocol.fingerprint[:16]}-L{protocol.max_length}"
    marker = folder / MARKER
    if marker.is_file():
        summary = json.loads(marker.read_text())
        if summary["dataset_files"] == protocol.meta.files and summary["max_length"] == protocol.max_length:
            return folder, summary
    print(f"exporting {protocol.data} to the reference format in {folder}", flush=True)
    return folder, export_official(protocol.data, folder, max_length=protocol.max_length,
                                   rows_per_file=ROWS_PER_FILE)


def check_official_protocol(protocol: Protocol, export: Dict[str, Any]) -> List[str]:
    """Errors out where the reference code cannot run; returns warnings where it sees other samples than we do."""
    b = protocol.batch_size
    for split in ("val", "test"):
        if export["counts"][split] < b:
            raise HarnessError(f"{split}: {export['counts'][split]} samples < batch size {b}; the reference code "
                               f"scores whole batches only and would divide by zero")
    files = [int(name.rsplit("_", 1)[1][:-4]) for name in export["train_files"]]
    official_steps = sum(-(-n // b) for n in files)
    total = official_steps * protocol.epochs
    if protocol.val_every > total:
        raise HarnessError(f"--val-every {protocol.val_every} > the reference code's {total} training steps: it "
                           f"would never validate and then fail to load its best checkpoint")
    warnings = []
    for split in ("val", "test"):
        n = export["counts"][split]
        if n % b:
            warnings.append(f"{split}: {n} samples is not a multiple of the batch size {b}: the reference code "
                            f"scores only the first {n - n % b}, we score all {n}")
    if any(n % b for n in files):
        warnings.append(f"train: the reference code takes {official_steps} steps per epoch (a partial batch per "
                        f"file), we take {export['counts']['train'] // b} (partial batch dropped)")
    return warnings


def run_official(run: Run, repo: Path, python: str, export_dir: Path, flags: List[str], threads: int) -> Dict[str, Any]:
    """Runs the reference trainer for one seed; returns its parsed metrics (and keeps its log)."""
    log_dir = run.folder / "official_log"
    shutil.rmtree(run.folder, ignore_errors=True)
    log_dir.mkdir(parents=True)
    cmd = [python, "train_pytorch.py",
           "-train_dataset_path", str(export_dir / "train_{}_{}.npy"),
           "-val_dataset_path", str(export_dir / "val.npy"), "-test_dataset_path", str(export_dir / "test.npy"),
           *flags, "-log_dir", str(log_dir)]
    # No bytecode files written into the user's checkout; the thread count is the same for both codes.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    log = run.folder / "output.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    # The reference trainer closes the process's stdout when it finishes, so Python exits with status 120
    # even after a complete run: success is its last output (grid_search.npy) plus the final test lines.
    if not (log_dir / "grid_search.npy").is_file():
        raise HarnessError(f"{run.label()}: the reference trainer exited with {proc.returncode} before "
                           f"finishing; see {log}")
    try:
        metrics = parse_official_log(log.read_text(errors="replace"))
    except HarnessError as e:
        raise HarnessError(f"{run.label()}: {e}; see {log}") from None
    # Model files and dumped embeddings are not needed for the comparison.
    shutil.rmtree(log_dir / "model", ignore_errors=True)
    shutil.rmtree(log_dir / "learned_embedding", ignore_errors=True)
    return {**metrics, "wall_s": round(wall, 1), "returncode": proc.returncode, "command": shlex.join(cmd),
            "cwd": str(repo)}



def parse_setting(text: str) -> Tuple[str, List[str]]:
    """``NAME=--section.field VALUE ...`` -> (NAME, override tokens); protocol fields are refused."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise HarnessError(f"--setting {text!r}: expected NAME=OVERRIDES with NAME of letters, digits, _ . + -")
    tokens = shlex.split(rest)
    for token in tokens:
        dotted = token[2:].split("=", 1)[0] if token.startswith("--") else ""
        if dotted in PROTOCOL_FIELDS:
            raise HarnessError(f"--setting {name}: {dotted} is set by the harness for both codes "
                               f"(use --batch-size/--epochs/--val-every/--data, or the preset's data.max_len)")
    return name, tokens


def our_overrides(protocol: Protocol, model: str, seed: int, setting: List[str]) -> List[str]:
    return [*setting, "--data.path", str(protocol.data), "--model.variant", model, "--train.seed", str(seed),
            "--data.batch_size", str(protocol.batch_size), "--train.epochs", str(protocol.epochs),
            "--train.val_every", str(protocol.val_every)]


def _events(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_ours(run: Run, preset: Path, overrides: List[str], threads: int) -> Dict[str, Any]:
    """Trains and evaluates one run of ours through the CLI; returns the test metrics and validation history."""
    shutil.rmtree(run.folder, ignore_errors=True)
    run.folder.mkdir(parents=True)
    train_dir = run.folder / "train"
    cli = [sys.executable, "-m", "dare_rec.pipelines.cli"]
    train_cmd = [*cli, "train", "--config", str(preset), *overrides, "--train.output_dir", str(train_dir)]
    eval_json = run.folder / "eval-test.json"
    eval_cmd = [*cli, "evaluate", "--checkpoint", str(train_dir), "--split", "test", "--output", str(eval_json)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = run.folder / "output.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        for cmd in (train_cmd, eval_cmd):
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise HarnessError(f"{run.label()}: `{shlex.join(cmd[2:4])}` exited with {proc.returncode}; see {log}")
    wall = time.perf_counter() - started
    metrics = json.loads(eval_json.read_text())
    val = [{"epoch": e["epoch"], "step": e["step"], "auc": e["auc"]}
           for e in _events(train_dir / "metrics.jsonl") if e["event"] == "val"]
    best = max(val, key=lambda v: v["auc"]) if val else None
    return {
        "auc": metrics["auc"], "gauc_category": metrics.get("gauc_category"), "gauc_user": metrics.get("gauc_user"),
        "logloss": metrics["logloss"], "test_samples_scored": metrics["samples"],
        "checkpoint_step": metrics["step"], "val": val, "best_val_step": best["step"] if best else None,
        "best_val_auc": best["auc"] if best else None, "wall_s": round(wall, 1), "command": shlex.join(train_cmd), "evaluate_command": shlex.join(eval_cmd),
    }



def oracle_test_auc(data: Path) -> float:
    """AUC of the true click probabilities on the test split (synthetic data): what a perfect model scores."""
    table = pa.concat_tables([pq.read_table(p, columns=[schema.LABEL, schema.CLICK_PROB]) for p in schema.split_files(data, "test")])
    return auc(table.column(schema.LABEL).to_numpy().astype(np.float64),
               table.column(schema.CLICK_PROB).to_numpy().astype(np.float64))


def _mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"mean": None, "std": None}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(results: List[Dict[str, Any]], models: Sequence[str], settings: Sequence[str]) -> Dict[str, Any]:
    """Per (code, model) statistics, ours − official paired by seed, DARE vs TWIN per code."""
    codes = ["official"] + [f"ours:{s}" for s in settings]
    by = {(r["code"], r["model"], r["seed"]): r for r in results}
    table = []
    for code in codes:
        for model in models:
            rows = [r for r in results if r["code"] == code and r["model"] == model]
            if not rows:
                continue
            entry = {"code": code, "model": model, "seeds": sorted(r["seed"] for r in rows), "n": len(rows)}
            for metric in ("auc", "gauc_category", "logloss", "best_val_auc", "wall_s"):
                stats = _mean_std([r[metric] for r in rows if r.get(metric) is not None])
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = stats["mean"], stats["std"]
            ordered = sorted(rows, key=lambda r: r["seed"])
            entry["best_val_steps"] = [r.get("best_val_step") for r in ordered]
            # The step whose checkpoint was tested: the reference code always tests its best validation.
            entry["tested_steps"] = [r.get("checkpoint_step", r.get("best_val_step")) for r in ordered]
            table.append(entry)
    paired = []
    for setting in settings:
        for model in models:
            seeds = sorted(s for (c, m, s) in by if c == f"ours:{setting}" and m == model
                           and ("official", model, s) in by)
            if not seeds:
                continue
            diffs = {s: by[(f"ours:{setting}", model, s)]["auc"] - by[("official", model, s)]["auc"] for s in seeds}
            stats = _mean_std(list(diffs.values()))
            paired.append({"setting": setting, "model": model, "seeds": seeds, "auc_diff_per_seed": diffs,
                           "auc_diff_mean": stats["mean"], "auc_diff_std": stats["std"],
                           "ours_better": sum(d > 0 for d in diffs.values())})
    dare_vs_twin = []
    for code in codes:
        seeds = sorted(s for (c, m, s) in by if c == code and m == "dare" and (code, "twin", s) in by)
        if not seeds:
            continue
        diffs = {s: by[(code, "dare", s)]["auc"] - by[(code, "twin", s)]["auc"] for s in seeds}
        stats = _mean_std(list(diffs.values()))
        dare_vs_twin.append({"code": code, "seeds": seeds, "dare_wins_on": [s for s in seeds if diffs[s] > 0],
                             "auc_diff_per_seed": diffs, "auc_diff_mean": stats["mean"],
                             "auc_diff_std": stats["std"]})
    return {"table": table, "paired": paired, "dare_vs_twin": dare_vs_twin}


def _pm(mean: Optional[float], std: Optional[float], digits: int = 4) -> str:
    return "—" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(report: Dict[str, Any]) -> str:
    p, d, s = report["protocol"], report["dataset"], report["summary"]
    lines = [
        f"# vs official: {report['name']}",
        "",
        f"Dataset `{d['path']}` ({d['source']}): train {d['counts']['train']:,} / val {d['counts']['val']:,} / "
        f"test {d['counts']['test']:,} samples, {d['num_items']:,} items, {d['num_categories']:,} categories "
        f"(with padding), histories up to {p['max_length']}."
        + (f" Oracle test AUC (true click probabilities): {report['oracle_auc']:.4f}."
           if report.get("oracle_auc") is not None else ""),
        f"Both codes: global batch {p['batch_size']}, {p['epochs']} epochs, validation every {p['val_every']} steps, "
        f"seeds {' '.join(map(str, p['seeds']))}, {p['threads']} thread(s) per run. The reference code tests its "
        f"best-validation checkpoint; ours tests what `dare-rec evaluate` picks (step in the JSON).",
        "",
        "| code | model | seeds | test AUC | GAUC (category) | logloss | best val AUC | best val step "
        "per seed | tested step per seed | wall s / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in s["table"]:
        metrics = " | ".join(_pm(e[f"{m}_mean"], e[f"{m}_std"]) for m in ("auc", "gauc_category", "logloss",
                                                                           "best_val_auc"))
        lines.append(f"| {e['code']} | {e['model']} | {e['n']} | {metrics} | "
                     f"{' '.join(map(str, e['best_val_steps']))} | {' '.join(map(str, e['tested_steps']))} | "
                     f"{e['wall_s_mean']:.0f} |")
    lines += ["", "The reference logloss includes its aux-head loss; ours is the main head only.", ""]
    if s["paired"]:
        lines += ["**Ours − official, test AUC, paired by seed**", "",
                  "| setting | model | mean ± std | ours better | per seed |", "|---|---|---|---|---|"]
        for e in s["paired"]:
            per_seed = ", ".join(f"{k}: {v:+.4f}" for k, v in e["auc_diff_per_seed"].items())
            lines.append(f"| {e['setting']} | {e['model']} | {_pm(e['auc_diff_mean'], e['auc_diff_std'])} | "
                         f"{e['ours_better']}/{len(e['seeds'])} | {per_seed} |")
        lines.append("")
    if s["dare_vs_twin"]:
        lines += ["**DARE − TWIN, test AUC, paired by seed**", "",
                  "| code | mean ± std | DARE wins on seeds | per seed |", "|---|---|---|---|"]
        for e in s["dare_vs_twin"]:
            per_seed = ", ".join(f"{k}: {v:+.4f}" for k, v in e["auc_diff_per_seed"].items())
            wins = " ".join(map(str, e["dare_wins_on"])) or "none"
            lines.append(f"| {e['code']} | {_pm(e['auc_diff_mean'], e['auc_diff_std'])} | {wins} "
                         f"({len(e['dare_wins_on'])}/{len(e['seeds'])}) | {per_seed} |")
        lines.append("")
    if report["warnings"]:
        lines += ["Warnings:", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report["settings"]:
        lines += ["Settings of ours: " + "; ".join(f"`{k}`: `{shlex.join(v) or '(preset as is)'}`"
                                                   for k, v in report["settings"].items()), ""]
    return "\n".join(lines)



def accuracy(args: argparse.Namespace) -> int:
    preset = Path(args.config).resolve()
    base = load_config(preset)
    data = Path(args.data or base.data.path).resolve()
    meta = schema.DatasetMeta.read(data)
    batch = args.batch_size or base.data.batch_size
    epochs = args.epochs or base.train.epochs
    val_every = args.val_every or base.train.val_every or max(meta.counts["train"] // batch, 1)
    max_length = min(meta.max_history, base.data.max_len)
    protocol = Protocol(data=data, meta=meta, batch_size=batch, epochs=epochs, val_every=val_every,
                        max_length=max_length)
    settings = dict(parse_setting(s) for s in (args.setting or ["preset="]))
    sides = set(args.sides)
    if "official" in sides and args.official_repo is None:
        raise HarnessError("--official-repo: required to run the reference side (or --sides ours)")
    cache = Path(args.cache).resolve()
    steps_per_epoch = meta.counts["train"] // batch
    oracle_auc = oracle_test_auc(data) if meta.has_click_prob else None
    warnings: List[str] = []
    if steps_per_epoch % val_every:
        warnings.append(f"ours also validates at every epoch end (every {steps_per_epoch} steps), the reference "
                        f"code only every {val_every} steps")

    runs: List[Run] = []
    export_dir, export = None, None
    official_code = None
    if args.official_repo is not None:
        repo = Path(args.official_repo).resolve()
        if not (repo / "train_pytorch.py").is_file() or not (repo / "dataset.py").is_file():
            raise HarnessError(f"--official-repo {repo}: no train_pytorch.py / dataset.py (a thuml/DARE checkout?)")
        official_code = source_hash(repo, OFFICIAL_SOURCES)
        export_dir, export = ensure_export(protocol, cache)
        warnings += check_official_protocol(protocol, export)
    our_code = source_hash(ROOT, OUR_SOURCES, OUR_DATA_WRITERS)
    for seed in args.seeds:
        for model in args.models:
            if export is not None:
                flags = official_flags(model, protocol, export, seed)
                inputs = {"side": "official", "dataset": protocol.fingerprint, "code": official_code,
                          "max_length": max_length, "flags": flags}
                key, folder = _cache_folder(cache, "official", model, seed, inputs)
                runs.append(Run("official", "official", model, seed, key, folder, inputs))
            for name, tokens in settings.items():
                overrides = our_overrides(protocol, model, seed, tokens)
                try:  # a bad override fails here, before any run starts
                    resolved = to_dict(load_config(preset, overrides))
                except ConfigError:
                    if "ours" in sides:
                        raise
                    continue  # not run now, so none can be cached either
                resolved["train"].pop("output_dir")
                resolved["data"].pop("path")  # the dataset is identified by its file hashes
                inputs = {"side": "ours", "dataset": protocol.fingerprint, "code": our_code, "config": resolved}
                key, folder = _cache_folder(cache, "ours", model, seed, inputs)
                runs.append(Run("ours", name, model, seed, key, folder, {"overrides": overrides}))
    for w in warnings:
        print(f"warning: {w}", flush=True)

    report_json = Path(args.results_dir) / f"vs_official_{args.name}.json"
    report_md = report_json.with_name(f"vs_official_{args.name}.md")
    results: List[Dict[str, Any]] = []

    def write_report() -> None:
        report = {
            "benchmark": "vs_official", "mode": "accuracy", "name": args.name,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "dataset": {"path": shown_path(protocol.data), "source": meta.source, "counts": meta.counts,
                        "num_items": meta.num_items, "num_categories": meta.num_categories,
                        "max_history": meta.max_history, "fingerprint": protocol.fingerprint},
            "protocol": {"batch_size": batch, "epochs": epochs, "val_every": val_every, "max_length": max_length,
                         "seeds": list(args.seeds), "models": list(args.models), "threads": args.threads,
                         "preset": shown_path(preset), "official_flags_base": OFFICIAL_BASE_FLAGS,
                         "official_models": {m: OFFICIAL_MODELS[m] for m in args.models if m in OFFICIAL_MODELS}},
            "settings": settings,
            "warnings": warnings,
            "oracle_auc": oracle_auc,
            "summary": summarize(results, args.models, list(settings)),
            "runs": results,
        }
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        report_md.write_text(markdown(report))

    for i, run in enumerate(runs, start=1):
        result = run.finished()
        if result is None and run.side in sides:
            print(f"[{i}/{len(runs)}] {run.label()}: running ({run.folder})", flush=True)
            if run.side == "official":
                result = run_official(run, repo, args.official_python, export_dir, run.inputs["flags"], args.threads)
            else:
                result = run_ours(run, preset, run.inputs["overrides"], args.threads)
            result = {"inputs": run.inputs, **result}
            run.result_path.write_text(json.dumps(result, indent=2) + "\n")
            print(f"[{i}/{len(runs)}] {run.label()}: test AUC {result['auc']:.4f} "
                  f"(best val step {result['best_val_step']}, {result['wall_s']:.0f} s)", flush=True)
        elif result is not None:
            print(f"[{i}/{len(runs)}] {run.label()}: cached, test AUC {result['auc']:.4f}", flush=True)
        if result is not None:
            code = "official" if run.side == "official" else f"ours:{run.setting}"
            results.append({"code": code, "model": run.model, "seed": run.seed, "key": run.key,
                            **{k: v for k, v in result.items() if k != "inputs"}})
            write_report()
    write_report()
    print(f"wrote {report_json} and {report_md}")
    return 0




def add_arguments(acc: argparse.ArgumentParser) -> None:
    acc.add_argument("--config", required=True, help="our preset (its data.path is the dataset unless --data)")
    acc.add_argument("--data", help="prepared dataset folder (default: data.path of --config)")
    acc.add_argument("--official-repo", help="a checkout of thuml/DARE (run unmodified, cwd = the checkout)")
    acc.add_argument("--official-python", default=sys.executable,
                     help="interpreter for the reference code, with torch and numpy (default: this one)")
    acc.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    acc.add_argument("--models", nargs="+", default=["dare", "twin"], help=f"of {sorted(OFFICIAL_MODELS)}")
    acc.add_argument("--batch-size", type=int, help="global batch size of both codes (default: data.batch_size)")
    acc.add_argument("--epochs", type=int, help="epochs of both codes (default: train.epochs)")
    acc.add_argument("--val-every", type=int,
                     help="validate every N steps in both codes (default: train.val_every, else once per epoch)")
    acc.add_argument("--setting", action="append", metavar="NAME=OVERRIDES",
                     help="a configuration of ours: a name and config overrides, e.g. "
                          "'lr=--train.dense_lr 0.01' (repeatable; default: 'preset=')")
    acc.add_argument("--sides", nargs="+", choices=("official", "ours"), default=["official", "ours"],
                     help="which codes to run now (finished runs of both are reported from the cache)")
    acc.add_argument("--threads", type=int, default=1, help="OMP threads per run, both codes")
    acc.add_argument("--cache", default=str(ROOT / "runs" / "vs_official"), help="finished runs, keyed by inputs")
    acc.add_argument("--name", default="accuracy", help="report name: <results-dir>/vs_official_<name>.{json,md}")
    acc.add_argument("--results-dir", default=str(SCRATCH),
                     help="report folder (the committed reports: benchmarks/results)")


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("batch_size", "epochs", "val_every", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
