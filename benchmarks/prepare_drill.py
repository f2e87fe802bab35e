"""Fault drill for ``dare-rec prepare``: a prepare killed at any moment, or failing on bad input, leaves the
dataset it was replacing byte-identical.

Makes a Taobao-format log with planted structure (``dare-rec make-raw-logs --format taobao --planted``), big
enough that prepare takes a few seconds, prepares it once with ``configs/planted_taobao.yaml`` and records the
sha256 of every file of the dataset. Then, ``--kills`` times, it starts ``dare-rec prepare`` over the same
``--out`` with another ``logs.seed`` (so the new dataset would differ), sends SIGKILL at a random moment of the
run (uniform over the measured prepare time) and compares every byte of the folder with the record: it must
hold the old dataset, byte-identical (or, for a kill after the swap, the whole new one, which must then
verify). One more run is killed as soon as its meta.json appears (verification and the swap: a window of
about a tenth of a second that random kills rarely hit). For each kill it notes how far the run had got (no
temporary folder yet, one without meta.json, meta.json written) and which folders are left beside the
dataset (every run first removes those of dead runs). Another run gets the log with a malformed line in the
middle: it must exit 2 with one error line, change nothing and leave nothing of its own. Last, prepare runs
again with the original seed: no leftovers may remain and it must write the same bytes.

    python -m benchmarks.prepare_drill --kills 5 --output benchmarks/results/prepare_drill.json

Writes a JSON report (default ``runs/benchmarks/prepare_drill.json``) and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "runs" / "benchmarks" / "prepare_drill.json"
CONFIG = "configs/planted_taobao.yaml"
_POLL_S = 0.01


def fingerprint(root: Path) -> Dict[str, Optional[str]]:
    """sha256 of every file under ``root`` by relative path (folders as None): every byte of the dataset."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def digest(files: Dict[str, Optional[str]]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def prepare_cmd(log: Path, out: Path, seed: int) -> List[str]:
    return [sys.executable, "-m", "dare_rec.pipelines.prepare", "--source", "taobao", "--config", CONFIG, "--input",
            str(log), "--out", str(out), "--quiet", "--logs.seed", str(seed)]


