"""Why the training step slows down with table rows: the sparse lookup + fused update alone, per candidate.

One table set as the model has it (an item table of ``rows`` rows and a 10k-row category table, dim 16, each
shared by the history and the target feature), DistributedModelParallel with world size 1, fused row-wise
Adagrad applied in the backward pass. One step = lookup of B * (N + 1) ids per table + backward with the
update. Candidates, interleaved and repeated in one run:

* ``ec``: the model's layout today: an EmbeddingCollection (sequence lookup; FBGEMM's "nobag" kernels).
* ``ec_sgd``: the same with the in-backward optimizer EXACT_SGD instead (other math, to show the cost does not
  come from the optimizer).
* ``ebc_singleton_bags``: an EmbeddingBagCollection in which every id is its own SUM bag (FBGEMM's pooled
  kernels): the same forward output and the same row-wise Adagrad update (``--check`` compares the weights
  after a few steps with ``ec``).

``EmbeddingCollectionSharder(use_index_dedup=True)`` is not a candidate: on CPU its input dist fails
(``fbgemm::jagged_unique_indices`` has no CPU kernel in FBGEMM 1.8), and it would not help (see the notes).

    python -m benchmarks.table_rows                 # rows 10k / 100k / 1M, JSON to benchmarks/results/
    python -m benchmarks.table_rows --quick
    python -m benchmarks.table_rows --check         # same-math check: ec vs ebc_singleton_bags
    python -m benchmarks.table_rows --profile       # top ops per candidate at the largest table

Findings are in ``benchmarks/results/profile_notes.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from benchmarks import SCRATCH

RESULTS = SCRATCH / "table_rows.json"  # committed: benchmarks/results (--output)
DIM = 16
CATEGORIES = 10_000
LR = 0.05
CANDIDATES = ("ec", "ec_sgd", "ebc_singleton_bags")


class Lookup(nn.Module):
    """One candidate: ``forward(hist_item, hist_cate, target_item, target_cate, lengths) -> loss`` (a fixed
    linear function of every looked-up vector, so the backward pass updates every looked-up row)."""

    def __init__(self, candidate: str, rows: int) -> None:
        super().__init__()
        self.pooled = candidate == "ebc_singleton_bags"
        if self.pooled:
            self.tables = EmbeddingBagCollection(tables=[
                EmbeddingBagConfig(name="item", num_embeddings=rows, embedding_dim=DIM, feature_names=["item"],
                                   pooling=PoolingType.SUM),
                EmbeddingBagConfig(name="cate", num_embeddings=CATEGORIES, embedding_dim=DIM,
                                   feature_names=["cate"], pooling=PoolingType.SUM),
            ], device=torch.device("meta"))
        else:
            self.tables = EmbeddingCollection(tables=[
                EmbeddingConfig(name="item", num_embeddings=rows, embedding_dim=DIM,
                                feature_names=["hist_item", "target_item"]),
                EmbeddingConfig(name="cate", num_embeddings=CATEGORIES, embedding_dim=DIM,
                                feature_names=["hist_cate", "target_cate"]),
            ], device=torch.device("meta"))

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        if self.pooled:
            vectors = self.tables(features).values()  # [ids, 2 * DIM]: one bag per id, item | cate
        else:
            looked_up = self.tables(features)
            vectors = torch.cat([looked_up[k].values() for k in looked_up.keys()], dim=0)
        return (vectors * 1e-3).sum()


def shard(module: Lookup, candidate: str) -> DistributedModelParallel:
    optimizer = torch.optim.SGD if candidate == "ec_sgd" else RowWiseAdagrad
    apply_optimizer_in_backward(optimizer, module.tables.parameters(), {"lr": LR})
    sharder = EmbeddingBagCollectionSharder() if module.pooled else EmbeddingCollectionSharder()
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=1, compute_device="cpu"),
        constraints={name: ParameterConstraints(sharding_types=["table_wise"]) for name in ("item", "cate")})
    plan = planner.plan(module, [sharder])
    return DistributedModelParallel(module, device=torch.device("cpu"), plan=plan, sharders=[sharder])


def make_features(candidate: str, rows: int, batch: int, max_len: int, g: torch.Generator) -> KeyedJaggedTensor:
    """A batch of full histories (N ids each) plus one target per sample, ids uniform over the table."""
    hist_item = torch.randint(1, rows, (batch * max_len,), generator=g)
    hist_cate = torch.randint(1, CATEGORIES, (batch * max_len,), generator=g)
    target_item = torch.randint(1, rows, (batch,), generator=g)
    target_cate = torch.randint(1, CATEGORIES, (batch,), generator=g)
    if candidate == "ebc_singleton_bags":
        items, cates = torch.cat([hist_item, target_item]), torch.cat([hist_cate, target_cate])
        return KeyedJaggedTensor.from_lengths_sync(["item", "cate"], torch.cat([items, cates]),
                                                   torch.ones(2 * items.numel(), dtype=torch.long))
    hist_lengths, target_lengths = torch.full((batch,), max_len), torch.ones(batch, dtype=torch.long)
    return KeyedJaggedTensor.from_lengths_sync(
        ["hist_item", "target_item", "hist_cate", "target_cate"],
        torch.cat([hist_item, target_item, hist_cate, target_cate]),
        torch.cat([hist_lengths, target_lengths, hist_lengths, target_lengths]))


def step(model: nn.Module, features: KeyedJaggedTensor) -> None:
    model(features).backward()  # the fused optimizer updates the tables inside the backward pass


def build(candidate: str, rows: int, seed: int = 0) -> DistributedModelParallel:
    torch.manual_seed(seed)
    return shard(Lookup(candidate, rows), candidate)


def table_weights(model: DistributedModelParallel) -> Dict[str, torch.Tensor]:
    return {k.rsplit(".", 2)[-2]: v.local_shards()[0].tensor.clone()
            for k, v in model.state_dict().items() if k.endswith(".weight")}


def check_same_math(rows: int, batch: int, max_len: int, steps: int = 3) -> Dict[str, float]:
    """ec vs ebc_singleton_bags from identical weights on identical ids: max weight difference after ``steps``."""
    ec, ebc = build("ec", rows), build("ebc_singleton_bags", rows)
    ebc.load_state_dict({k.replace("embeddings.", "embedding_bags."): v for k, v in ec.state_dict().items()})
    for s in range(steps):
        step(ec, make_features("ec", rows, batch, max_len, torch.Generator().manual_seed(s)))
        step(ebc, make_features("ebc_singleton_bags", rows, batch, max_len, torch.Generator().manual_seed(s)))
    a, b = table_weights(ec), table_weights(ebc)
    return {name: float((a[name] - b[name]).abs().max()) for name in a}


def time_steps(models: Dict[str, nn.Module], feature_sets: Dict[str, List[KeyedJaggedTensor]], repeats: int,
               timer: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Interleaved: every repeat runs one step of every model in turn (one warm-up step each first)."""
    for name, model in models.items():
        step(model, feature_sets[name][0])
    times: Dict[str, List[float]] = {name: [] for name in models}
    for r in range(repeats):
        for name, model in models.items():
            features = feature_sets[name][r % len(feature_sets[name])]
            started = timer()
            step(model, features)
            times[name].append(timer() - started)
    return times


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="rows 10k / 100k, 3 repeats")
    parser.add_argument("--check", action="store_true", help="only the same-math check (ec vs singleton bags)")
    parser.add_argument("--profile", action="store_true", help="only print the top ops per candidate")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.quick:
        args.rows, args.repeats = [10_000, 100_000], 3
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        if args.check:
            diffs = check_same_math(max(args.rows), args.batch_size, args.max_len)
            print(f"max |weight difference| ec vs ebc_singleton_bags after 3 steps: {diffs}")
            return 0
        if args.profile:
            return profile(args)
        return sweep(args, sys.argv[1:] if argv is None else argv)
    finally:
        dist.destroy_process_group()


