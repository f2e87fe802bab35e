"""Throughput cost of ``train.deterministic``: samples/s of the training step with it on and off, side by side.

For every (processes, threads) setting, one job (``torchrun -m benchmarks.determinism_cost --worker``) builds
the real model, optimizer, reader and TorchRec train pipeline once, warms up, then trains blocks of
``--steps`` steps, switching ``torch.use_deterministic_algorithms`` between blocks in the interleaved order
on, off, off, on, ... (``--blocks`` blocks per mode), so both modes see the same process, data, caches and
machine load. Each block is timed between barriers and ends with a host sync. Reports per setting the median
samples/s of each mode, every block's value, and the ratio of the medians, in wall-clock time and in CPU time
(all ranks' process CPU seconds: steadier than wall time on a shared machine); results go to
``benchmarks/results/determinism_cost.json``.

    python -m benchmarks.determinism_cost --config configs/synthetic.yaml --steps 5 --blocks 10

The dataset at ``data.path`` (or ``--data``) must exist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import List
from benchmarks import SCRATCH

RESULTS = SCRATCH / "determinism_cost.json"  # committed: benchmarks/results (--output)
# (processes, threads per process): 1 x 2, where multi-threaded kernels (and their atomics) run, and the
# demo's 2 x 1.
SETTINGS = [(1, 2), (2, 1)]
WARMUP_STEPS = 5


def worker(config: str, overrides: List[str], steps: int, blocks: int, output: str) -> None:
    import torch
    import torch.distributed as dist
    from dare_rec.pipelines.train import make_train_pipeline

    from dare_rec.config import load_config
    from dare_rec.data.parquet import ParquetBatchReader
    from dare_rec.data.schema import DatasetMeta
    from dare_rec.distributed import init_distributed, shutdown
    from dare_rec.optim import build_optimizer
    from dare_rec.pipelines.common import build_sharded_model, set_determinism

    cfg = load_config(config, overrides)
    meta = DatasetMeta.read(cfg.data.path)
    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        model = build_sharded_model(cfg, meta, env)
        pipeline = make_train_pipeline("sparse_dist", model, build_optimizer(model, cfg.train), env.device)
        reader = ParquetBatchReader(cfg.data.path, "train", cfg.data.batch_size, cfg.data.max_len, rank=env.rank,
                                    world_size=env.world_size, shuffle=True, drop_last=True, seed=cfg.train.seed,
                                    **cfg.model.reader_inputs())
        stream = (batch for epoch in range(10**6) for batch in reader.epoch(epoch))
        for _ in range(WARMUP_STEPS):
            pipeline.progress(stream)
        order = [mode for i in range(blocks) for mode in ((True, False) if i % 2 == 0 else (False, True))]
        rates = {True: [], False: []}
        cpu = {True: [], False: []}
        for mode in order:
            set_determinism(mode)
            dist.barrier()
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss, _, _ = pipeline.progress(stream)
            loss.item()
            cpu_s = torch.tensor([time.process_time() - cpu_started], dtype=torch.float64)
            dist.all_reduce(cpu_s)
            dist.barrier()
            samples = steps * cfg.data.batch_size * env.world_size
            rates[mode].append(samples / (time.perf_counter() - started))
            cpu[mode].append(samples / cpu_s.item())
        stream.close()
        if env.is_main:
            Path(output).write_text(json.dumps({"deterministic": rates[True], "default": rates[False],
                                                "cpu_deterministic": cpu[True], "cpu_default": cpu[False]}))
    finally:
        shutdown()


def run_setting(config: str, procs: int, threads: int, steps: int, blocks: int, extra: List[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rates.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "benchmarks.determinism_cost", "--worker", "--config", config, "--steps", str(steps),
               "--blocks", str(blocks), "--output", str(out), *extra]
        subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rates = json.loads(out.read_text())
    on, off = statistics.median(rates["deterministic"]), statistics.median(rates["default"])
    cpu_on, cpu_off = statistics.median(rates["cpu_deterministic"]), statistics.median(rates["cpu_default"])
    return {"processes": procs, "threads_per_process": threads, "samples_per_s_deterministic": rates["deterministic"],
            "samples_per_s_default_kernels": rates["default"], "median_deterministic": on,
            "median_default_kernels": off, "ratio_deterministic_over_default": on / off,
            "samples_per_cpu_s_deterministic": rates["cpu_deterministic"],
            "samples_per_cpu_s_default_kernels": rates["cpu_default"],
            "cpu_ratio_deterministic_over_default": cpu_on / cpu_off}


def _dataset(config: str, overrides: List[str]) -> dict:
    """What the dataset is (its meta.json summary), so the result does not depend on where it was stored."""
    from dare_rec.config import load_config
    from dare_rec.data.schema import DatasetMeta

    meta = DatasetMeta.read(load_config(config, overrides).data.path)
    return {"source": meta.source, "counts": meta.counts, "num_items": meta.num_items,
            "num_categories": meta.num_categories, "max_history": meta.max_history, "params": meta.params}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--data", help="dataset folder (default: the config's data.path)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed block")
    parser.add_argument("--blocks", type=int, default=10, help="timed blocks per mode")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    if args.data:
        extra = ["--data.path", args.data, *extra]
    if args.worker:
        worker(args.config, extra, args.steps, args.blocks, args.output)
        return 0
    rows = []
    for procs, threads in SETTINGS:
        row = run_setting(args.config, procs, threads, args.steps, args.blocks, extra)
        rows.append(row)
        print(f"{procs} process(es) x {threads} thread(s): median {row['median_deterministic']:,.0f} (deterministic) "
              f"vs {row['median_default_kernels']:,.0f} samples/s, "
              f"ratio {row['ratio_deterministic_over_default']:.3f}; "
              f"per CPU-second ratio {row['cpu_ratio_deterministic_over_default']:.3f}",
              flush=True)
    result = {
        "benchmark": "determinism_cost", "config": args.config, "steps_per_block": args.steps,
        "blocks_per_mode": args.blocks, "overrides": extra, "dataset": _dataset(args.config, extra),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {name: metadata.version(name) for name in ("torch", "torchrec", "fbgemm-gpu-cpu")},
        "results": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