def leftovers(out: Path) -> List[str]:
    """Entries beside ``out`` that prepare made (its temporary and set-aside folders)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def progress_of(out: Path) -> str:
    """How far a run on ``out`` has got, from its temporary folder."""
    tmp = [p for p in out.parent.glob(f".{out.name}.tmp-*") if p.is_dir()]
    if not tmp:
        return "no temporary folder yet"
    if (tmp[0] / "meta.json").exists():
        return "meta.json written (verifying, fsyncing or swapping)"
    return "temporary folder, no meta.json yet (reading, sampling, writing)"


def kill_once(log: Path, out: Path, seed: int, after_s: Optional[float]) -> Dict[str, Any]:
    """Starts prepare with ``logs.seed = seed`` and SIGKILLs it ``after_s`` seconds later, or (None) as soon as
    its meta.json appears in the temporary folder (the last moments: verification and the swap)."""
    started = time.monotonic()
    proc = subprocess.Popen(prepare_cmd(log, out, seed), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def due() -> bool:
        if after_s is not None:
            return time.monotonic() - started >= after_s
        return progress_of(out).startswith("meta.json")

    while proc.poll() is None and not due():
        time.sleep(_POLL_S)
    state, finished = progress_of(out), proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"seed": seed, "when": "random" if after_s is not None else "once meta.json is written",
            "kill_after_s": round(time.monotonic() - started, 3), "killed": not finished,
            "state_at_kill": state if not finished else "finished before the kill", "returncode": proc.returncode}


def outcome(out: Path, original: Dict[str, Optional[str]], seed: int) -> str:
    """What ``out`` holds after a run with ``logs.seed = seed`` was killed: the old dataset, byte-identical; the
    new one, whole (the kill came after the swap, or the run had finished); or anything else (a failure)."""
    if fingerprint(out) == original:
        return "old dataset, byte-identical"
    from dare_rec.data.schema import DataError, verify_dataset

    try:
        meta = verify_dataset(out)
    except DataError as e:
        return f"damaged: {e}"
    return "new dataset, complete" if meta.params["logs"]["seed"] == seed else "another dataset"


def bad_log(log: Path, path: Path) -> int:
    """A copy of ``log`` whose middle line has a timestamp that is not an integer; returns that line number."""
    lines = log.read_bytes().split(b"\n")
    middle = len(lines) // 2
    fields = lines[middle].split(b",")
    lines[middle] = b",".join(fields[:4] + [b"notatime"])
    path.write_bytes(b"\n".join(lines))
    return middle + 1


def drill(work: Path, users: int, kills: int, rng: random.Random) -> Dict[str, Any]:
    log, out = work / "UserBehavior.csv", work / "data"
    subprocess.run([sys.executable, "-m", "dare_rec.pipelines.make_raw_logs", "--format", "taobao", "--planted",
                    "--users", str(users), "--out", str(log)], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    started = time.monotonic()
    subprocess.run(prepare_cmd(log, out, 0), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    original = fingerprint(out)

    runs = []
    for i in range(kills + 1):
        after_s = rng.uniform(0.05, 0.95) * seconds if i < kills else None
        run = kill_once(log, out, seed=i + 1, after_s=after_s)
        run["outcome"] = outcome(out, original, seed=i + 1)
        run["left_beside_out"] = leftovers(out)
        if run["outcome"] != "old dataset, byte-identical":  # put the original back (same input, same bytes)
            subprocess.run(prepare_cmd(log, out, 0), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        runs.append(run)

    broken = work / "UserBehavior-bad.csv"
    line = bad_log(log, broken)
    before_bad = leftovers(out)
    proc = subprocess.run(prepare_cmd(broken, out, 7), cwd=REPO, capture_output=True, text=True)
    errors = [e for e in proc.stderr.splitlines() if e.startswith("error: ")]
    bad_input = {"malformed_line": line, "returncode": proc.returncode, "error_lines": errors,
                 "traceback": "Traceback" in proc.stderr, "old_dataset_identical": fingerprint(out) == original,
                 "beside_out_before": before_bad, "left_beside_out": leftovers(out)}

    before_cleanup = leftovers(out)
    subprocess.run(prepare_cmd(log, out, 0), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    rerun = {"leftovers_before": before_cleanup, "leftovers_after": leftovers(out),
             "same_bytes_as_first_prepare": fingerprint(out) == original}

    checks = {
        "every_kill_left_the_old_or_the_whole_new_dataset": all(
            r["outcome"] in ("old dataset, byte-identical", "new dataset, complete") for r in runs),
        "bad_input_exit_2_one_line_no_traceback": proc.returncode == 2 and len(errors) == 1
        and not bad_input["traceback"] and f"line {line}" in errors[0],
        "bad_input_left_the_old_dataset_byte_identical": bad_input["old_dataset_identical"],
        # it may remove the killed runs' leftovers (its clean-up), but must leave none of its own
        "bad_input_left_nothing_of_its_own": set(bad_input["left_beside_out"]) <= set(before_bad),
        "a_later_run_removes_the_leftovers": rerun["leftovers_after"] == [],
        "a_later_run_writes_the_same_bytes": rerun["same_bytes_as_first_prepare"],
    }
    files = [name for name, sha in original.items() if sha is not None]
    return {
        "input": {"users": users, "rows": log.read_bytes().count(b"\n"), "bytes": log.stat().st_size},
        "prepare_seconds": round(seconds, 2),
        "dataset": {"files": len(files), "bytes": sum((out / name).stat().st_size for name in files),
                    "sha256_of_all_files": digest(original)},
        "kills": runs, "bad_input": bad_input, "rerun": rerun, "checks": checks, "passed": all(checks.values()),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--users", type=int, default=10000,
                        help="users of the planted log (10,000: ~780k rows, prepare takes a few seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prepare-drill-") as tmp:
        result = drill(Path(tmp), args.users, args.kills, random.Random(args.seed))
    result = {"benchmark": "prepare_drill", "date": time.strftime("%Y-%m-%d"), "config": CONFIG,
              "seed": args.seed, **result}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for run in result["kills"]:
        print(f"kill ({run['when']}) after {run['kill_after_s']:.2f}s of {result['prepare_seconds']:.2f}s "
              f"({run['state_at_kill']}): {run['outcome']}; left beside it: {run['left_beside_out']}")
    print(f"bad input (line {result['bad_input']['malformed_line']}): exit {result['bad_input']['returncode']}, "
          f"old dataset identical: {result['bad_input']['old_dataset_identical']}")
    print(f"later run: leftovers {result['rerun']['leftovers_before']} -> {result['rerun']['leftovers_after']}, "
          f"same bytes: {result['rerun']['same_bytes_as_first_prepare']}")
    print(f"{'PASSED' if result['passed'] else 'FAILED'}; wrote {args.output}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
