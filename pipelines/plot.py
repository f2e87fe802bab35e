"""Training curves: ``dare-rec plot RUN [RUN ...] [--output FILE.png]``.

Each argument is a run folder (``dare-rec train``'s output_dir, holding ``metrics.jsonl``) or a folder with run
folders at any depth (an experiment's output), whose runs are all plotted. One PNG: training loss and
validation AUC / GAUC (by user) / logloss against steps (top row) and training samples (bottom row), one
line per run, named in the legend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from dare_rec.analysis.plots import training_curves
from dare_rec.analysis.runs import find_runs, read_run
from dare_rec.pipelines.errors import cli_errors


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dare-rec plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder or folder of runs")
    parser.add_argument("--output", default="runs/training-curves.png", help="PNG file (default: %(default)s)")
    return parser.parse_args(argv)


@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    runs = [read_run(name, path) for name, path in find_runs(args.runs)]
    training_curves(runs, Path(args.output))
    print(f"wrote {args.output} ({len(runs)} run{'s' if len(runs) != 1 else ''}: "
          f"{', '.join(r.name for r in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
