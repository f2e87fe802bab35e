"""Throughput: training samples/s of both codes at one shape, in one process, interleaved::

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
import itertools
import json
import os
import platform
import shlex
import statistics
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.vs_official.reference import (OFFICIAL_BASE_FLAGS, OFFICIAL_MODELS, OFFICIAL_SOURCES,
                                              HarnessError, load_official_factory, script_argv, shown_path,
                                              source_hash)
from benchmarks import SCRATCH
from dare_rec.config import load_config

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
TARGET_VS_OFFICIAL = {16: 4.0, 64: 8.0}  # issue 14 (issue 9 asked 3x at d_att 16)
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
    return script_argv(flags)


def our_throughput_overrides(model: str, d_att: Optional[int], max_len: int, d_rep: int) -> List[str]:
    """Our config overrides for one configuration (defaults otherwise): representation dims (item, category,
    position) ``d_rep``; DARE's attention dims (item, category and, like the reference, position) ``d_att``."""
    overrides = ["--model.variant", model, "--model.d_rep", str(d_rep), "--model.d_pos", str(d_rep),
                 "--model.top_k", OFFICIAL_BASE_FLAGS["-top_k"], "--model.aux_loss", "true",
                 "--data.max_len", str(max_len)]
    if d_att is not None:
        overrides += ["--model.d_att", str(d_att), "--model.d_pos_att", str(d_att)]
    return overrides



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
        lines += ["**Targets** (issues 9 and 14; this run):", ""]
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
        "official": {"repo": shown_path(repo), "code": source_hash(repo, OFFICIAL_SOURCES)},
        # sha256 of each batch's history item ids (int64): the ids both codes were given
        "batches": {str(n): [hashlib.sha256(h.hist_items.numpy().astype(np.int64).tobytes()).hexdigest()
                             for h in batches] for n, batches in histories.items()},
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




def add_arguments(thr: argparse.ArgumentParser) -> None:
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
    thr.add_argument("--results-dir", default=str(SCRATCH),
                     help="report folder (the committed reports: benchmarks/results)")


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.name is None:
        args.name = "throughput_quick" if args.quick else "throughput"
