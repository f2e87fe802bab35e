"""What the train pipeline's overlap is worth: the real training job of this checkout against the same job of an
earlier commit, alternating, on the same data and machine.

    python -m benchmarks.pipelining --baseline-ref 1a2b3c4 --config configs/synthetic.yaml --steps 150 --rounds 4

The baseline is checked out into a temporary git worktree and run with that tree first on the module path (its
``pipelines/``, ``sharding/`` and ``launch/`` linked under its ``dare_rec/``, as the installed package places
them). Each round runs both codes once (the order alternates): ``torchrun --nproc_per_node 2`` with one thread
per process, ``--train.max_steps STEPS`` and every other setting from ``--config`` (plus any overrides after
``--``), validation and checkpoints off the clock (the job's own ``samples_per_s`` in its ``end`` event).

Issue 18 measured it against the commit before its pipelining change, where TorchRec pipelined no pooled
(singleton-bag) lookup, the CPU default. Report: ``--output`` JSON and a PNG beside it: samples/s per round for
both codes, their medians and quartiles, and the ratio per round.
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
from pathlib import Path
from typing import Dict, List, Optional
from benchmarks import SCRATCH

REPO = Path(__file__).resolve().parents[1]
JOB_FOLDERS = ("pipelines", "sharding", "launch")


def run_job(tree: Path, config: str, steps: int, extra: List[str]) -> Dict[str, float]:
    """One training job of the code in ``tree``; returns its samples/s and times."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "dare_rec.pipelines.train", "--config", config, "--train.max_steps", str(steps),
               "--train.output_dir", out, "--train.checkpoint_every_minutes", "0", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the job of {tree} failed:\n{proc.stderr[-3000:]}")
        end = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()][-1]
    return {"samples_per_s": end["samples_per_s"], "train_time_s": end["train_time_s"],
            "job_wall_s": time.perf_counter() - started}


def baseline_tree(ref: str, root: Path) -> Path:
    tree = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    for name in JOB_FOLDERS:  # the installed layout: dare_rec.pipelines etc.
        link = tree / "dare_rec" / name
        if (tree / name).is_dir() and not link.exists():
            link.symlink_to(tree / name, target_is_directory=True)
    return tree


def summary(values: List[float]) -> Dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values), "max": max(values)}


def plot(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, key in (("this checkout", "current"), (f"baseline {report['baseline_ref']}", "baseline")):
        ax.plot(range(1, len(report["rounds"]) + 1), [r[key]["samples_per_s"] for r in report["rounds"]], "o-",
                label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("training samples/s (2 processes x 1 thread)")
    ax.set_title(f"{report['config']}, {report['steps']} steps per job")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipelining", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", required=True, help="git commit (or ref) of the code to compare with")
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--steps", type=int, default=150, help="training steps per job")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each code, alternating")
    parser.add_argument("--output", default=str(SCRATCH / "pipelining.json"),
                        help="report path (default under runs/benchmarks; the committed result is "
                             "benchmarks/results/pipelining.json)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="pipelining-") as tmp:
        baseline = baseline_tree(args.baseline_ref, Path(tmp))
        try:
            for index in range(args.rounds):
                codes = [("current", REPO), ("baseline", baseline)]
                result = {}
                for key, tree in (codes if index % 2 == 0 else codes[::-1]):
                    result[key] = run_job(tree, args.config, args.steps, extra)
                result["ratio"] = result["current"]["samples_per_s"] / result["baseline"]["samples_per_s"]
                rounds.append(result)
                print(f"round {index + 1}/{args.rounds}: this checkout {result['current']['samples_per_s']:,.0f}, "
                      f"baseline {result['baseline']['samples_per_s']:,.0f} samples/s ({result['ratio']:.2f}x)",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                           capture_output=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    report = {"benchmark": "pipelining", "date": time.strftime("%Y-%m-%d"), "config": args.config,
              "overrides": extra, "steps": args.steps, "processes": 2, "threads_per_process": 1,
              "current_ref": head, "baseline_ref": args.baseline_ref,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "command": " ".join(["python -m benchmarks.pipelining", *(sys.argv[1:] if argv is None else argv)]),
              "samples_per_s": {key: summary([r[key]["samples_per_s"] for r in rounds])
                                for key in ("current", "baseline")},
              "ratio": summary([r["ratio"] for r in rounds]), "rounds": rounds}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, output.with_suffix(".png"))
    print(f"median ratio {report['ratio']['median']:.2f} (rounds {report['ratio']['min']:.2f}-"
          f"{report['ratio']['max']:.2f}); wrote {output} (+ .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
