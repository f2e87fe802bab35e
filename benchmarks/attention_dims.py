"""Throughput across attention dims: the product's benchmark (same script on CPU and CUDA).

Part ``op`` (this file today): the GSU op alone (``dare_rec.ops.gsu_topk``), forward and forward+backward, for
``d_att`` x N. The op scores the model's attention vectors ``[item; cate]``, so its key width is ``2 * d_att``;
K = 20, B samples per batch. Histories are full (every row N long, as the paper's protocol makes them) or
ragged (``--lengths ragged``: lengths uniform in [1, N]). Each measurement is paired with a memcpy
(``Tensor.copy_``) of the same byte count, taken right after it in the same run:

* op bytes: the least the op must move: forward reads keys, query, bias and offsets and writes scores and the
  top-K; forward+backward also reads the upstream gradient and the keys again and writes the key, query and
  bias gradients;
* bandwidth: bytes / time for both (for the memcpy: bytes copied per second, the usual memcpy figure), so
  ``op / memcpy`` = memcpy time / op time of the same bytes.

Parts ``infer`` and ``train``: the whole model (``dare_rec.modules.model.build_model`` in
DistributedModelParallel with world size 1, fused sparse optimizer, Adam for the dense part, as the training
job builds it) on random batches of full histories (item ids Zipf-distributed, a = 1.1), samples/s of an
evaluation forward and of a training step (forward, backward, optimizer, through TorchRec's
``TrainPipelineSparseDist`` built by the job's ``make_train_pipeline``), DARE for every d_att next to TWIN
at the same d_rep (TWIN has no d_att: one value per N), and peak device memory on CUDA.

Configurations are interleaved (each round visits every configuration; within a configuration the op and its
memcpy alternate) and repeated; the JSON keeps the median and the interquartile range of every timing and of
the per-pair op/memcpy ratio.

    python -m benchmarks.attention_dims --parts op               # CPU, results/attention_dims_cpu.{json,png}
    python -m benchmarks.attention_dims --parts infer train --max-len 200 1000 --output \
        benchmarks/results/attention_dims_cpu_model.json         # model-level parts on CPU (N = 5000 is slow)
    python -m benchmarks.attention_dims --quick                  # every part on a smaller grid, 1 round
    python -m benchmarks.attention_dims --device cuda            # GPU: PyTorch and Triton kernels, every part
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from dare_rec.ops import Kernel, gsu_topk
from benchmarks import SCRATCH

MODEL_PARTS = ("infer", "train")

RESULTS_DIR = SCRATCH  # committed: benchmarks/results (--output)
D_ATTS = (8, 16, 32, 64, 128)
MAX_LENS = (200, 1000, 5000)
TOP_K = 20


@dataclass(frozen=True)
class OpConfig:
    kernel: str
    max_len: int
    d_att: int

    @property
    def width(self) -> int:
        return 2 * self.d_att  # [item; cate] attention vectors


@dataclass
class Timing:
    """Seconds of repeated measurements."""

    samples: List[float]

    def summary(self) -> Dict[str, float]:
        q1, _, q3 = quartiles(self.samples)
        return {"median": statistics.median(self.samples), "q1": q1, "q3": q3, "n": len(self.samples)}


def quartiles(values: Sequence[float]) -> List[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


def make_lengths(batch: int, max_len: int, mode: str, g: torch.Generator) -> torch.Tensor:
    if mode == "full":
        return torch.full((batch,), max_len, dtype=torch.long)
    return torch.randint(1, max_len + 1, (batch,), generator=g)


class OpCase:
    """Inputs, byte counts and memcpy buffers of one (kernel, N, d_att) configuration."""

    def __init__(self, cfg: OpConfig, batch: int, lengths_mode: str, device: torch.device, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths = make_lengths(batch, cfg.max_len, lengths_mode, g)
        self.cfg, self.device, self.batch = cfg, device, batch
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(device)
        total = int(lengths.sum())
        self.keys = torch.randn(total, cfg.width, generator=g).to(device).requires_grad_()
        self.query = torch.randn(batch, cfg.width, generator=g).to(device).requires_grad_()
        self.bias = torch.randn(cfg.max_len + 1, generator=g).to(device).requires_grad_()
        self.upstream = torch.randn(batch, cfg.max_len, generator=g).to(device)
        f = 4  # float32
        k = min(TOP_K, cfg.max_len)
        keys, query, bias, offsets = total * cfg.width * f, batch * cfg.width * f, (cfg.max_len + 1) * f, \
            (batch + 1) * 8
        scores, top = batch * cfg.max_len * f, batch * k * (8 + 1)
        self.forward_bytes = keys + query + bias + offsets + scores + top
        # backward: read the upstream gradient, keys and query again; write key, query and bias gradients
        self.backward_bytes = scores + keys + query + offsets + keys + query + bias
        largest = self.forward_bytes + self.backward_bytes
        self.copy_src = torch.empty(largest // f, device=device)
        self.copy_dst = torch.empty_like(self.copy_src)
        self.copy_src.uniform_()
        self.copy_dst.zero_()  # touch every page now, not inside the first timed copy

    def forward(self) -> None:
        with torch.no_grad():
            gsu_topk(self.keys, self.offsets, self.query, self.bias, TOP_K, self.cfg.max_len,
                     1 / math.sqrt(self.cfg.width), Kernel(self.cfg.kernel))

    def forward_backward(self) -> None:
        out = gsu_topk(self.keys, self.offsets, self.query, self.bias, TOP_K, self.cfg.max_len,
                       1 / math.sqrt(self.cfg.width), Kernel(self.cfg.kernel))
        out.scores.backward(self.upstream)
        self.keys.grad = self.query.grad = self.bias.grad = None

    def memcpy(self, nbytes: int) -> Callable[[], object]:
        n = nbytes // 4
        return lambda: self.copy_dst[:n].copy_(self.copy_src[:n])


def run_op_part(configs: List[OpConfig], args: argparse.Namespace, device: torch.device) -> List[dict]:
    """Rounds x configurations x inner repeats; one result row per configuration."""
    timings: Dict[OpConfig, Dict[str, List[float]]] = {
        c: {"forward": [], "forward_memcpy": [], "forward_backward": [], "forward_backward_memcpy": []}
        for c in configs}
    peak: Dict[OpConfig, int] = {}
    meta: Dict[OpConfig, dict] = {}
    for round_index in range(args.rounds):
        for i, cfg in enumerate(configs):
            case = OpCase(cfg, args.batch_size, args.lengths, device, seed=i)
            meta[cfg] = {"behaviors": int(case.keys.size(0)), "forward_bytes": case.forward_bytes,
                         "forward_backward_bytes": case.forward_bytes + case.backward_bytes}
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            case.forward()  # warm-up (and Triton compilation)
            case.forward_backward()
            case.memcpy(case.forward_bytes + case.backward_bytes)()
            t = timings[cfg]
            for _ in range(args.inner):
                t["forward"].append(timed(case.forward, device))
                t["forward_memcpy"].append(timed(case.memcpy(case.forward_bytes), device))
                t["forward_backward"].append(timed(case.forward_backward, device))
                t["forward_backward_memcpy"].append(
                    timed(case.memcpy(case.forward_bytes + case.backward_bytes), device))
            if device.type == "cuda":
                peak[cfg] = torch.cuda.max_memory_allocated(device)
            del case
            print(f"round {round_index + 1}/{args.rounds} {cfg.kernel} N={cfg.max_len} d_att={cfg.d_att}: "
                  f"fwd {statistics.median(t['forward']) * 1e3:.2f} ms, "
                  f"memcpy {statistics.median(t['forward_memcpy']) * 1e3:.2f} ms", flush=True)
    rows = []
    for cfg in configs:
        t, m = timings[cfg], meta[cfg]
        row = {**asdict(cfg), "key_width": cfg.width, **m}
        for phase, nbytes in (("forward", m["forward_bytes"]), ("forward_backward", m["forward_backward_bytes"])):
            op, copy = Timing(t[phase]).summary(), Timing(t[f"{phase}_memcpy"]).summary()
            pair_ratios = [c / o for o, c in zip(t[phase], t[f"{phase}_memcpy"])]
            q1, med, q3 = quartiles(pair_ratios)[0], statistics.median(pair_ratios), quartiles(pair_ratios)[2]
            row[phase] = {
                "time_s": op, "memcpy_time_s": copy,
                "bytes_per_s": nbytes / op["median"], "memcpy_bytes_per_s": nbytes / copy["median"],
                "fraction_of_memcpy_bandwidth": {"median": med, "q1": q1, "q3": q3},
            }
        if cfg in peak:
            row["peak_memory_bytes"] = peak[cfg]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ModelCase:
    variant: str  # "dare" or "twin"
    kernel: str
    max_len: int
    d_att: Optional[int]  # None for TWIN (one table set of dim d_rep)


ID_DISTRIBUTIONS = ("zipf", "uniform")
ZIPF_EXPONENT = 1.1


def zipf_ids(n: int, vocab: int, g: torch.Generator, exponent: float = ZIPF_EXPONENT) -> torch.Tensor:
    """``n`` ids in [1, vocab) with popularity ~ rank^-exponent (id 0 is padding)."""
    weights = torch.arange(1, vocab, dtype=torch.float64) ** -exponent
    cdf = weights.cumsum(0)
    return torch.searchsorted(cdf / cdf[-1], torch.rand(n, generator=g, dtype=torch.float64)).clamp(max=vocab - 2) + 1


def random_ids(n: int, vocab: int, g: torch.Generator, distribution: str = "zipf",
               zipf_exponent: float = ZIPF_EXPONENT) -> torch.Tensor:
    """``n`` ids in [1, vocab): Zipf-distributed (see :func:`zipf_ids`) or uniform."""
    if distribution == "zipf":
        return zipf_ids(n, vocab, g, zipf_exponent)
    if distribution == "uniform":
        return torch.randint(1, vocab, (n,), generator=g)
    raise ValueError(f"id distribution {distribution!r}: choose one of {ID_DISTRIBUTIONS}")


@dataclass
class FullHistories:
    """The ids of B random samples whose histories are all N long (the paper's protocol cuts every history at N).

    Attributes:
        hist_items, hist_cates: ``[B, N]`` int64, oldest -> newest.
        target_items, target_cates: ``[B]`` int64.
        labels: ``[B]`` float32, 0 or 1.
    """

    hist_items: torch.Tensor
    hist_cates: torch.Tensor
    target_items: torch.Tensor
    target_cates: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def sample(batch: int, max_len: int, num_items: int, num_categories: int, g: torch.Generator,
               distribution: str = "zipf", zipf_exponent: float = ZIPF_EXPONENT) -> "FullHistories":
        def ids(n: int, vocab: int) -> torch.Tensor:
            return random_ids(n, vocab, g, distribution, zipf_exponent)

        return FullHistories(hist_items=ids(batch * max_len, num_items).view(batch, max_len),
                             hist_cates=ids(batch * max_len, num_categories).view(batch, max_len),
                             target_items=ids(batch, num_items), target_cates=ids(batch, num_categories),
                             labels=torch.randint(0, 2, (batch,), generator=g).float())

    def to_batch(self):
        """The training batch (the dataset contract's KJT keys, :class:`dare_rec.data.batch.Batch`)."""
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        from dare_rec.data.batch import SPARSE_KEYS, Batch

        batch, max_len = self.hist_items.shape
        hist = torch.full((batch,), max_len)
        target = torch.ones(batch, dtype=torch.long)
        values = torch.cat([self.hist_items.flatten(), self.hist_cates.flatten(), self.target_items,
                            self.target_cates])
        features = KeyedJaggedTensor.from_lengths_sync(list(SPARSE_KEYS), values,
                                                       torch.cat([hist, hist, target, target]))
        return Batch(sparse_features=features, labels=self.labels, user_ids=torch.arange(batch))


def random_batch(batch: int, max_len: int, num_items: int, num_categories: int, g: torch.Generator):
    """A training batch of full histories with Zipf ids."""
    return FullHistories.sample(batch, max_len, num_items, num_categories, g).to_batch()


def model_overrides(case: ModelCase, d_rep: int, lookup: str = "auto", bounds_check: bool = False) -> List[str]:
    """Config overrides of one model case (on top of the defaults)."""
    d_att = case.d_att if case.d_att is not None else d_rep
    return ["--model.variant", case.variant, "--model.d_att", str(d_att), "--model.d_rep", str(d_rep),
            "--model.top_k", str(TOP_K), "--model.op_kernel", case.kernel, "--data.max_len", str(case.max_len),
            "--sharding.lookup", lookup, "--sharding.bounds_check", str(bounds_check).lower()]


class ModelRun:
    """One model built like the training job: ``build_model`` -> fused sparse optimizer -> DMP (world size 1,
    the process group must exist) -> dense optimizer, trained through TorchRec's ``TrainPipelineSparseDist``
    (as ``pipelines/train.py`` does) on ``batches`` in turn.

    Args:
        overrides: ``--section.field value`` tokens on top of the config defaults.
        num_items, num_categories: vocabulary sizes including padding id 0.
        batches: the batches the steps cycle through (already on ``device``).
    """

    def __init__(self, overrides: Sequence[str], num_items: int, num_categories: int, batches: Sequence,
                 device: torch.device) -> None:
        from dare_rec.pipelines.train import make_train_pipeline

        from dare_rec.config import load_config
        from dare_rec.modules.model import build_model
        from dare_rec.optim import apply_sparse_optimizer, build_optimizer
        from dare_rec.sharding.planner import shard_model

        cfg = load_config(None, list(overrides))
        torch.manual_seed(0)
        model = build_model(cfg, num_items, num_categories, torch.device("meta"), device)
        apply_sparse_optimizer(model, cfg.train, device)
        self.model = shard_model(model, cfg, device, world_size=1, local_world_size=1)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.batches = list(batches)
        self.pipeline = make_train_pipeline("sparse_dist", self.model, self.optimizer, device)  # as the job builds it
        self._stream = itertools.cycle(self.batches)
        self.step_index = 0

    def next_batch(self):
        self.step_index += 1
        return self.batches[self.step_index % len(self.batches)]

    def train_step(self) -> None:
        """Forward, backward and optimizer step of the next batch (the pipeline holds the following ones)."""
        self.pipeline.progress(self._stream)

    def infer_step(self) -> None:
        # The pipeline rewrote the sharded modules' forward; detached, the plain model runs (progress()
        # attaches it again, keeping its in-flight batches).
        self.pipeline.detach()
        self.model.eval()
        with torch.no_grad():
            self.model(self.next_batch())
        self.model.train()


def run_model_parts(cases: List[ModelCase], parts: List[str], args: argparse.Namespace,
                    device: torch.device) -> List[dict]:
    """Per N: every case built once, then rounds x cases x inner steps of each part (interleaved)."""
    from dare_rec.distributed import init_distributed

    init_distributed(timeout_s=600)
    rows = []
    for max_len in sorted({c.max_len for c in cases}):
        runs = {}
        for case in (c for c in cases if c.max_len == max_len):
            g = torch.Generator().manual_seed(1)
            batches = [random_batch(args.model_batch_size, max_len, args.num_items, args.num_categories, g).to(device)
                       for _ in range(2)]
            runs[case] = ModelRun(model_overrides(case, args.d_rep, args.lookup, args.bounds_check), args.num_items,
                                  args.num_categories, batches, device)
        times: Dict[ModelCase, Dict[str, List[float]]] = {c: {p: [] for p in parts} for c in runs}
        peak: Dict[ModelCase, int] = {}
        for round_index in range(args.rounds):
            for case, run in runs.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for part in parts:
                    step = run.train_step if part == "train" else run.infer_step
                    step()  # warm-up
                    times[case][part].extend(timed(step, device) for _ in range(args.inner))
                if device.type == "cuda":
                    peak[case] = max(peak.get(case, 0), torch.cuda.max_memory_allocated(device))
                print(f"round {round_index + 1}/{args.rounds} {case.variant} N={max_len} d_att={case.d_att}: " +
                      ", ".join(f"{p} {args.model_batch_size / statistics.median(times[case][p]):,.0f} samples/s"
                                for p in parts), flush=True)
        for case in runs:
            row = {**asdict(case), "d_rep": args.d_rep, "batch_size": args.model_batch_size}
            for part in parts:
                summary = Timing(times[case][part]).summary()
                row[part] = {"step_time_s": summary, "samples_per_s": args.model_batch_size / summary["median"]}
            row["peak_memory_bytes"] = peak.get(case)
            rows.append(row)
        del runs
    return rows


def plot_model(rows: List[dict], parts: List[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4.6), squeeze=False)
    for ax, part in zip(axes[0], parts):
        for n in sorted({r["max_len"] for r in rows}):
            for kernel in sorted({r["kernel"] for r in rows}):
                dare = sorted((r for r in rows if r["variant"] == "dare" and r["max_len"] == n
                               and r["kernel"] == kernel), key=lambda r: r["d_att"])
                if not dare:
                    continue
                line, = ax.plot([r["d_att"] for r in dare], [r[part]["samples_per_s"] for r in dare], marker="o",
                                label=f"DARE N={n} {kernel}")
                for twin in (r for r in rows if r["variant"] == "twin" and r["max_len"] == n and r["kernel"] == kernel):
                    ax.axhline(twin[part]["samples_per_s"], color=line.get_color(), ls="--", lw=1,
                               label=f"TWIN N={n} {kernel} (d {twin['d_rep']})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("d_att")
        ax.set_title(f"{'inference' if part == 'infer' else 'training'} samples/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def acceptance(rows: List[dict]) -> Dict[str, dict]:
    """The issue's op-level acceptance numbers, per kernel: forward time ratio d_att 32 / 128 at the largest N,
    and the forward's fraction of the memcpy bandwidth at d_att 64 and the largest N."""
    out: Dict[str, dict] = {}
    for kernel in sorted({r["kernel"] for r in rows}):
        mine = [r for r in rows if r["kernel"] == kernel]
        n = max(r["max_len"] for r in mine)
        at = {r["d_att"]: r for r in mine if r["max_len"] == n}
        entry: dict = {"max_len": n}
        if 32 in at and 128 in at:
            entry["forward_time_d32_over_d128"] = \
                at[32]["forward"]["time_s"]["median"] / at[128]["forward"]["time_s"]["median"]
        if 64 in at:
            entry["forward_fraction_of_memcpy_bandwidth_d64"] = \
                at[64]["forward"]["fraction_of_memcpy_bandwidth"]["median"]
        out[kernel] = entry
    return out


def plot(rows: List[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    kernels = sorted({r["kernel"] for r in rows})
    styles = {k: s for k, s in zip(kernels, ("-", "--", ":"))}
    for n in sorted({r["max_len"] for r in rows}):
        for kernel in kernels:
            mine = sorted((r for r in rows if r["max_len"] == n and r["kernel"] == kernel), key=lambda r: r["d_att"])
            if not mine:
                continue
            x = [r["d_att"] for r in mine]
            label = f"N={n}" + (f" {kernel}" if len(kernels) > 1 else "")
            for ax, phase in zip(axes[:2], ("forward", "forward_backward")):
                med = [r[phase]["time_s"]["median"] * 1e3 for r in mine]
                lo = [r[phase]["time_s"]["q1"] * 1e3 for r in mine]
                hi = [r[phase]["time_s"]["q3"] * 1e3 for r in mine]
                line, = ax.plot(x, med, styles[kernel], marker="o", label=label)
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
            frac = [r["forward"]["fraction_of_memcpy_bandwidth"]["median"] for r in mine]
            axes[2].plot(x, frac, styles[kernel], marker="o", label=label)
    for ax, name in zip(axes, ("GSU forward (ms)", "GSU forward + backward (ms)",
                               "forward bytes/s / memcpy bytes/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("d_att (key width 2 * d_att)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def default_kernels(device: torch.device) -> List[str]:
    return [Kernel.PYTORCH.value] + ([Kernel.TRITON.value] if device.type == "cuda" else [])


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", nargs="+", default=["op", *MODEL_PARTS], choices=["op", *MODEL_PARTS])
    parser.add_argument("--d-att", type=int, nargs="+", default=list(D_ATTS))
    parser.add_argument("--max-len", type=int, nargs="+", default=list(MAX_LENS))
    parser.add_argument("--kernels", nargs="+", choices=[k.value for k in Kernel if k != Kernel.AUTO],
                        help="default: pytorch on CPU, pytorch and triton on CUDA")
    parser.add_argument("--batch-size", type=int, default=64, help="B of the op part")
    parser.add_argument("--lengths", choices=["full", "ragged"], default="full", help="histories of the op part")
    parser.add_argument("--model-batch-size", type=int, default=256, help="B of the model parts")
    parser.add_argument("--bounds-check", action="store_true",
                        help="sharding.bounds_check true: FBGEMM checks every looked-up id (off in the job's default)")
    parser.add_argument("--lookup", default="auto", choices=["auto", "singleton_bags", "sequence"],
                        help="sharding.lookup of the model parts (auto: the job's default for the device)")
    parser.add_argument("--d-rep", type=int, default=64, help="representation dim of DARE and TWIN")
    parser.add_argument("--num-items", type=int, default=100_000)
    parser.add_argument("--num-categories", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="passes over every configuration")
    parser.add_argument("--inner", type=int, default=3, help="op/memcpy pairs per configuration and round")
    parser.add_argument("--quick", action="store_true", help="d_att 8/32/128, N 200/1000, 1 round")
    parser.add_argument("--output", help="JSON path (default runs/benchmarks/attention_dims_<device>[_ragged].json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.d_att, args.max_len, args.rounds, args.inner = [8, 32, 128], [200, 1000], 1, 2
        args.model_batch_size = min(args.model_batch_size, 64)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # TorchRec planner / DDP deprecation notices
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    kernels = args.kernels or default_kernels(device)
    model_parts = [p for p in args.parts if p in MODEL_PARTS]
    suffix = device.type + ("" if args.lengths == "full" else f"_{args.lengths}")
    output = Path(args.output) if args.output else RESULTS_DIR / f"attention_dims_{suffix}.json"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    threads = f"{torch.get_num_threads()} thread(s)"
    result: dict = {
        "benchmark": "attention_dims",
        "command": " ".join(["python -m benchmarks.attention_dims", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d"),
        "device": {"type": device.type, "name": device_name, "cpus": os.cpu_count(),
                   "threads": torch.get_num_threads(), "platform": platform.platform()},
        "versions": {name: metadata.version(name) for name in ("torch", "torchrec")},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    if "op" in args.parts:
        rows = run_op_part([OpConfig(k, n, d) for k in kernels for n in args.max_len for d in args.d_att],
                           args, device)
        result["op"] = {"batch_size": args.batch_size, "top_k": TOP_K, "lengths": args.lengths,
                        "rounds": args.rounds, "inner": args.inner, "key_width": "2 * d_att", "dtype": "float32",
                        "results": rows}
        result["acceptance"] = acceptance(rows)
        plot(rows, output.with_suffix(".png"),
             f"GSU op, B={args.batch_size}, K={TOP_K}, {args.lengths} histories, {device_name}, {threads}")
        for kernel, entry in result["acceptance"].items():
            print(f"{kernel}: {entry}")
    if model_parts:
        cases = [ModelCase(variant, k, n, d) for k in kernels for n in args.max_len
                 for variant, d in [*(("dare", d) for d in args.d_att), ("twin", None)]]
        rows = run_model_parts(cases, model_parts, args, device)
        result["model"] = {"batch_size": args.model_batch_size, "d_rep": args.d_rep, "num_items": args.num_items,
                           "num_categories": args.num_categories, "top_k": TOP_K, "rounds": args.rounds,
                           "lookup": args.lookup, "bounds_check": args.bounds_check, "inner": args.inner,
                           "histories": "full, item ids Zipf(1.1)", "results": rows}
        model_png = output.with_name(output.stem + "_model.png") if "op" in args.parts else output.with_suffix(".png")
        plot_model(rows, model_parts, model_png,
                   f"DARE vs TWIN (d_rep {args.d_rep}), B={args.model_batch_size}, {args.num_items:,} items, "
                   f"{device_name}, {threads}")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output} (+ PNG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
