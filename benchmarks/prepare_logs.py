"""Benchmark of ``dare-rec prepare`` on generated raw logs: rows/s, wall time, peak RSS, output size.

    python -m benchmarks.prepare_logs --rows 1000000 5000000 10000000 20000000 50000000
    python -m benchmarks.prepare_logs --rows 600000 1200000 2400000 --mean-len 12000 --len-sigma 0.05 \
        --output benchmarks/results/prepare_logs_long.json --logs.max_len 10000 --logs.min_len 10100

The second line prepares 10,000-behavior histories (users of ~12,000 rows, ~10,800 clicks each).

For each size, the raw file ``<data-dir>/<format>-<rows>.csv`` is generated if missing (``dare-rec
make-raw-logs``, seed 0), then ``dare-rec prepare`` runs in a subprocess; its peak RSS comes from
``os.wait4`` (that process alone, torch never imported). Results are merged into the JSON (one entry per
format and size) together with a least-squares fit ``peak_rss_mb = a + b * rows`` and, with at least three
sizes, a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow
from benchmarks import SCRATCH

RESULTS = SCRATCH  # committed: benchmarks/results (--output)


def _run(argv: List[str]) -> Dict[str, float]:
    """Runs a command; returns its wall seconds and peak RSS (MB) from the kernel's accounting."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(argv)}")
    return {"wall_s": time.perf_counter() - started, "peak_rss_mb": usage.ru_maxrss / 1024.0}


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def measure(fmt: str, rows: int, data_dir: Path, extra: List[str], keep_output: bool,
            lengths: List[str]) -> Dict[str, object]:
    raw = data_dir / ("-".join([fmt, str(rows)] + [a.lstrip("-") for a in lengths]) + ".csv")
    entry: Dict[str, object] = {"format": fmt, "rows": rows}
    if not raw.exists():
        gen = _run([sys.executable, "-m", "dare_rec.pipelines.make_raw_logs", "--format", fmt, "--rows", str(rows),
                    "--out", str(raw), "--quiet", *lengths])
        entry["generate_s"] = round(gen["wall_s"], 2)
    out = data_dir / f"out-{fmt}-{rows}"
    summary_path = data_dir / f"summary-{fmt}-{rows}.json"
    run = _run([sys.executable, "-m", "dare_rec.pipelines.prepare", "--source", fmt, "--input", str(raw), "--out", str(out),
                "--quiet", "--summary-json", str(summary_path), *extra])
    summary = json.loads(summary_path.read_text())
    entry.update({
        "input_mb": round(raw.stat().st_size / 1e6, 1),
        "wall_s": round(run["wall_s"], 2),
        "rows_per_s": round(rows / run["wall_s"]),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "output_mb": round(_dir_bytes(out) / 1e6, 1),
        "clicks": summary["clicks"],
        "users": summary["users"],
        "users_kept": summary["users_kept"],
        "clicks_of_kept_users": summary["clicks_of_kept_users"],
        "samples": summary["counts"],
        "num_items": summary["num_items"],
        "num_categories": summary["num_categories"],
        "phases": summary["phases"],
        "extra_args": extra,
        "raw_log_args": lengths,
    })
    if not keep_output:
        for path in sorted(out.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        out.rmdir()
    summary_path.unlink()
    return entry


def fit(entries: List[Dict[str, object]]) -> Optional[Dict[str, float]]:
    """Least-squares ``peak_rss_mb = a + b * rows`` over the measured sizes (b reported per row, in bytes)."""
    if len(entries) < 2:
        return None
    x = np.array([e["rows"] for e in entries], dtype=float)
    y = np.array([e["peak_rss_mb"] for e in entries], dtype=float)
    b, a = np.polyfit(x, y, 1)
    return {"intercept_mb": round(float(a), 1), "bytes_per_row": round(float(b) * 1024 * 1024, 1)}


def plot(entries: List[Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e["rows"] / 1e6 for e in entries]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(rows, [e["peak_rss_mb"] / 1024 for e in entries], "o-", label="peak RSS")
    ax1.axhline(3.0, color="grey", linestyle="--", label="3 GB")
    ax1.set_xlabel("input rows (millions)")
    ax1.set_ylabel("GB")
    ax1.legend()
    ax2.plot(rows, [e["rows_per_s"] / 1e6 for e in entries], "o-", label="rows/s")
    ax2.set_xlabel("input rows (millions)")
    ax2.set_ylabel("million rows / s")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    fig.suptitle(f"dare-rec prepare --source {entries[0]['format']} (generated logs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", default="taobao", choices=("taobao", "tmall", "events"))
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 50_000_000])
    parser.add_argument("--data-dir", default="data/bench", help="raw files and (temporary) outputs")
    parser.add_argument("--output", default=str(RESULTS / "prepare_logs.json"))
    parser.add_argument("--keep-output", action="store_true", help="keep the prepared datasets")
    parser.add_argument("--mean-len", type=float, help="mean rows per user of the generated log (default 100)")
    parser.add_argument("--len-sigma", type=float, help="sigma of the log-normal user length (default 0.94)")
    args, extra = parser.parse_known_args(argv)  # extra: config overrides passed on to prepare
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    previous = json.loads(output.read_text()) if output.exists() else {"runs": []}
    runs = {(r["format"], r["rows"]): r for r in previous["runs"]}
    lengths = [a for name, value in (("--mean-len", args.mean_len), ("--len-sigma", args.len_sigma))
               if value is not None for a in (name, str(value))]
    for rows in args.rows:
        entry = measure(args.format, rows, data_dir, extra, args.keep_output, lengths)
        runs[(args.format, rows)] = entry
        print(json.dumps({k: entry[k] for k in ("rows", "wall_s", "rows_per_s", "peak_rss_mb", "output_mb")}))
    ordered = sorted(runs.values(), key=lambda r: (r["format"], r["rows"]))
    same_format = [r for r in ordered if r["format"] == args.format]
    result = {
        "benchmark": "dare-rec prepare on generated raw logs (dare-rec make-raw-logs, seed 0)",
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "pyarrow": pyarrow.__version__, "numpy": np.__version__},
        "peak_rss_fit": {fmt: fit([r for r in ordered if r["format"] == fmt])
                         for fmt in sorted({r["format"] for r in ordered})},
        "runs": ordered,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    if len(same_format) >= 3:
        plot(same_format, output.with_name(f"{output.stem}_{args.format}.png"))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
