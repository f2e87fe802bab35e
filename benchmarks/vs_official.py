"""Side by side with the DARE paper's reference code (thuml/DARE): ``python -m benchmarks.vs_official MODE``.

Mode ``accuracy``: the same prepared dataset, the same seeds, the same global batch size, epochs and
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

Mode ``throughput``: training samples/s of both codes at one shape, in one process, interleaved::

    python -m benchmarks.vs_official throughput --official-repo ~/DARE --items 100000 1000000

* shape (default: the reference script's Taobao line at B = 256): N = 200 with every history full, K = 20,
  10k categories, representation dims (item, category, time/position) ``--d-rep`` 16, aux head on; DARE at
  every ``--d-att`` (its attention item, category and time/position dims all d_att, as the reference's
  ``-attention_*_embedding_dim`` flags set them) and TWIN at d = d_rep, in both codes, at every ``--items``;
* **official**: the checkout's own ``get_args`` / ``create_model`` build its model from the script's line for
  the model (the accuracy mode's flags) at this shape, imported from the checkout unmodified; one step is what
  its trainer does per batch (:class:`OfficialRun`);
* **ours**: built and stepped like the training job (``benchmarks.attention_dims.ModelRun``: DMP world size
  1, fused sparse optimizer, ``TrainPipelineSparseDist``), config defaults otherwise;
* both read the same two random batches per table size (ids Zipf-distributed with exponent 1.1, or
  ``--ids uniform``), run with ``--threads`` torch threads, and alternate: ``--rounds`` passes over every
  configuration (each round starting one configuration later), ``--warmup`` untimed and ``--steps`` timed
  steps per visit.

The report (``--results-dir/vs_official_NAME.{json,md,png}``): median and quartiles of the step times and
samples/s per configuration; ours / official per (table size, model), the largest table over the smallest per
(code, model) and DARE / TWIN per code, each from the medians of the same run with the range of the per-round
ratios; issue 9's acceptance targets that the run measures.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import itertools
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
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dare_rec.config import ConfigError, load_config, to_dict
from dare_rec.data import schema as S
from dare_rec.data.official_format import MARKER, ROWS_PER_FILE, export_official
from dare_rec.metrics.offline import auc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The reference script's flags shared by its DARE and baseline lines (scripts/taobao.sh); the dataset-,
# protocol- and seed-dependent ones are added per run.
OFFICIAL_BASE_FLAGS: Dict[str, Optional[str]] = {
    "-short_model_type": "DIN", "-long_model_type": "DIN", "-use_cross_feature": "True",
    "-attn_func": "scaled_dot_product", "-hard_or_soft": "soft", "-top_k": "20", "-use_aux_loss": "True",
    "-use_time_mode": "concat", "-time_embedding_dim": "16", "-category_embedding_dim": "16",
    "-learning_rate": "0.01", "-weight_decay": "0.000001", "-log_interval": "50",
}
# Our variant -> how its taobao.sh line differs from the base (None: a switch without value; a flag mapped
# to the string "<drop>" is left out).
OFFICIAL_MODELS: Dict[str, Dict[str, Optional[str]]] = {
    "dare": {"-model_name": "DARE"},
    "twin": {"-model_name": "twin"},
    "twin_no_tr": {"-model_name": "twin", "-use_cross_feature": "<drop>"},
    "twin_hard": {"-model_name": "twin", "-hard_or_soft": "hard"},
    "twin_4e": {"-model_name": "four_embedding"},
    "twin_proj": {"-model_name": "projection", "-mlp_position_after_concat": None},
    "din": {"-model_name": "DIN", "-attn_func": "learnable", "-use_time": None},
}
# Files of the reference checkout whose content defines what it computes (hashed into the cache key).
OFFICIAL_SOURCES = ("train_pytorch.py", "dataset.py", "utils.py", "model/*.py", "tools/*.py")
OUR_SOURCES = ("dare_rec/**/*.py", "pipelines/**/*.py", "sharding/**/*.py")
# Modules that only write datasets: a run's dataset is identified by its file hashes, so these are not inputs.
OUR_DATA_WRITERS = ("dare_rec/data/raw_logs.py", "dare_rec/data/logs.py", "dare_rec/data/log_readers.py",
                    "dare_rec/data/synthetic.py", "dare_rec/data/writer.py", "dare_rec/data/official_format.py",
                    "pipelines/prepare.py", "pipelines/make_raw_logs.py")
# Config fields the harness sets for every run of ours; a setting may not override them.
PROTOCOL_FIELDS = ("data.path", "data.max_len", "model.variant", "train.seed", "data.batch_size", "train.epochs",
                   "train.val_every", "train.output_dir")
_FLOAT = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


class HarnessError(RuntimeError):
    """A run failed or the inputs cannot be compared; the message says which and where its log is."""


# ---------------------------------------------------------------------------------------------------
# Inputs, fingerprints and the cache
# ---------------------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def source_hash(root: Path, patterns: Sequence[str], exclude: Sequence[str] = ()) -> str:
    """sha256 over the named source files of a checkout (relative path + content), in sorted order."""
    h = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.glob(pattern)
                    if p.is_file() and str(p.relative_to(root)) not in exclude})
    if not files:
        raise HarnessError(f"{root}: none of {list(patterns)} found")
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass
class Protocol:
    """What both codes share: data, seeds, global batch size, epochs, validation cadence."""

    data: Path
    meta: S.DatasetMeta
    batch_size: int
    epochs: int
    val_every: int
    max_length: int

    @property
    def fingerprint(self) -> str:
        return _digest({"files": self.meta.files, "counts": self.meta.counts})


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
    key = _digest(inputs)[:16]
    return key, cache / "runs" / f"{side}-{model}-seed{seed}-{key}"


# ---------------------------------------------------------------------------------------------------
# The reference code
# ---------------------------------------------------------------------------------------------------


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
    return _argv(flags)


def _argv(flags: Dict[str, Optional[str]]) -> List[str]:
    """Flag -> value (None: a switch; "<drop>": left out) as an argument list."""
    argv: List[str] = []
    for flag, value in flags.items():
        if value == "<drop>":
            continue
        argv += [flag] if value is None else [flag, value]
    return argv


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


# ---------------------------------------------------------------------------------------------------
# Our code
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------


def test_oracle_auc(data: Path) -> float:
    """AUC of the true click probabilities on the test split (synthetic data): what a perfect model scores."""
    table = pa.concat_tables([pq.read_table(p, columns=[S.LABEL, S.CLICK_PROB]) for p in S.split_files(data, "test")])
    return auc(table.column(S.LABEL).to_numpy().astype(np.float64),
               table.column(S.CLICK_PROB).to_numpy().astype(np.float64))


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


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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


# ---------------------------------------------------------------------------------------------------
# accuracy mode
# ---------------------------------------------------------------------------------------------------


def accuracy(args: argparse.Namespace) -> int:
    preset = Path(args.config).resolve()
    base = load_config(preset)
    data = Path(args.data or base.data.path).resolve()
    meta = S.DatasetMeta.read(data)
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
    oracle_auc = test_oracle_auc(data) if meta.has_click_prob else None
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
            "dataset": {"path": _shown(protocol.data), "source": meta.source, "counts": meta.counts,
                        "num_items": meta.num_items, "num_categories": meta.num_categories,
                        "max_history": meta.max_history, "fingerprint": protocol.fingerprint},
            "protocol": {"batch_size": batch, "epochs": epochs, "val_every": val_every, "max_length": max_length,
                         "seeds": list(args.seeds), "models": list(args.models), "threads": args.threads,
                         "preset": _shown(preset), "official_flags_base": OFFICIAL_BASE_FLAGS,
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


# ---------------------------------------------------------------------------------------------------
# throughput mode
# ---------------------------------------------------------------------------------------------------

# The shape (the reference script's Taobao line at B = 256) and a small one for smoke runs; a flag given
# on the command line wins over either.
THROUGHPUT_DEFAULTS: Dict[str, Any] = {"d_att": [8, 16, 32, 64], "items": [1_000_000], "categories": 10_000,
                                       "batch_size": 256, "max_len": 200, "d_rep": 16, "steps": 3, "rounds": 5}
THROUGHPUT_QUICK: Dict[str, Any] = {"d_att": [8, 16], "items": [20_000], "categories": 1_000, "batch_size": 64,
                                    "max_len": 50, "d_rep": 16, "steps": 2, "rounds": 2}
# The reference's flags that size DARE's attention tables (item, category, time); a TWIN line must not set them.
OFFICIAL_ATTENTION_DIM_FLAGS = ("-attention_item_embedding_dim", "-attention_category_embedding_dim",
                                "-attention_time_embedding_dim")
# The reference keeps 2000 rows of time (position) embeddings; its histories' time ids run up to N.
OFFICIAL_TIME_ROWS = 2000
OFFICIAL_INIT_STD = 0.01  # its trainer re-initialises every non-bias parameter ~ N(0, 0.01)
CODES = ("official", "ours")
# Issue 9's acceptance, each a ratio of medians from one run: (what, target).
TARGET_VS_OFFICIAL = {16: 3.0, 64: 8.0}
TARGET_ROWS = 0.8
TARGET_DARE8_OVER_TWIN = 0.9


@dataclass(frozen=True)
class ThroughputCase:
    """One configuration: a code, its DARE at one d_att (or its TWIN: d_att None) and a table size."""

    code: str  # "official" or "ours"
    model: str  # "dare" or "twin"
    d_att: Optional[int]
    items: int

    @property
    def key(self) -> str:
        """The model as tables and plots name it: ``dare_8``, ``twin``."""
        return self.model if self.d_att is None else f"{self.model}_{self.d_att}"

    def label(self) -> str:
        return f"{self.code} {self.key} {self.items:,} items"


def official_throughput_flags(model: str, d_att: Optional[int], items: int, categories: int, batch_size: int,
                              max_len: int, d_rep: int) -> List[str]:
    """The reference arguments for one configuration: its script's line for ``model`` (as the accuracy mode
    runs it) at this shape; representation dims (item, category, time) ``d_rep``, DARE's attention dims (item,
    category, time) ``d_att``."""
    flags: Dict[str, Optional[str]] = {
        "-max_length": str(max_len), "-item_n": str(items), "-cate_n": str(categories),
        "-long_seq_split": f"0:{max_len}", **OFFICIAL_BASE_FLAGS, "-batch_size": str(batch_size),
        "-category_embedding_dim": str(d_rep), "-time_embedding_dim": str(d_rep), "-seed": "1",
    }
    flags.update(OFFICIAL_MODELS[model])
    if d_att is not None:
        flags.update({flag: str(d_att) for flag in OFFICIAL_ATTENTION_DIM_FLAGS})
    return _argv(flags)


def our_throughput_overrides(model: str, d_att: Optional[int], max_len: int, d_rep: int) -> List[str]:
    """Our config overrides for one configuration (defaults otherwise): representation dims (item, category,
    position) ``d_rep``; DARE's attention dims (item, category and, like the reference, position) ``d_att``."""
    overrides = ["--model.variant", model, "--model.d_rep", str(d_rep), "--model.d_pos", str(d_rep),
                 "--model.top_k", OFFICIAL_BASE_FLAGS["-top_k"], "--model.aux_loss", "true",
                 "--data.max_len", str(max_len)]
    if d_att is not None:
        overrides += ["--model.d_att", str(d_att), "--model.d_pos_att", str(d_att)]
    return overrides


