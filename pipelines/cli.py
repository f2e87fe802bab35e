"""The ``dare-rec`` command: one subcommand per job, each forwarding its arguments to that job's ``main``."""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

# subcommand -> (module with main(argv), one-line help). Modules are imported lazily: `dare-rec --help` and
# `dare-rec prepare` never pay for importing torchrec's distributed stack.
COMMANDS = {
    "prepare": ("dare_rec.pipelines.prepare", "write a dataset in the Parquet contract (synthetic data or real logs)"),
    "make-raw-logs": ("dare_rec.pipelines.make_raw_logs", "write a Taobao/Tmall/events-format raw log for scale tests"),
    "plan": ("dare_rec.sharding.cli", "print the sharding plan and per-rank memory for a world size"),
    "train": ("dare_rec.pipelines.train", "train (1 process here; use torchrun/torchx for several)"),
    "evaluate": ("dare_rec.pipelines.evaluate", "exact AUC / GAUC / logloss of a checkpoint on a split"),
    "experiment": ("dare_rec.pipelines.experiment", "variants x settings x seeds: train, evaluate, Table-1 report"),
    "analyze": ("dare_rec.pipelines.analyze", "attention quality, gradient conflict/domination, representation MI"),
    "plot": ("dare_rec.pipelines.plot", "training loss and validation metrics of runs, one PNG"),
}


def usage() -> str:
    lines = ["usage: dare-rec COMMAND [ARGS...]   (dare-rec COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<14} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"dare-rec: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
