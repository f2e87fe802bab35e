"""Training runs on disk: finding run folders and reading their ``metrics.jsonl`` (no torch).

A run folder is any folder holding ``metrics.jsonl`` (written by ``dare-rec train``: events ``start``
{world_size, config, ...}, ``train`` {step, epoch, loss, samples_per_s}, ``val`` {step, auc, gauc_user,
gauc_category, logloss, ...}, ``end``). An experiment folder holds many run folders at any depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from dare_rec.config import ConfigError
from dare_rec.data.schema import DataError

METRICS_FILE = "metrics.jsonl"
VAL_METRICS = ("auc", "gauc_user", "gauc_category", "logloss")


@dataclass
class RunCurves:
    """One run's curves. ``train`` and ``val`` map a metric to ``(steps, values)``, sorted by step; where a
    resumed run logged a step twice the later record wins. ``samples_per_step`` is the global batch
    (data.batch_size x world_size of the last start event), 0 when unknown."""

    name: str
    path: Path
    train: Dict[str, Tuple[List[int], List[float]]] = field(default_factory=dict)
    val: Dict[str, Tuple[List[int], List[float]]] = field(default_factory=dict)
    samples_per_step: int = 0


def find_runs(paths: Sequence[str | Path]) -> List[Tuple[str, Path]]:
    """(name, run folder) for every run under ``paths``: a run folder itself (named by its folder name) or a
    folder searched recursively (runs named by their path relative to it)."""
    runs: List[Tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw)
        if (p / METRICS_FILE).is_file():
            runs.append((p.name or str(p), p))
            continue
        if not p.is_dir():
            raise ConfigError(f"plot: {str(p)!r} is neither a run folder nor an experiment folder")
        found = sorted(f.parent for f in p.rglob(METRICS_FILE))
        if not found:
            raise ConfigError(f"plot: no run under {str(p)!r} (no {METRICS_FILE} in it or below)")
        runs += [(str(f.relative_to(p)), f) for f in found]
    return runs


def read_run(name: str, path: Path) -> RunCurves:
    """Parses ``path/metrics.jsonl``; a malformed line raises DataError naming the file and line."""
    file = path / METRICS_FILE
    train: Dict[str, Dict[int, float]] = {}
    val: Dict[str, Dict[int, float]] = {}
    run = RunCurves(name, path)
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            kind = event["event"]
            if kind == "start":
                run.samples_per_step = int(event["config"]["data"]["batch_size"]) * int(event["world_size"])
            elif kind == "train":
                train.setdefault("loss", {})[int(event["step"])] = float(event["loss"])
            elif kind == "val":
                for key in VAL_METRICS:
                    if event.get(key) is not None:
                        val.setdefault(key, {})[int(event["step"])] = float(event[key])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{file}: line {number}: not a metrics record ({type(e).__name__}: {e})") from None
    run.train = {k: _sorted(v) for k, v in train.items()}
    run.val = {k: _sorted(v) for k, v in val.items()}
    return run


def _sorted(points: Dict[int, float]) -> Tuple[List[int], List[float]]:
    steps = sorted(points)
    return steps, [points[s] for s in steps]
