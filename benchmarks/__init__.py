"""Benchmarks and harnesses, run from a checkout (``python -m benchmarks.<name>``); not installed.

Every benchmark writes to ``runs/benchmarks/`` (git-ignored) unless its ``--output`` / ``--results-dir`` names
another place: the committed results under ``benchmarks/results/`` change only when a command asks for them.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # committed results
SCRATCH = REPO / "runs" / "benchmarks"  # the default output of every benchmark
