"""``python -m tests.demo_numbers EVAL_JSON``: the demo's metrics against the README's quick-start table.

``make demo`` runs it after printing the metrics, so a change that moves the demo's numbers fails there until the
README says what the demo prints (each value as shown, 4 decimals). Exit 0 when they agree, 1 with the
differences otherwise, 2 when a file cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

README = Path(__file__).resolve().parents[1] / "README.md"
# README row label -> (model metric, oracle metric) in dare-rec evaluate's JSON
ROWS = {"AUC": ("auc", "oracle_auc"), "GAUC by user": ("gauc_user", None),
        "GAUC by target category": ("gauc_category", None), "logloss": ("logloss", "oracle_logloss")}


def readme_table(text: str) -> Dict[str, str]:
    """Metric -> the value the README's quick-start table shows (``key`` and ``oracle key``)."""
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    shown: Dict[str, str] = {}
    for line in quick.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ROWS:
            model, oracle = ROWS[cells[0]]
            shown[model] = cells[1]
            if oracle:
                shown[oracle] = cells[2]
    return shown


def differences(metrics: Dict[str, float], shown: Dict[str, str]) -> List[str]:
    return [f"{key}: the demo printed {metrics[key]:.4f}, the README shows {value}"
            for key, value in shown.items() if f"{metrics[key]:.4f}" != value]


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.demo_numbers EVAL_JSON", file=sys.stderr)
        return 2
    try:
        metrics = json.loads(Path(args[0]).read_text())
        shown = readme_table(README.read_text())
    except (OSError, ValueError, IndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(shown) != 6:
        print(f"error: {README}: the quick-start metrics table has {len(shown)} of 6 values", file=sys.stderr)
        return 2
    wrong = differences(metrics, shown)
    for line in wrong:
        print(f"README out of date: {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
