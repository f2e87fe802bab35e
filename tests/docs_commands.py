"""Every command of the README and the docs, run in order in a fresh clone, as a new user would run them.

    python -m tests.docs_commands [--repo .] [--output runs/docs_commands]     # or: make docs-check

Clones the repository's committed HEAD into a temporary folder, then runs, one after the other from a fresh shell
each time (the virtual environment of ``make demo`` on ``PATH``, as the README's ``source .venv/bin/activate``
line says), every command line of every ``bash`` block of README.md, then of the docs in ``DOC_ORDER``: a line
is a command when its first word is one a user types (``COMMAND_WORDS``); a line ending in ``\\`` continues on
the next (plain fences count as shell blocks, other languages do not). Commands that need a GPU, a cluster or files that cannot be downloaded here are skipped (``SKIPS``,
each with its reason); long ones are shortened (``SHORTER``, each with what changed). The report lists every
command with its exit status, time and, where it differs, the command as run; the run fails (exit 1) when a
command fails or when the clone's ``git status`` is not clean at the end (nothing committed may change).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
DOC_ORDER = ("configuration.md", "operations.md", "real-data.md", "experiments.md", "performance.md", "design.md",
             "paper-fidelity.md")
COMMAND_WORDS = ("make", "dare-rec", "torchx", "python", "python3", "pip", "git", "mkdir", "unzip", "mv", "source",
                 "tensorboard")
# (pattern, reason): commands not run here
SKIPS: Tuple[Tuple[str, str], ...] = (
    (r"attention_dims --device cuda|TRITON_INTERPRET=0|--train\.pipeline prefetch|fused_uvm_caching|"
     r"download\.pytorch\.org|--gpu \d|pip install -e \.\[dev\]|python3 -m venv",
     "needs a GPU (the CUDA install and runs)"),
    (r"<scheduler>", "needs a cluster scheduler"),
    (r"^unzip|^mv .*data_format1|^mv data/tmall|--input data/(taobao|tmall)/|^git clone https://github\.com",
     "needs files this machine cannot download (Tianchi, GitHub); the reference checkout is cloned separately"),
    (r"--config configs/(taobao|tmall)\.yaml(?!.*--num-items)|--checkpoint runs/(taobao|tmall)-",
     "needs the real Taobao/Tmall files"),
    (r"--input logs/clicks\.parquet", "illustrates a user's own event log"),
    (r"^source \.venv/bin/activate$", "every command here runs with the venv on PATH"),
)
# (pattern, replacement, what changed): long commands made short; the replacement is applied with re.sub
SHORTER: Tuple[Tuple[str, str, str], ...] = (
    (r"^(dare-rec experiment .*?)--seeds( \d)+(.*)$", r"\1--seeds 1\3 -- --train.max_steps 6",
     "one seed, 6 training steps per run"),
    (r"^(torchx run .*components\.py:train.*?)( -- (.*))?$", r"\1 -- \3 --train.max_steps 20",
     "20 training steps"),
    (r"^(torchx run -- .*)$", r"\1 --train.max_steps 20", "20 training steps"),
    (r"^(dare-rec train .*)$", r"\1 --train.max_steps 20", "20 training steps"),
    (r"^(python -m benchmarks\.vs_official accuracy .*?)--seeds( \d)+(.*)$", r"\1--seeds 1\3 --epochs 1",
     "one seed, one epoch"),
    (r"^(python -m benchmarks\.vs_official accuracy (?!.*--seeds).*)$", r"\1 --seeds 1 --epochs 1",
     "one seed, one epoch"),
    (r"^(python -m benchmarks\.vs_official throughput .*)$", r"\1 --quick", "the quick shape"),
    (r"^(python -m benchmarks\.optimizer_study accuracy .*?)(\s+#.*)?$", r"\1 --seeds 1 --recipes adagrad_0.2",
     "one seed, one recipe"),
    (r"^(python -m benchmarks\.optimizer_study step-time)( --rounds \d+ --steps \d+)?(\s+#.*)?$",
     r"\1 --items 20000 --rounds 1 --steps 1 --batch-size 64 --max-len 50", "a small shape"),
    (r"^(python -m benchmarks\.optimizer_study report)(\s+#.*)?$", r"\1 --logs planted",
     "the one log measured above"),
    (r"^(python -m benchmarks\.train_throughput)(\s+#.*)?$", r"\1 --steps 10", "10 steps per setting"),
    (r"^(python -m benchmarks\.analysis_demo --train)(\s+#.*)?$", r"\1 --max-steps 20 --gradient-steps 10",
     "20 training steps, 10 gradient steps"),
    (r"^(python -m benchmarks\.long_history)(\s+#.*)?$",
     r"\1 --max-len 200 1000 --full-aux-at 1000 --rounds 1 --steps 3 --users 120 --behaviors 0",
     "N 200 and 1,000, 120 users, 3 steps, 1 round"),
    (r"^(python -m benchmarks\.candidates)(\s+#.*)?$", r"\1 --max-len 1000 --candidates 50 --rounds 1 --repeats 1",
     "N 1,000, 50 candidates, 1 round"),
    (r"--rows 10000000", "--rows 100000", "100k rows instead of 10M"),
)


@dataclass
class Command:
    source: str  # file:line
    written: str  # as the docs write it
    run: Optional[str] = None  # as run (None: skipped)
    note: str = ""  # why skipped or how shortened
    exit_code: Optional[int] = None
    seconds: Optional[float] = None
    log: str = ""


def commands_of(path: Path) -> List[Command]:
    """The command lines of ``path``'s bash blocks, continuations joined."""
    found: List[Command] = []
    fenced, shell, pending, start = False, False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):  # a fence opens a shell block unless it names another language
            fenced = not fenced
            shell = fenced and stripped[3:] in ("", "bash", "sh", "shell", "console")
            continue
        if not shell:
            continue
        if pending:
            pending += " " + stripped.rstrip("\\").strip()
        elif stripped.split(" ", 1)[0].split("=")[-1] in COMMAND_WORDS or re.match(r"^[A-Z_]+=\S+ \S", stripped):
            pending, start = stripped.rstrip("\\").strip(), number
        else:
            continue
        if not stripped.endswith("\\"):
            found.append(Command(f"{path.name}:{start}", re.sub(r"\s+", " ", pending)))
            pending = ""
    return found


