"""The training job at long histories: peak RSS and behaviors/s of ``dare-rec train`` for N up to 10,000.

For every history length N a synthetic dataset is generated whose histories hold 0.9 N to N behaviors (the
default generator, 8 train slots per user, ``max(--users, --behaviors / N)`` users, so short-history datasets
are big enough to time), then the real job trains DARE (d_att 16, d_rep 64,
aux head on, B 256) on it in one process with one thread, in cases interleaved over ``--rounds`` rounds:

* ``N=<n>``: the defaults, whose aux head reads a stratified sample of ``model.aux_behaviors`` (256)
  behaviors per sample when N is larger (every behavior at N = 200);
* ``N=<n> full aux``: ``--model.aux_behaviors null``, the aux head over every behavior (the reference's head,
  and dare_rec's before the bound), for comparison.

Per run it records the job's own samples/s (training time only: the ``end`` event of metrics.jsonl), the
behaviors/s (samples/s x the mean history length of the train split) and the job's peak RSS (``ru_maxrss`` of
the process, from ``os.wait4``). The JSON keeps every round and the medians; the PNG plots behaviors/s and
peak RSS per case.

    python -m benchmarks.long_history --output benchmarks/results/long_history_cpu.json
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
from typing import Dict, List, Optional

import pyarrow.parquet as pq

from benchmarks import SCRATCH

RESULTS = SCRATCH / "long_history_cpu.json"  # committed: benchmarks/results (--output)
MODEL = ["--model.variant", "dare", "--model.d_att", "16", "--model.d_rep", "64", "--model.aux_loss", "true",
         "--data.batch_size", "256"]


def prepare(root: Path, max_len: int, users: int) -> float:
    """Generates the dataset for N = ``max_len``; returns the train split's mean history length."""
    cmd = [sys.executable, "-m", "dare_rec.pipelines.prepare", "--source", "synthetic", "--out", str(root),
           "--synthetic.num_users", str(users), "--synthetic.num_items", "100000", "--synthetic.num_categories",
           "1000", "--synthetic.min_history", str(int(0.9 * max_len)), "--synthetic.max_history", str(max_len),
           "--synthetic.candidates_per_slot", "1", "--synthetic.row_group_size", "64",
           "--synthetic.train_files", "1", "--data.max_len", str(max_len)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    lengths = [len(h) for f in sorted((root / "train").glob("*.parquet"))
               for h in pq.read_table(f, columns=["hist_item"]).column("hist_item").to_pylist()]
    return sum(lengths) / len(lengths)


def train_once(data: Path, max_len: int, steps: Optional[int], extra: List[str]) -> Dict[str, float]:
    """One training job; its samples/s and peak RSS."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "dare_rec.pipelines.train", "--data.path", str(data), "--data.max_len",
               str(max_len), "--train.output_dir", out, "--train.epochs", "1", "--train.val_every", "0",
               *MODEL, *extra]
        if steps is not None:
            cmd += ["--train.max_steps", str(steps)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"training failed ({proc.returncode}): {' '.join(cmd)}\n{stderr.decode()[-3000:]}")
        end = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()][-1]
    return {"samples_per_s": end["samples_per_s"], "steps": end["steps"], "train_time_s": end["train_time_s"],
            "peak_rss_bytes": usage.ru_maxrss * 1024, "job_wall_s": time.perf_counter() - started}


def plot(cases: List[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["case"] for c in cases]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(names, [c["behaviors_per_s"]["median"] / 1e6 for c in cases], color="tab:blue")
    left.set_ylabel("behaviors / s (millions), median")
    left.set_title("training throughput per behavior")
    right.bar(names, [c["peak_rss_bytes"]["max"] / 2**30 for c in cases], color="tab:orange")
    right.axhline(3.0, color="grey", linestyle="--", label="3 GiB target at N = 10,000")
    right.set_ylabel("peak RSS (GiB), max over rounds")
    right.set_title("training job memory")
    right.legend()
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("dare-rec train, DARE d_att 16 / d_rep 64, aux head on, B 256, 1 process x 1 thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-len", type=int, nargs="+", default=[200, 1000, 5000, 10000])
    parser.add_argument("--full-aux-at", type=int, nargs="*", default=[10000],
                        help="history lengths at which the full aux head is run too")
    parser.add_argument("--users", type=int, default=300, help="least users per dataset (8 train samples each)")
    parser.add_argument("--behaviors", type=int, default=600_000,
                        help="users per dataset are at least this / N (an epoch long enough to time at short N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per job (default: one epoch)")
    parser.add_argument("--workdir", default=None, help="where the datasets go (default: a temporary folder)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        datasets: Dict[int, Path] = {}
        mean_length: Dict[int, float] = {}
        for n in args.max_len:
            datasets[n] = Path(work) / f"n{n}"
            mean_length[n] = prepare(datasets[n], n, max(args.users, args.behaviors // n))
            print(f"N={n}: dataset ready, mean history {mean_length[n]:,.0f}", flush=True)
        cases = [(f"N={n}", n, []) for n in args.max_len]
        cases += [(f"N={n} full aux", n, ["--model.aux_behaviors", "null"]) for n in args.full_aux_at]
        runs: Dict[str, List[dict]] = {name: [] for name, _, _ in cases}
        for round_index in range(args.rounds):
            for name, n, extra in cases:
                result = train_once(datasets[n], n, args.steps, extra)
                result["behaviors_per_s"] = result["samples_per_s"] * mean_length[n]
                runs[name].append(result)
                print(f"round {round_index + 1}/{args.rounds} {name}: {result['samples_per_s']:,.0f} samples/s, "
                      f"{result['behaviors_per_s'] / 1e6:.2f}M behaviors/s, peak RSS "
                      f"{result['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)

    summary = []
    for name, n, extra in cases:
        rows = runs[name]
        summary.append({
            "case": name, "max_len": n, "overrides": extra, "mean_history": mean_length[n],
            "samples_per_s": {"median": statistics.median(r["samples_per_s"] for r in rows),
                              "min": min(r["samples_per_s"] for r in rows), "max": max(r["samples_per_s"] for r in rows)},
            "behaviors_per_s": {"median": statistics.median(r["behaviors_per_s"] for r in rows),
                                "min": min(r["behaviors_per_s"] for r in rows),
                                "max": max(r["behaviors_per_s"] for r in rows)},
            "peak_rss_bytes": {"median": statistics.median(r["peak_rss_bytes"] for r in rows),
                               "max": max(r["peak_rss_bytes"] for r in rows)},
            "rounds": rows,
        })
    by_case = {c["case"]: c for c in summary}
    # behaviors/s at N over behaviors/s at the shortest N, per round (the rounds are interleaved)
    shortest = f"N={min(args.max_len)}"
    for c in summary:
        ratios = [r["behaviors_per_s"] / s["behaviors_per_s"] for r, s in zip(c["rounds"], by_case[shortest]["rounds"])]
        c["behaviors_per_s_vs_shortest"] = {"median": statistics.median(ratios), "min": min(ratios),
                                            "max": max(ratios)}
    result = {
        "benchmark": "long_history", "command": " ".join(["python -m benchmarks.long_history", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch": metadata.version("torch"), "torchrec": metadata.version("torchrec"),
        "model": MODEL, "cases": summary,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, out.with_suffix(".png"))
    for c in summary:
        print(f"{c['case']:>16}: {c['samples_per_s']['median']:8,.0f} samples/s "
              f"{c['behaviors_per_s']['median'] / 1e6:6.2f}M behaviors/s "
              f"({c['behaviors_per_s_vs_shortest']['median']:.2f}x N={min(args.max_len)}), "
              f"peak RSS {c['peak_rss_bytes']['max'] / 2**30:.2f} GiB")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
