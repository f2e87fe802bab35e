"""Training throughput (samples/s) for several process and thread counts on one machine.

Runs the real training job (``torchrun -m dare_rec.pipelines.train``) for ``--steps`` steps per setting and reads
the job's own measurement (the ``end`` event of metrics.jsonl: samples over training time, validation and
checkpointing excluded). Results go to ``benchmarks/results/train_throughput.json``.

    python -m benchmarks.train_throughput --config configs/synthetic.yaml --steps 300

The dataset at ``data.path`` must exist (``dare-rec prepare --source synthetic --config ...``).
"""

from __future__ import annotations

import argparse
from importlib import metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch
from benchmarks import SCRATCH

RESULTS = SCRATCH / "train_throughput.json"  # committed: benchmarks/results (--output)
# (processes, threads per process): all cores as one process, all cores as processes, one core.
SETTINGS = [(1, 1), (1, 2), (2, 1)]


def run_setting(config: str, procs: int, threads: int, steps: int, extra: List[str]) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "dare_rec.pipelines.train", "--config", config, "--train.max_steps", str(steps),
               "--train.output_dir", out, *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        end = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()][-1]
    return {"processes": procs, "threads_per_process": threads, "steps": end["steps"],
            "samples_per_s": end["samples_per_s"], "train_time_s": end["train_time_s"], "job_wall_s": wall}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--steps", type=int, default=300, help="training steps per setting")
    parser.add_argument("--output", default=str(RESULTS))
    args, extra = parser.parse_known_args(argv)
    rows = []
    for procs, threads in SETTINGS:
        row = run_setting(args.config, procs, threads, args.steps, extra)
        print(f"{procs} process(es) x {threads} thread(s): {row['samples_per_s']:,.0f} samples/s")
        rows.append(row)
    result = {
        "benchmark": "train_throughput",
        "config": args.config,
        "overrides": extra,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": torch.cuda.is_available()},
        "versions": {name: metadata.version(name) for name in ("torch", "torchrec", "fbgemm-gpu-cpu")},
        "results": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
