"""Many candidates per user at inference: candidates/s of ``DareModel.score_candidates`` (the user side read
once, one ``[C, N]`` search) for DARE and TWIN, next to the evaluation forward on C samples that each carry
the whole history (what scoring the candidates as ordinary samples costs).

Models as the defaults build them (exact tables on CPU, no sharding: a serving process), DARE d_att 16 /
d_rep 64 and TWIN d 64, 100k items, 10k categories, K = 20; histories of exactly N behaviors with Zipf item
ids; C candidates per user. Cases are interleaved over ``--rounds`` rounds of ``--repeats`` calls each; the
JSON keeps medians and quartiles of the per-call time, and candidates/s = C / median time.

``--topk row torch`` runs every case twice, with the search's top-K as shipped (:func:`dare_rec.ops.row_topk`)
and with plain ``torch.topk`` in its place (the A/B of that change, interleaved in one run).

    python -m benchmarks.candidates --output benchmarks/results/candidates_cpu.json --topk row torch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from benchmarks import SCRATCH
from benchmarks.attention_dims import random_ids

RESULTS = SCRATCH / "candidates_cpu.json"  # committed: benchmarks/results (--output)
MODELS = {"DARE d_att 16": ["--model.variant", "dare", "--model.d_att", "16", "--model.d_rep", "64"],
          "TWIN d 64": ["--model.variant", "twin", "--model.d_rep", "64"]}
NUM_ITEMS, NUM_CATEGORIES = 100_000, 10_000
# The modules that call row_topk (their own name for it is what the "torch" arm replaces).
TOPK_CALLERS = ("dare_rec.modules.search", "dare_rec.ops.pytorch.pt_gsu_topk", "dare_rec.ops.pytorch.pt_jagged_topk")


def with_torch_topk(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with ``torch.topk`` in place of ``row_topk`` for the duration of each call."""
    import importlib

    modules = [importlib.import_module(name) for name in TOPK_CALLERS]

    def run():
        saved = [m.row_topk for m in modules]
        for m in modules:
            m.row_topk = lambda values, k: values.topk(k, dim=1)
        try:
            return fn()
        finally:
            for m, original in zip(modules, saved):
                m.row_topk = original
    return run


def build(overrides: List[str], max_len: int):
    from dare_rec.config import load_config
    from dare_rec.modules.model import build_model

    cfg = load_config(None, [*overrides, "--data.max_len", str(max_len), "--model.top_k", "20"])
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    return build_model(cfg, NUM_ITEMS, NUM_CATEGORIES, cpu, cpu).model.eval()


def replicated_forward(model, hist_item, hist_cate, cand_item, cand_cate) -> Callable[[], object]:
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from dare_rec.data import schema

    num, length = cand_item.numel(), hist_item.numel()
    lengths = torch.full((num,), length, dtype=torch.int32)
    ones = torch.ones(num, dtype=torch.int32)
    features = KeyedJaggedTensor(
        keys=[schema.HIST_ITEM, schema.HIST_CATE, schema.TARGET_ITEM, schema.TARGET_CATE],
        values=torch.cat([hist_item.repeat(num), hist_cate.repeat(num), cand_item, cand_cate]),
        lengths=torch.cat([lengths, lengths, ones, ones]))

    def run():
        with torch.no_grad():
            return model(features).logits
    return run


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-len", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="calls per case and round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topk", nargs="+", choices=["row", "torch"], default=["row"],
                        help="the search's top-K: row (dare_rec.ops.row_topk, shipped), torch (torch.topk)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    cases: Dict[str, Callable[[], object]] = {}
    for n in args.max_len:
        hist_item = random_ids(n, NUM_ITEMS, g)
        hist_cate = random_ids(n, NUM_CATEGORIES, g)
        cand_item = random_ids(args.candidates, NUM_ITEMS, g)
        cand_cate = random_ids(args.candidates, NUM_CATEGORIES, g)
        for name, overrides in MODELS.items():
            model = build(overrides, n)
            calls = {"score_candidates": lambda m=model, a=(hist_item, hist_cate, cand_item, cand_cate):
                     m.score_candidates(*a),
                     "replicated forward": replicated_forward(model, hist_item, hist_cate, cand_item, cand_cate)}
            for path, fn in calls.items():
                for topk in args.topk:
                    cases[f"{name}, N={n}, {path}, {topk}"] = fn if topk == "row" else with_torch_topk(fn)
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for round_index in range(args.rounds):
        for name, fn in cases.items():
            fn()  # warm-up
            for _ in range(args.repeats):
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
            print(f"round {round_index + 1}/{args.rounds} {name}: "
                  f"{args.candidates / statistics.median(times[name]):,.0f} candidates/s", flush=True)
    rows = []
    for name, values in times.items():
        model, n, path, topk = name.split(", ")
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        rows.append({"model": model, "max_len": int(n[2:]), "path": path, "topk": topk, "candidates": args.candidates,
                     "seconds": {"median": statistics.median(values), "q1": q[0], "q3": q[2]},
                     "candidates_per_s": args.candidates / statistics.median(values)})
    by = {(r["model"], r["max_len"], r["path"], r["topk"]): r["candidates_per_s"] for r in rows}
    paths = tuple(calls)
    ratios = {f"N={n}, {path}, {topk}": by[("DARE d_att 16", n, path, topk)] / by[("TWIN d 64", n, path, topk)]
              for n in args.max_len for path in paths for topk in args.topk}
    # the A/B: candidates/s with row_topk over candidates/s with torch.topk, per model and path
    topk_speedups = {f"{model}, N={n}, {path}": by[(model, n, path, "row")] / by[(model, n, path, "torch")]
                     for model in MODELS for n in args.max_len for path in paths} if len(args.topk) == 2 else {}
    result = {"benchmark": "candidates", "command": " ".join(["python -m benchmarks.candidates",
                                                              *(argv if argv is not None else sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "threads": args.threads, "torch": metadata.version("torch"),
              "torchrec": metadata.version("torchrec"), "rows": rows, "dare_over_twin": ratios,
              "row_topk_over_torch_topk": topk_speedups}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['model']:>14}  N={r['max_len']:>6}  {r['path']:>18}  {r['topk']:>5}: "
              f"{r['candidates_per_s']:10,.0f} candidates/s")
    for key, ratio in ratios.items():
        print(f"DARE / TWIN at {key}: {ratio:.2f}x")
    for key, ratio in topk_speedups.items():
        print(f"row_topk / torch.topk at {key}: {ratio:.2f}x")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