def without_comment(command: str) -> str:
    """A command without its trailing ``# explanation``."""
    return re.sub(r"\s+#.*$", "", command).strip()


def plan(repo: Path) -> List[Command]:
    """Every command in reading order, with its skip or shortening decided."""
    commands = commands_of(repo / "README.md")
    for name in DOC_ORDER:
        commands += commands_of(repo / "docs" / name)
    seen = set()
    for c in commands:
        text = without_comment(c.written)
        skip = next((reason for pattern, reason in SKIPS if re.search(pattern, text)), None)
        if skip is None and text in seen:
            skip = "the same command ran above"
        if skip is not None:
            c.note = skip
            continue
        seen.add(text)
        run = text
        for pattern, replacement, what in SHORTER:
            shortened = re.sub(pattern, replacement, run)
            if shortened != run:
                run, c.note = shortened, (f"{c.note}; {what}" if c.note else f"shortened: {what}")
        c.run = run
    return commands


def execute(commands: List[Command], clone: Path, logs: Path, timeout_s: int) -> None:
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(clone / ".venv")}
    env.pop("PYTHONPATH", None)
    for index, c in enumerate(commands, start=1):
        if c.run is None:
            print(f"[{index}/{len(commands)}] skip {c.source}: {c.written} ({c.note})", flush=True)
            continue
        log = logs / f"{index:03d}.log"
        c.log = str(log)
        started = time.perf_counter()
        with open(log, "w") as out:
            out.write(f"$ {c.run}\n")
            out.flush()
            try:
                proc = subprocess.run(["bash", "-c", c.run], cwd=clone, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=timeout_s)
                c.exit_code = proc.returncode
            except subprocess.TimeoutExpired:
                c.exit_code = 124
        c.seconds = round(time.perf_counter() - started, 1)
        print(f"[{index}/{len(commands)}] exit {c.exit_code} in {c.seconds:.0f}s {c.source}: {c.run}", flush=True)


def markdown(commands: List[Command], clean: bool, head: str) -> str:
    lines = [f"# README and docs commands, run in order in a fresh clone (commit {head})", "",
             "| # | where | command as written | exit | s | note |", "|---|---|---|---|---|---|"]
    for i, c in enumerate(commands, start=1):
        shown = c.written.replace("|", "\\|")
        exit_code = "skipped" if c.run is None else str(c.exit_code)
        note = c.note + (f" (ran: `{c.run}`)" if c.run is not None and c.run != c.written else "")
        lines.append(f"| {i} | {c.source} | `{shown}` | {exit_code} | {c.seconds or ''} | {note.replace('|', '/')} |")
    ran = [c for c in commands if c.run is not None]
    lines += ["", f"{sum(c.exit_code == 0 for c in ran)} of {len(ran)} commands run exited 0; "
              f"{len(commands) - len(ran)} skipped. `git status` of the clone afterwards: "
              f"{'clean' if clean else 'NOT clean'}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.docs_commands", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=str(REPO), help="repository to clone (its committed HEAD)")
    parser.add_argument("--output", default=str(REPO / "runs" / "docs_commands"),
                        help="report folder (report.json, report.md, one log per command)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per command")
    parser.add_argument("--list", action="store_true", help="only print the plan (what would run, as what)")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    commands = plan(repo)
    if args.list:
        for c in commands:
            print(f"{c.source}: {c.run if c.run is not None else 'SKIP'}  [{c.note}]")
        return 0
    out = Path(args.output)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="docs-commands-") as tmp:
        clone = Path(tmp) / "dare_rec"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        execute(commands, clone, out / "logs", args.timeout)
        status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True,
                                text=True).stdout
    clean = not status.strip()
    (out / "report.json").write_text(json.dumps({"commit": head, "git_status_clean": clean, "git_status": status,
                                                 "commands": [asdict(c) for c in commands]}, indent=2) + "\n")
    (out / "report.md").write_text(markdown(commands, clean, head))
    failed = [c for c in commands if c.run is not None and c.exit_code != 0]
    print(f"{len(failed)} failed; git status {'clean' if clean else 'NOT clean'}; wrote {out / 'report.md'}")
    return 1 if failed or not clean else 0


if __name__ == "__main__":
    sys.exit(main())
