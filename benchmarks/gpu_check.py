"""The card's GPU path in one run (issue 20): every part checked and measured, one JSON + PNG naming the device.

Parts, in order (each has a status: passed, failed or skipped with its reason, and its seconds):

* ``smoke``: the GPU smoke test (``tests/pipelines/test_gpu_smoke.py``: prefetch pipeline, UVM-cached fp16
  tables, bf16, train, resume, evaluate). CUDA only.
* ``triton``: ``pytest tests/ops`` with compiled Triton kernels (``TRITON_INTERPRET=0``) against the PyTorch
  references, forward and gradients, fp32 and bf16. On CPU the same tests under Triton's interpreter.
* ``recipe``: a short training run with the full GPU recipe (``fused_uvm_caching`` fp16 tables, the prefetch
  pipeline, bf16 autocast, ``model.op_kernel auto``), then the same command resumes it to a larger budget and
  the checkpoint is evaluated on the test split. On CPU the CPU recipe (fused fp32 tables, ``sparse_dist``).
* ``throughput``: training samples/s of the real job (``dare_rec.pipelines.train`` in this process, world
  size 1) at B 2048, N 200 for DARE d_att 8/16/32/64 and TWIN d 16/64, each with the prefetch pipeline and
  without it (``sparse_dist`` over the same UVM-cached tables), with the peak GPU memory of each run. The rate
  is the median of the job's per-window rates (``train.log_every`` steps each) after the first window
  (compilation and cache warm-up). On CPU only ``sparse_dist`` (prefetch is CUDA-only).
* ``op``: the GSU op alone at B 2048, N 200 (``benchmarks.attention_dims --parts op``): achieved bandwidth
  (the op's least bytes / time) against a memcpy of the same bytes on the device and against the device's
  nominal memory bandwidth (from its clock and bus width where torch reports them).
* ``profile``: where the time goes in DARE d_att 16's step: ``torch.profiler`` around a short run of the job
  (operators by self device time, or self CPU time on CPU), next to the model-only rate on random batches
  (``benchmarks.attention_dims --parts train``: no data loading), so the job-vs-model gap is visible.

Target (issue 20): >= 1M training samples/s for DARE d_att 16 at B 2048, N 200 on one H100; the JSON says
whether it was met.

    benchmarks/gpu_check.sh                                        # CUDA machine: install, then every part
    python -m benchmarks.gpu_check --device cuda                   # the same, in an environment already set up
    python -m benchmarks.gpu_check --device cpu --quick            # the dry run (CI): CUDA parts skipped, small sizes

Results: ``<out>/gpu_check_<device>.{json,png}`` (default ``runs/benchmarks/gpu_check``), the profile table
beside them, the jobs' printout in ``<out>/gpu_check_<device>_logs/``. Commit the CUDA JSON, PNG and profile
(``--out benchmarks/results``; the logs are git-ignored). Exit status 0 exactly when no part failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from benchmarks import REPO, SCRATCH

PARTS = ("smoke", "triton", "recipe", "throughput", "op", "profile")
# (variant, d_att): TWIN has one attention/representation dim, given as d_att = d_rep.
MODELS = (("dare", 8), ("dare", 16), ("dare", 32), ("dare", 64), ("twin", 16), ("twin", 64))
TARGET_SAMPLES_PER_S = 1_000_000  # DARE d_att 16, B 2048, N 200, one H100
# Tables in UVM with an HBM cache of 20% of the rows, stored in fp16; the dense part in bf16.
GPU_TABLES = ["--sharding.default.compute_kernel", "fused_uvm_caching", "--sharding.default.cache_load_factor",
              "0.2", "--sharding.default.data_type", "fp16"]
GPU_DENSE = ["--train.bf16", "true", "--model.op_kernel", "auto"]


@dataclass(frozen=True)
class Sizes:
    """What one check run uses: the full sizes of the issue, or small ones for the dry run."""

    config: Path
    batch_size: int
    max_len: int
    steps: int  # training steps per throughput run
    log_every: int
    op_args: List[str]


FULL = Sizes(REPO / "configs" / "synthetic.yaml", 2048, 200, 80, 10,
             ["--batch-size", "2048", "--max-len", "200", "--d-att", "8", "16", "32", "64", "--rounds", "3"])
QUICK = Sizes(REPO / "configs" / "tiny.yaml", 64, 40, 6, 2,
              ["--batch-size", "64", "--max-len", "40", "--d-att", "8", "16", "--rounds", "1", "--inner", "1"])


class Skip(Exception):
    """A part that cannot run on this device; the message is the reason."""


def run_part(name: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    started = time.perf_counter()
    try:
        detail, status = fn(), "passed"
    except Skip as e:
        detail, status = {"reason": str(e)}, "skipped"
    except Exception as e:  # a failed part is reported and the others still run
        detail, status = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}, "failed"
    seconds = time.perf_counter() - started
    print(f"[gpu_check] {name}: {status} ({seconds:.0f} s)" + (f": {detail.get('reason') or detail.get('error')}"
                                                              if status != "passed" else ""), flush=True)
    return {"status": status, "seconds": seconds, **detail}


def pytest_part(paths: List[str], interpret: bool, timeout_s: int) -> Dict[str, Any]:
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpret else "0"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {proc.returncode}: {tail[0]}\n{proc.stdout[-3000:]}")
    return {"command": " ".join(["TRITON_INTERPRET=" + env["TRITON_INTERPRET"], "python", *cmd[1:]]),
            "summary": tail[0]}


@contextlib.contextmanager
def job_output(log: Path):
    """The job's printout and progress bars go to ``log`` (its numbers are read from its event file)."""
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def events(run_dir: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Check:
    def __init__(self, device: str, sizes: Sizes, out: Path, work: Path) -> None:
        self.device, self.sizes, self.out, self.work = device, sizes, out, work
        self.cuda = device == "cuda"
        self.logs = out / f"gpu_check_{device}_logs"  # the jobs' printout, one file per run (not committed)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._data: Optional[Path] = None

    # -- shared -------------------------------------------------------------------------------------------------
    def data(self) -> Path:
        """The preset's synthetic dataset, generated once into the work folder."""
        if self._data is None:
            from dare_rec.config import load_config
            from dare_rec.data.synthetic import generate

            root = self.work / "data"
            generate(load_config(self.sizes.config, []).synthetic, root, progress=False)
            self._data = root
        return self._data

    def job_args(self, out: Path, *extra: str) -> List[str]:
        s = self.sizes
        return ["--config", str(s.config), "--data.path", str(self.data()), "--train.output_dir", str(out),
                "--data.batch_size", str(s.batch_size), "--data.max_len", str(s.max_len),
                "--train.log_every", str(s.log_every), "--train.val_every", "0", "--train.checkpoint_every", "0",
                "--train.checkpoint_every_minutes", "0", "--train.tensorboard", "false",
                "--train.dist_timeout_s", "300", *extra]

    def recipe_args(self, pipeline: Optional[str] = None) -> List[str]:
        if not self.cuda:
            return ["--train.pipeline", pipeline or "sparse_dist"]
        return ["--train.pipeline", pipeline or "prefetch", *GPU_TABLES, *GPU_DENSE]

    # -- parts --------------------------------------------------------------------------------------------------
    def smoke(self) -> Dict[str, Any]:
        if not self.cuda:
            raise Skip("needs CUDA (the suite runs it and skips it there too)")
        return pytest_part(["tests/pipelines/test_gpu_smoke.py"], interpret=False, timeout_s=300)

    def triton(self) -> Dict[str, Any]:
        if self.cuda:
            return pytest_part(["tests/ops"], interpret=False, timeout_s=300)
        if importlib.util.find_spec("triton") is None:
            raise Skip("triton is not installed (pip install -e .[triton] for the interpreter)")
        paths = ["tests/ops/test_triton_parity.py"] + (["-k", "random_floats or bf16"] if self.sizes is QUICK else [])
        return pytest_part(paths, interpret=True, timeout_s=600)

    def recipe(self) -> Dict[str, Any]:
        from dare_rec.pipelines import evaluate, train

        run = self.work / "recipe"
        half = max(2, self.sizes.steps // 2)
        args = self.job_args(run, *self.recipe_args(), "--train.checkpoint_every", str(half))
        with job_output(self.logs / "recipe.log"):
            first = train.main(args + ["--train.max_steps", str(half)])
            second = train.main(args + ["--train.max_steps", str(half + 2)])
            evaluated = evaluate.main(["--checkpoint", str(run), "--split", "test", "--output",
                                       str(run / "eval-test.json")])
        if (first, second, evaluated) != (0, 0, 0):
            raise RuntimeError(f"train, resumed train, evaluate exited {first}, {second}, {evaluated}")
        log = events(run)
        resumed = [e for e in log if e["event"] == "resume"]
        if not resumed or resumed[0]["step"] != half:
            raise RuntimeError(f"the second run did not resume from step {half}: {resumed}")
        report = json.loads((run / "eval-test.json").read_text())
        start = next(e for e in log if e["event"] == "start")
        return {"recipe": self.recipe_args(), "pipeline": start["config"]["train"]["pipeline"],
                "resumed_at_step": half, "test_auc": report["auc"], "test_samples": report["samples"]}

    def train_rate(self, variant: str, d_att: int, pipeline: str, profiler: Any = None) -> Dict[str, Any]:
        """Runs the job for ``sizes.steps`` steps; the median window rate after the first window."""
        from dare_rec.pipelines import train

        run = self.work / f"rate-{variant}-{d_att}-{pipeline}"
        model = (["--model.d_att", str(d_att)] if variant == "dare"
                 else ["--model.d_att", str(d_att), "--model.d_rep", str(d_att)])
        args = self.job_args(run, "--model.variant", variant, *model, *self.recipe_args(pipeline),
                             "--train.max_steps", str(self.sizes.steps))
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        with profiler if profiler is not None else contextlib.nullcontext():
            with job_output(self.logs / f"{run.name}.log"):
                code = train.main(args)
        if code != 0:
            raise RuntimeError(f"{variant} d_att {d_att} {pipeline}: training exited {code}")
        rates = [e["samples_per_s"] for e in events(run) if e["event"] == "train"][1:]
        if not rates:
            raise RuntimeError(f"{variant} d_att {d_att} {pipeline}: fewer than two log windows")
        shutil.rmtree(run)
        return {"variant": variant, "d_att": d_att, "pipeline": pipeline,
                "samples_per_s": statistics.median(rates), "window_rates": rates,
                "peak_memory_bytes": torch.cuda.max_memory_allocated() if self.cuda else None}

    def throughput(self) -> Dict[str, Any]:
        pipelines = ["sparse_dist", "prefetch"] if self.cuda else ["sparse_dist"]
        rows = []
        for variant, d_att in MODELS:
            for pipeline in pipelines:
                row = self.train_rate(variant, d_att, pipeline)
                print(f"[gpu_check]   {variant} d_att {d_att} {pipeline}: {row['samples_per_s']:,.0f} samples/s"
                      + (f", peak {row['peak_memory_bytes'] / 2**30:.2f} GiB" if self.cuda else ""), flush=True)
                rows.append(row)
        result: Dict[str, Any] = {"batch_size": self.sizes.batch_size, "max_len": self.sizes.max_len,
                                  "steps": self.sizes.steps, "log_every": self.sizes.log_every, "rows": rows}
        if self.cuda:
            rate = {(r["variant"], r["d_att"], r["pipeline"]): r["samples_per_s"] for r in rows}
            result["prefetch_speedup"] = {f"{v} {d}": rate[(v, d, "prefetch")] / rate[(v, d, "sparse_dist")]
                                          for v, d in MODELS}
            best = max(rate[("dare", 16, p)] for p in pipelines)
            result["target"] = {"samples_per_s": TARGET_SAMPLES_PER_S, "dare_d16_best": best,
                                "met": best >= TARGET_SAMPLES_PER_S}
        return result

    def op(self) -> Dict[str, Any]:
        from benchmarks import attention_dims

        path = self.work / "op.json"
        kernels = ["pytorch", "triton"] if self.cuda else ["pytorch"]
        with job_output(self.logs / "op.log"):
            code = attention_dims.main(["--parts", "op", "--device", self.device, "--kernels", *kernels,
                                        *self.sizes.op_args, "--output", str(path)])
        if code != 0:
            raise RuntimeError(f"benchmarks.attention_dims exited {code}")
        report = json.loads(path.read_text())
        nominal = nominal_bandwidth() if self.cuda else None
        rows = []
        for r in report["op"]["results"]:
            fwd = r["forward"]
            rows.append({"kernel": r["kernel"], "d_att": r["d_att"], "max_len": r["max_len"],
                         "forward_bytes_per_s": fwd["bytes_per_s"], "memcpy_bytes_per_s": fwd["memcpy_bytes_per_s"],
                         "fraction_of_memcpy": fwd["fraction_of_memcpy_bandwidth"]["median"],
                         "fraction_of_nominal": fwd["bytes_per_s"] / nominal if nominal else None,
                         "forward_backward_bytes_per_s": r["forward_backward"]["bytes_per_s"]})
        return {"nominal_bytes_per_s": nominal, "rows": rows}

    def profile(self) -> Dict[str, Any]:
        from benchmarks import attention_dims
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        prof = profile(activities=activities)
        pipeline = "prefetch" if self.cuda else "sparse_dist"
        job = self.train_rate("dare", 16, pipeline, profiler=prof)
        sort = "self_cuda_time_total" if self.cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=90)
        (self.out / f"gpu_check_{self.device}_profile.txt").write_text(table + "\n")
        path = self.work / "model.json"
        with job_output(self.logs / "model.log"):
            code = attention_dims.main(["--parts", "train", "--device", self.device, "--d-att", "16",
                                        "--max-len", str(self.sizes.max_len), "--model-batch-size",
                                        str(self.sizes.batch_size), "--rounds", "1", "--output", str(path)])
        if code != 0:
            raise RuntimeError(f"benchmarks.attention_dims --parts train exited {code}")
        model_rows = [r for r in json.loads(path.read_text())["model"]["results"] if r["variant"] == "dare"]
        return {"job_samples_per_s_under_profiler": job["samples_per_s"],
                "model_only_samples_per_s": model_rows[0]["train"]["samples_per_s"],
                "table": f"gpu_check_{self.device}_profile.txt", "sorted_by": sort}


def nominal_bandwidth() -> Optional[float]:
    """Peak DRAM bytes/s from the memory clock and bus width (double data rate), where torch reports them."""
    props = torch.cuda.get_device_properties(0)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def commit() -> Optional[str]:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() or None


def plot(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    tp = result["parts"]["throughput"]
    if tp["status"] == "passed":
        labels = [f"{v}\n{d}" for v, d in MODELS]
        pipelines = sorted({r["pipeline"] for r in tp["rows"]}, reverse=True)
        width = 0.8 / len(pipelines)
        for i, p in enumerate(pipelines):
            rate = {(r["variant"], r["d_att"]): r["samples_per_s"] for r in tp["rows"] if r["pipeline"] == p}
            left.bar([x + i * width for x in range(len(MODELS))], [rate[m] for m in MODELS], width, label=p)
        left.set_xticks([x + width * (len(pipelines) - 1) / 2 for x in range(len(MODELS))], labels)
        if "target" in tp:
            left.axhline(tp["target"]["samples_per_s"], color="gray", ls="--", lw=1, label="target (DARE d16)")
        left.legend()
    left.set_title(f"training samples/s, B {result['batch_size']}, N {result['max_len']}")
    left.set_xlabel("variant, d_att (TWIN: d)")
    op = result["parts"]["op"]
    if op["status"] == "passed":
        for kernel in sorted({r["kernel"] for r in op["rows"]}):
            rows = [r for r in op["rows"] if r["kernel"] == kernel]
            right.plot([r["d_att"] for r in rows], [r["fraction_of_memcpy"] for r in rows], "o-",
                       label=f"{kernel}: of memcpy")
            if rows[0]["fraction_of_nominal"] is not None:
                right.plot([r["d_att"] for r in rows], [r["fraction_of_nominal"] for r in rows], "s--",
                           label=f"{kernel}: of nominal")
        right.set_xscale("log", base=2)
        right.legend()
    right.set_title("GSU op forward: achieved bandwidth fraction")
    right.set_xlabel("d_att")
    fig.suptitle(f"gpu_check on {result['device_name']} (commit {result['commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (the tiny preset, B 64, N 40): a dry run")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=SCRATCH / "gpu_check", help="folder of the JSON and PNG")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (use --device cpu for the dry run)")
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        check = Check(args.device, sizes, args.out, Path(work))
        started = time.perf_counter()
        parts = {name: (run_part(name, getattr(check, name)) if name in args.parts
                        else {"status": "skipped", "seconds": 0.0, "reason": "not in --parts"}) for name in PARTS}
    result = {
        "benchmark": "gpu_check", "device": args.device, "device_name": device_name(args.device),
        "quick": args.quick, "commit": commit(), "date": time.strftime("%Y-%m-%d"),
        "batch_size": sizes.batch_size, "max_len": sizes.max_len, "config": str(sizes.config.relative_to(REPO)),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda},
        "wall_s": time.perf_counter() - started, "parts": parts,
    }
    stem = args.out / f"gpu_check_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, stem.with_suffix(".png"))
    failed = [name for name, part in parts.items() if part["status"] == "failed"]
    print(f"[gpu_check] wrote {stem}.json and .png in {result['wall_s']:.0f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "no part failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