def _module_inside(module: Any, root: Path) -> bool:
    paths = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []))]
    return any(p is not None and Path(p).resolve().is_relative_to(root) for p in paths)


def load_official_factory(repo: Path) -> Callable[[List[str]], Tuple[Any, argparse.Namespace]]:
    """``flags -> (model, args)`` through the checkout's own argument parser and model factory
    (``train_pytorch.get_args`` and ``create_model``), imported from ``repo`` unmodified.

    Nothing is written into the checkout (no bytecode), and the modules it brings in (``train_pytorch``,
    ``model``, ``dataset``, ``utils``, ``tools``) are taken out of ``sys.modules`` again, so nothing else
    resolves those generic names to it. Raises HarnessError when one of them is already imported from
    elsewhere (the checkout would import the wrong module).
    """
    repo = repo.resolve()
    if not (repo / "train_pytorch.py").is_file():
        raise HarnessError(f"--official-repo {repo}: no train_pytorch.py (a thuml/DARE checkout?)")
    own = {p.stem for p in repo.glob("*.py")} | {p.name for p in repo.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    for name in sorted(own):
        if name in sys.modules and not _module_inside(sys.modules[name], repo):
            raise HarnessError(f"--official-repo: the checkout's module {name!r} is shadowed by the already "
                               f"imported {sys.modules[name]!r}")
    before = set(sys.modules)
    bytecode = sys.dont_write_bytecode
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True
    try:
        trainer = importlib.import_module("train_pytorch")
    finally:
        sys.path.remove(str(repo))
        sys.dont_write_bytecode = bytecode
        for name in set(sys.modules) - before:
            if _module_inside(sys.modules[name], repo):
                del sys.modules[name]

    def build(flags: List[str]) -> Tuple[Any, argparse.Namespace]:
        argv = sys.argv
        sys.argv = ["train_pytorch.py", *flags]  # its parser reads sys.argv
        try:
            args = trainer.get_args()
        except SystemExit:
            raise HarnessError(f"the reference argument parser refused: {shlex.join(flags)}") from None
        finally:
            sys.argv = argv
        return trainer.create_model(args.long_model_type, args), args

    return build


def official_batch(histories: Any) -> Dict[str, np.ndarray]:
    """The batch dict the reference model's forward reads (what its ``dataset.py`` yields) for the same ids:
    histories oldest first, all N long (mask all ones), time ids N..1 (1 = most recent), target time id 0,
    one-hot labels ([1, 0] clicked)."""
    hist_items = histories.hist_items.numpy()
    batch, max_len = hist_items.shape
    labels = histories.labels.numpy().astype(np.int64)
    return {
        "uid": np.arange(batch), "iid": histories.target_items.numpy(), "cid": histories.target_cates.numpy(),
        "tid": np.zeros(batch, dtype=np.int32), "hist_iid": hist_items, "hist_cid": histories.hist_cates.numpy(),
        "hist_tid": np.tile(np.arange(max_len, 0, -1), (batch, 1)), "mask": np.ones((batch, max_len), np.float32),
        "target": np.stack([labels, 1 - labels], axis=1),
    }


class OfficialRun:
    """The reference model at one shape, trained one step at a time as its trainer does (``train_pytorch.py``):
    parameters re-initialised ~ N(0, 0.01) except biases; per step the forward (which also turns the batch's
    numpy arrays into tensors) returns ``(probability, loss, aux_loss)`` with the aux loss already in ``loss``,
    the L2 term ``weight_decay * sum(w^2)`` over parameters whose names hold neither "bias" nor "embedding"
    is added, then zero_grad, backward and ``torch.optim.Adam`` over every parameter (dense table gradients).
    The trainer's per-step logging (``.item()`` of the losses, a batch accuracy) is left out.
    """

    def __init__(self, build: Callable[[List[str]], Tuple[Any, argparse.Namespace]], flags: List[str],
                 batches: Sequence[Dict[str, np.ndarray]], device: Any, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        model, args = build(flags)
        if not args.use_aux_loss:
            raise HarnessError("the reference model must run with its aux head (-use_aux_loss True)")
        self.model = model.to(device).train()
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if "bias" not in name:
                    torch.nn.init.normal_(param, mean=0.0, std=OFFICIAL_INIT_STD)
        self.l2_params = [p for name, p in self.model.named_parameters()
                          if "bias" not in name and "embedding" not in name]
        self.weight_decay = args.weight_decay
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.learning_rate)
        self._stream = itertools.cycle(batches)

    def train_step(self) -> None:
        _, loss, _ = self.model(next(self._stream))
        loss = loss + self.weight_decay * sum(p.pow(2).sum() for p in self.l2_params)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def _summary(values: Sequence[float]) -> Dict[str, float]:
    q1, med, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values),
            "n": len(values)}