def profile(args: argparse.Namespace) -> int:
    from torch.profiler import profile as torch_profile

    rows = max(args.rows)
    for candidate in args.candidates:
        model = build(candidate, rows)
        features = make_features(candidate, rows, args.batch_size, args.max_len, torch.Generator().manual_seed(0))
        step(model, features)
        with torch_profile() as prof:
            step(model, features)
        print(f"== {candidate}, {rows:,} rows")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=70))
    return 0


def sweep(args: argparse.Namespace, argv: List[str]) -> int:
    g = torch.Generator().manual_seed(0)
    models, feature_sets = {}, {}
    for rows in args.rows:
        for candidate in args.candidates:
            key = f"{candidate}@{rows}"
            models[key] = build(candidate, rows)
            feature_sets[key] = [make_features(candidate, rows, args.batch_size, args.max_len, g) for _ in range(3)]
    times = time_steps(models, feature_sets, args.repeats)
    results = []
    for key, ts in times.items():
        candidate, rows = key.split("@")
        unique = int(torch.unique(feature_sets[key][0].values()[: args.batch_size * (args.max_len + 1)]).numel())
        median = statistics.median(ts)
        results.append({"candidate": candidate, "rows": int(rows), "median_ms": median * 1e3,
                        "q1_ms": statistics.quantiles(ts, n=4)[0] * 1e3 if len(ts) > 1 else median * 1e3,
                        "q3_ms": statistics.quantiles(ts, n=4)[2] * 1e3 if len(ts) > 1 else median * 1e3,
                        "steps_per_s": 1 / median, "unique_item_ids_per_step": unique, "repeats": len(ts)})
    print(f"{'candidate':<20} {'rows':>10} {'median ms':>10} {'IQR ms':>15} {'unique item ids':>16}")
    for r in results:
        print(f"{r['candidate']:<20} {r['rows']:>10,} {r['median_ms']:>10.1f} "
              f"{r['q1_ms']:>7.1f}-{r['q3_ms']:<7.1f} {r['unique_item_ids_per_step']:>16,}")
    big, small = max(args.rows), sorted(args.rows)[-2] if len(args.rows) > 1 else max(args.rows)
    by = {(r["candidate"], r["rows"]): r for r in results}
    ratios = {c: by[(c, big)]["steps_per_s"] / by[(c, small)]["steps_per_s"] for c in args.candidates}
    for c, ratio in ratios.items():
        print(f"{c}: steps/s at {big:,} rows / at {small:,} rows = {ratio:.2f}")
    out = {
        "benchmark": "table_rows",
        "command": " ".join(["python -m benchmarks.table_rows", *argv]),
        "date": time.strftime("%Y-%m-%d"),
        "shape": {"batch_size": args.batch_size, "max_len": args.max_len, "dim": DIM, "categories": CATEGORIES,
                  "ids": "uniform over the table, full histories"},
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": torch.cuda.is_available()},
        "versions": {name: metadata.version(name) for name in ("torch", "torchrec", "fbgemm-gpu-cpu")},
        "results": results,
        "ratio_largest_to_second_largest_rows": ratios,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
