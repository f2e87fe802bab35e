"""The reference code (thuml/DARE) as both tools use it: its script flags, its sources' hash, and its model
factory imported from a user's checkout, unmodified."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks import REPO as ROOT


# The reference script's flags shared by its DARE and baseline lines (scripts/taobao.sh); the dataset-,
# protocol- and seed-dependent ones are added per run.
OFFICIAL_BASE_FLAGS: Dict[str, Optional[str]] = {
    "-short_model_type": "DIN", "-long_model_type": "DIN", "-use_cross_feature": "True",
    "-attn_func": "scaled_dot_product", "-hard_or_soft": "soft", "-top_k": "20", "-use_aux_loss": "True",
    "-use_time_mode": "concat", "-time_embedding_dim": "16", "-category_embedding_dim": "16",
    "-learning_rate": "0.01", "-weight_decay": "0.000001", "-log_interval": "50",
}
# Our variant -> how its taobao.sh line differs from the base (None: a switch without value; a flag mapped
# to the string "<drop>" is left out).
OFFICIAL_MODELS: Dict[str, Dict[str, Optional[str]]] = {
    "dare": {"-model_name": "DARE"},
    "twin": {"-model_name": "twin"},
    "twin_no_tr": {"-model_name": "twin", "-use_cross_feature": "<drop>"},
    "twin_hard": {"-model_name": "twin", "-hard_or_soft": "hard"},
    "twin_4e": {"-model_name": "four_embedding"},
    "twin_proj": {"-model_name": "projection", "-mlp_position_after_concat": None},
    "din": {"-model_name": "DIN", "-attn_func": "learnable", "-use_time": None},
}
# Files of the reference checkout whose content defines what it computes (hashed into the cache key).
OFFICIAL_SOURCES = ("train_pytorch.py", "dataset.py", "utils.py", "model/*.py", "tools/*.py")


class HarnessError(RuntimeError):
    """A run failed or the inputs cannot be compared; the message says which and where its log is."""



def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def source_hash(root: Path, patterns: Sequence[str], exclude: Sequence[str] = ()) -> str:
    """sha256 over the named source files of a checkout (relative path + content), in sorted order."""
    h = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.glob(pattern)
                    if p.is_file() and str(p.relative_to(root)) not in exclude})
    if not files:
        raise HarnessError(f"{root}: none of {list(patterns)} found")
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()



def script_argv(flags: Dict[str, Optional[str]]) -> List[str]:
    """Flag -> value (None: a switch; "<drop>": left out) as an argument list."""
    argv: List[str] = []
    for flag, value in flags.items():
        if value == "<drop>":
            continue
        argv += [flag] if value is None else [flag, value]
    return argv


def shown_path(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)



def _module_inside(module: Any, root: Path) -> bool:
    paths = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []))]
    return any(p is not None and Path(p).resolve().is_relative_to(root) for p in paths)


def load_official_factory(repo: Path) -> Callable[[List[str]], Tuple[Any, argparse.Namespace]]:
    """``flags -> (model, args)`` through the checkout's own argument parser and model factory
    (``train_pytorch.get_args`` and ``create_model``), imported from ``repo`` unmodified.

    Nothing is written into the checkout (no bytecode), and the modules it brings in (``train_pytorch``,
    ``model``, ``dataset``, ``utils``, ``tools``) are taken out of ``sys.modules`` again, so nothing else
    resolves those generic names to it. Raises HarnessError when one of them is already imported from
    elsewhere (the checkout would import the wrong module).
    """
    repo = repo.resolve()
    if not (repo / "train_pytorch.py").is_file():
        raise HarnessError(f"--official-repo {repo}: no train_pytorch.py (a thuml/DARE checkout?)")
    own = {p.stem for p in repo.glob("*.py")} | {p.name for p in repo.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    for name in sorted(own):
        if name in sys.modules and not _module_inside(sys.modules[name], repo):
            raise HarnessError(f"--official-repo: the checkout's module {name!r} is shadowed by the already "
                               f"imported {sys.modules[name]!r}")
    before = set(sys.modules)
    bytecode = sys.dont_write_bytecode
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True
    try:
        trainer = importlib.import_module("train_pytorch")
    finally:
        sys.path.remove(str(repo))
        sys.dont_write_bytecode = bytecode
        for name in set(sys.modules) - before:
            if _module_inside(sys.modules[name], repo):
                del sys.modules[name]

    def build(flags: List[str]) -> Tuple[Any, argparse.Namespace]:
        argv = sys.argv
        sys.argv = ["train_pytorch.py", *flags]  # its parser reads sys.argv
        try:
            args = trainer.get_args()
        except SystemExit:
            raise HarnessError(f"the reference argument parser refused: {shlex.join(flags)}") from None
        finally:
            sys.argv = argv
        return trainer.create_model(args.long_model_type, args), args

    return build