def throughput_rows(times: Dict[ThroughputCase, List[List[float]]], batch_size: int) -> List[Dict[str, Any]]:
    """One row per configuration from its step times (seconds, one list per round): median and quartiles of
    every timed step, samples/s of the median (quartiles swap: a slow step is few samples/s), per-round medians."""
    rows = []
    for case, rounds in times.items():
        steps = [t for r in rounds for t in r]
        step = _summary(steps)
        rows.append({**asdict(case), "key": case.key, "step_time_s": step,
                     "samples_per_s": {"median": batch_size / step["median"], "q1": batch_size / step["q3"],
                                       "q3": batch_size / step["q1"]},
                     "round_median_step_s": [statistics.median(r) for r in rounds]})
    return rows


def _ratio(numerator: Dict[str, Any], denominator: Dict[str, Any]) -> Dict[str, Any]:
    """samples/s of ``numerator`` over ``denominator``: from the medians of all steps, and per round (the
    spread: each round's configurations ran minutes apart at most)."""
    per_round = [d / n for n, d in zip(numerator["round_median_step_s"], denominator["round_median_step_s"])]
    return {"ratio": denominator["step_time_s"]["median"] / numerator["step_time_s"]["median"],
            "per_round_min": min(per_round), "per_round_max": max(per_round), "per_round": per_round}


def throughput_ratios(rows: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """ours / official per (items, model); largest / smallest table per (code, model); DARE / TWIN per
    (code, items, d_att)."""
    by = {(r["code"], r["key"], r["items"]): r for r in rows}
    items = sorted({r["items"] for r in rows})
    keys = sorted({r["key"] for r in rows}, key=lambda k: (k == "twin", int(k.split("_")[1]) if "_" in k else 0))
    out: Dict[str, List[Dict[str, Any]]] = {"ours_over_official": [], "rows": [], "dare_over_twin": []}
    for n in items:
        for key in keys:
            if ("ours", key, n) in by and ("official", key, n) in by:
                out["ours_over_official"].append({"items": n, "model": key,
                                                  **_ratio(by[("ours", key, n)], by[("official", key, n)])})
    for code in CODES:
        for key in keys:
            if len(items) > 1 and (code, key, items[0]) in by and (code, key, items[-1]) in by:
                out["rows"].append({"code": code, "model": key, "items": items[-1], "over_items": items[0],
                                    **_ratio(by[(code, key, items[-1])], by[(code, key, items[0])])})
        for n in items:
            for key in keys:
                if key != "twin" and (code, key, n) in by and (code, "twin", n) in by:
                    out["dare_over_twin"].append({"code": code, "items": n, "model": key,
                                                  **_ratio(by[(code, key, n)], by[(code, "twin", n)])})
    return out


def throughput_targets(ratios: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """Issue 9's acceptance targets that this run's configurations measure (at its largest table)."""
    targets = []
    largest = max((e["items"] for e in ratios["ours_over_official"] + ratios["dare_over_twin"]), default=None)
    for e in ratios["ours_over_official"]:
        d_att = int(e["model"].split("_")[1]) if e["model"].startswith("dare_") else None
        if e["items"] == largest and d_att in TARGET_VS_OFFICIAL:
            targets.append({"what": f"ours / official, DARE d_att {d_att}, {largest:,} items",
                            "value": e["ratio"], "target": TARGET_VS_OFFICIAL[d_att]})
    for e in ratios["rows"]:
        if e["code"] == "ours" and e["model"] == "dare_16":
            targets.append({"what": f"ours, DARE d_att 16: {e['items']:,} / {e['over_items']:,} items",
                            "value": e["ratio"], "target": TARGET_ROWS})
    for e in ratios["dare_over_twin"]:
        if e["code"] == "ours" and e["model"] == "dare_8" and e["items"] == largest:
            targets.append({"what": f"ours, DARE d_att 8 / TWIN, {largest:,} items", "value": e["ratio"],
                            "target": TARGET_DARE8_OVER_TWIN})
    for t in targets:
        t["met"] = t["value"] >= t["target"]
    return targets


def _num(x: float) -> str:
    return f"{x:,.0f}"


def throughput_markdown(report: Dict[str, Any]) -> str:
    shape, protocol = report["shape"], report["protocol"]
    rows = {(r["code"], r["key"], r["items"]): r for r in report["results"]}
    keys = [f"dare_{d}" for d in shape["d_att"]] + ["twin"]
    head = [f"d_att {d}" for d in shape["d_att"]] + [f"TWIN (d {shape['d_rep']})"]
    lines = [
        f"# vs official: training throughput ({report['name']})",
        "",
        f"`{report['command']}`",
        "",
        f"One training step (forward + backward + optimizer) of the reference code ({report['official']['repo']}, "
        f"unmodified) and of ours at the same shape: B = {shape['batch_size']}, N = {shape['max_len']} (every "
        f"history full), K = {shape['top_k']}, {shape['categories']:,} categories, representation dims (item, "
        f"category, time/position) {shape['d_rep']}, attention dims (item, category, time/position) d_att, aux "
        f"head on. Ids: {protocol['ids']}, the same batches for both codes. {protocol['threads']} thread(s), "
        f"{protocol['rounds']} interleaved rounds x {protocol['steps']} timed steps per configuration after "
        f"{protocol['warmup']} warm-up step(s); {report['machine']['device']}.",
        "",
    ]
    for n in shape["items"]:
        lines += [f"**{n:,} items** — training samples/s, median (IQR) of every timed step; ratio from the "
                  f"medians (range of the per-round ratios)", "",
                  "| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        for code in CODES:
            cells = []
            for key in keys:
                r = rows.get((code, key, n))
                cells.append("—" if r is None else f"{_num(r['samples_per_s']['median'])} "
                                                   f"({_num(r['samples_per_s']['q1'])}–{_num(r['samples_per_s']['q3'])})")
            lines.append(f"| {'official code' if code == 'official' else 'dare_rec'} | " + " | ".join(cells) + " |")
        ratio = {e["model"]: e for e in report["ratios"]["ours_over_official"] if e["items"] == n}
        lines.append("| ours / official | " + " | ".join(
            "—" if k not in ratio else f"**{ratio[k]['ratio']:.2f}×** ({ratio[k]['per_round_min']:.2f}–"
                                       f"{ratio[k]['per_round_max']:.2f})" for k in keys) + " |")
        for code in CODES:
            dt = {e["model"]: e for e in report["ratios"]["dare_over_twin"] if e["items"] == n and e["code"] == code}
            if dt:
                lines.append(f"| {code}: DARE / TWIN | " + " | ".join(
                    f"{dt[k]['ratio']:.2f}×" if k in dt else "" for k in keys) + " |")
        lines.append("")
    if report["ratios"]["rows"]:
        first = report["ratios"]["rows"][0]
        lines += [f"**Table size**: samples/s at {first['items']:,} items / at {first['over_items']:,} items "
                  f"(range of the per-round ratios)", "", "| code | " + " | ".join(head) + " |",
                  "|---" * (len(head) + 1) + "|"]
        for code in CODES:
            rr = {e["model"]: e for e in report["ratios"]["rows"] if e["code"] == code}
            lines.append(f"| {code} | " + " | ".join(
                "—" if k not in rr else f"{rr[k]['ratio']:.2f} ({rr[k]['per_round_min']:.2f}–"
                                        f"{rr[k]['per_round_max']:.2f})" for k in keys) + " |")
        lines.append("")
    if report["targets"]:
        lines += ["**Issue 9 targets** (this run):", ""]
        lines += [f"- {t['what']}: {t['value']:.2f} (target ≥ {t['target']}) — {'met' if t['met'] else 'missed'}"
                  for t in report["targets"]]
        lines.append("")
    lines += ["The reference step: its forward (which converts the numpy batch), its L2 term, backward, "
              "`torch.optim.Adam` over every parameter (dense table gradients); its per-step logging is left out. "
              "Ours: `build_model` -> fused sparse optimizer -> DMP (world size 1) -> Adam for the dense part, "
              "stepped by TorchRec's `TrainPipelineSparseDist`; config defaults, then the shape's overrides and "
              f"`--ours` ({report.get('ours') or 'none'}); tables' optimizer: "
              f"{report.get('sparse_optimizer', '?')}.", ""]
    return "\n".join(lines)


def plot_throughput(report: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = report["shape"]
    items = shape["items"]
    fig, axes = plt.subplots(1, len(items), figsize=(6.4 * len(items), 4.8), squeeze=False)
    colors = {"official": "tab:gray", "ours": "tab:blue"}
    names = {"official": "official code", "ours": "dare_rec"}
    for ax, n in zip(axes[0], items):
        ratio = {e["model"]: e["ratio"] for e in report["ratios"]["ours_over_official"] if e["items"] == n}
        for code in CODES:
            dare = sorted((r for r in report["results"] if r["code"] == code and r["model"] == "dare"
                           and r["items"] == n), key=lambda r: r["d_att"])
            if dare:
                x = [r["d_att"] for r in dare]
                y = [r["samples_per_s"]["median"] for r in dare]
                err = [[v - r["samples_per_s"]["q1"] for v, r in zip(y, dare)],
                       [r["samples_per_s"]["q3"] - v for v, r in zip(y, dare)]]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colors[code], label=f"{names[code]} DARE")
                if code == "ours":
                    for xi, yi, r in zip(x, y, dare):
                        if r["key"] in ratio:
                            ax.annotate(f"{ratio[r['key']]:.1f}×", (xi, yi), textcoords="offset points",
                                        xytext=(0, 8), ha="center", fontsize=8, color=colors[code])
            for twin in (r for r in report["results"] if r["code"] == code and r["model"] == "twin"
                         and r["items"] == n):
                label = f"{names[code]} TWIN (d {shape['d_rep']})"
                if "twin" in ratio and code == "ours":
                    label += f", {ratio['twin']:.1f}×"
                ax.axhline(twin["samples_per_s"]["median"], color=colors[code], ls="--", lw=1, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(shape["d_att"], [str(d) for d in shape["d_att"]])
        ax.set_xlabel("d_att (DARE's attention dims)")
        ax.set_ylabel("training samples/s")
        ax.set_title(f"{n:,} items", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"Training samples/s, ours vs the reference code (ratio ours/official annotated): "
                 f"B={shape['batch_size']}, N={shape['max_len']}, K={shape['top_k']}, d_rep {shape['d_rep']}, "
                 f"aux head on, {report['protocol']['threads']} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _resolve_throughput_args(args: argparse.Namespace) -> None:
    from benchmarks.attention_dims import ID_DISTRIBUTIONS, ZIPF_EXPONENT

    defaults = THROUGHPUT_QUICK if args.quick else THROUGHPUT_DEFAULTS
    if args.ids not in ID_DISTRIBUTIONS:
        raise HarnessError(f"--ids {args.ids!r}: choose one of {ID_DISTRIBUTIONS}")
    if args.zipf_exponent is None:
        args.zipf_exponent = ZIPF_EXPONENT
    elif args.zipf_exponent <= 0:
        raise HarnessError(f"--zipf-exponent must be > 0, got {args.zipf_exponent}")
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    top_k = int(OFFICIAL_BASE_FLAGS["-top_k"])
    for name in ("batch_size", "max_len", "d_rep", "steps", "rounds", "categories", "threads"):
        if getattr(args, name) < 1:
            raise HarnessError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise HarnessError(f"--warmup must be >= 0, got {args.warmup}")
    if any(d < 1 for d in args.d_att):
        raise HarnessError(f"--d-att: every value must be >= 1, got {args.d_att}")
    if min(args.items) < 2 or args.categories < 2:
        raise HarnessError("--items / --categories: vocabularies include padding id 0 and need >= 2 rows")
    if not top_k <= args.max_len < OFFICIAL_TIME_ROWS:
        raise HarnessError(f"--max-len {args.max_len}: the reference code needs N >= its top-K ({top_k}) and "
                           f"N < its {OFFICIAL_TIME_ROWS} time-embedding rows")
    if args.batch_size < 2:
        raise HarnessError("--batch-size must be >= 2 (the reference heads' BatchNorm trains on batch statistics)")
    args.d_att = sorted(set(args.d_att))
    args.items = sorted(set(args.items))


def throughput(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.attention_dims import FullHistories, ModelRun, timed
    from dare_rec.distributed import init_distributed, shutdown

    _resolve_throughput_args(args)
    repo = Path(args.official_repo).resolve()
    build = load_official_factory(repo)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # TorchRec planner / DDP deprecation notices
    ids = args.ids + (f" (exponent {args.zipf_exponent})" if args.ids == "zipf" else "")
    cases = [ThroughputCase(code, model, d, n) for n in args.items for code in CODES
             for model, d in [*(("dare", d) for d in args.d_att), ("twin", None)]]
    report_json = Path(args.results_dir) / f"vs_official_{args.name}.json"

    env = init_distributed(timeout_s=600)
    device = env.device  # cuda when there is one, as the reference code chooses for itself
    try:
        # The same two batches (per table size) for every configuration of both codes.
        histories = {}
        for n in args.items:
            g = torch.Generator().manual_seed(args.seed)
            histories[n] = [FullHistories.sample(args.batch_size, args.max_len, n, args.categories, g, args.ids,
                                                 args.zipf_exponent) for _ in range(2)]
        runs: Dict[ThroughputCase, Any] = {}
        flags: Dict[str, Any] = {}
        for case in cases:
            print(f"building {case.label()}", flush=True)
            if case.code == "official":
                argv = official_throughput_flags(case.model, case.d_att, case.items, args.categories,
                                                 args.batch_size, args.max_len, args.d_rep)
                runs[case] = OfficialRun(build, argv, [official_batch(h) for h in histories[case.items]], device,
                                         args.seed)
            else:
                argv = (our_throughput_overrides(case.model, case.d_att, args.max_len, args.d_rep)
                        + shlex.split(args.ours))
                runs[case] = ModelRun(argv, case.items, args.categories,
                                      [h.to_batch().to(device) for h in histories[case.items]], device)
            flags[case.label()] = argv

        times: Dict[ThroughputCase, List[List[float]]] = {c: [] for c in cases}
        for round_index in range(args.rounds):
            # Each round starts one configuration further on, so none always runs first or after the same one.
            shift = round_index % len(cases)
            for case in cases[shift:] + cases[:shift]:
                run = runs[case]
                for _ in range(args.warmup):
                    run.train_step()
                times[case].append([timed(run.train_step, device) for _ in range(args.steps)])
                print(f"round {round_index + 1}/{args.rounds} {case.label()}: "
                      f"{args.batch_size / statistics.median(times[case][-1]):,.0f} samples/s", flush=True)
        del runs
    finally:
        shutdown()

    rows = throughput_rows(times, args.batch_size)
    ratios = throughput_ratios(rows)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    report = {
        "benchmark": "vs_official", "mode": "throughput", "name": args.name,
        "command": shlex.join(["python", "-m", "benchmarks.vs_official", *args.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"device": device_name, "platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "versions": {name: metadata.version(name) for name in ("torch", "torchrec")}},
        "official": {"repo": _shown(repo), "code": source_hash(repo, OFFICIAL_SOURCES)},
        "shape": {"batch_size": args.batch_size, "max_len": args.max_len, "top_k": int(OFFICIAL_BASE_FLAGS["-top_k"]),
                  "items": args.items, "categories": args.categories, "d_rep": args.d_rep, "d_att": args.d_att,
                  "histories": "full"},
        "protocol": {"threads": args.threads, "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                     "ids": ids, "seed": args.seed, "device": device.type},
        "ratios": ratios,
        "targets": throughput_targets(ratios),
        "results": rows,
        "arguments": flags,
        "ours": args.ours,
        "sparse_optimizer": load_config(None, shlex.split(args.ours)).train.sparse_optimizer,
    }
    report_json.parent.mkdir(parents=True, exist_ok=True)
    report_json.write_text(json.dumps(report, indent=2) + "\n")
    report_json.with_name(f"vs_official_{args.name}.md").write_text(throughput_markdown(report))
    plot_throughput(report, report_json.with_name(f"vs_official_{args.name}.png"))
    for t in report["targets"]:
        print(f"{t['what']}: {t['value']:.2f} (target >= {t['target']}) {'met' if t['met'] else 'MISSED'}")
    print(f"wrote {report_json} (+ .md, .png)")
    return 0


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vs_official", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    acc = modes.add_parser("accuracy", help="test AUC of both codes on one dataset over seeds",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    acc.add_argument("--results-dir", default=str(RESULTS))
    thr = modes.add_parser("throughput", help="training samples/s of both codes at one shape, per d_att",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    thr.add_argument("--official-repo", required=True,
                     help="a checkout of thuml/DARE (its model is imported from there, unmodified)")
    thr.add_argument("--d-att", type=int, nargs="+", help="DARE's attention dims (default 8 16 32 64)")
    thr.add_argument("--items", type=int, nargs="+",
                     help="item vocabulary sizes incl. padding, every configuration at each (default 1000000)")
    thr.add_argument("--categories", type=int, help="category vocabulary size incl. padding (default 10000)")
    thr.add_argument("--batch-size", type=int, help="B (default 256)")
    thr.add_argument("--max-len", type=int, help="N, every history full (default 200)")
    thr.add_argument("--d-rep", type=int,
                     help="representation dims (item, category, time/position) of both codes; TWIN's d (default 16)")
    thr.add_argument("--steps", type=int, help="timed steps per configuration and round (default 3)")
    thr.add_argument("--rounds", type=int, help="interleaved passes over every configuration (default 5)")
    thr.add_argument("--warmup", type=int, default=1, help="untimed steps before each visit's timed ones")
    thr.add_argument("--threads", type=int, default=2, help="torch threads, both codes (default 2)")
    thr.add_argument("--ids", default="zipf", help="item and category ids: zipf (default) or uniform")
    thr.add_argument("--zipf-exponent", type=float, help="popularity ~ rank^-a (default 1.1)")
    thr.add_argument("--seed", type=int, default=0, help="seed of the batches and of both models' init")
    thr.add_argument("--ours", default="", metavar="OVERRIDES",
                     help="config overrides of our side on top of the defaults, e.g. "
                          "'--train.sparse_optimizer rowwise_adagrad' (recorded in the report)")
    thr.add_argument("--quick", action="store_true",
                     help="defaults of a small shape: d_att 8 16, 20k items, 1k categories, B 64, N 50, 2 x 2 steps")
    thr.add_argument("--name", help="report name: <results-dir>/vs_official_<name>.{json,md,png} "
                                    "(default throughput, or throughput_quick with --quick)")
    thr.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.mode == "accuracy":
        for name in ("batch_size", "epochs", "val_every", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    elif args.name is None:
        args.name = "throughput_quick" if args.quick else "throughput"
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return {"accuracy": accuracy, "throughput": throughput}[args.mode](args)
    except (HarnessError, ConfigError, ValueError) as e:
        print(f"vs_official: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
