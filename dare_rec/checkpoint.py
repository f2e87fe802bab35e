"""Checkpoints: sharded model + optimizer state via torch.distributed.checkpoint (DCP), written atomically and
durably, with ``latest`` and ``best`` pointers.

Layout::

    <output_dir>/checkpoints/step-00001234/   .metadata, __<rank>_0.distcp  DCP: every rank's table shards and
                                                                           their fused optimizer state, the
                                                                           dense weights and their Adam state
                                              config.yaml                  the resolved run config
                                              train_state.json             step, data position, best, ...
                                              rank-00000.json ...          per rank: RNG states, loss window
                                              manifest.json                size and sha256 of every file above
    <output_dir>/checkpoints/latest           name of the newest complete checkpoint
    <output_dir>/checkpoints/best             name of the checkpoint with the best validation metric

Writing (every rank): the shards go into ``.tmp-step-XXXXXXXX/`` (DCP fsyncs each file); each rank adds its
rank file; after a barrier rank 0 adds config and state, then the manifest of every file (``dare_rec/manifest.py``),
fsyncs them and the folder, renames the folder into place, fsyncs ``checkpoints/``, then replaces ``latest``
(and ``best``) through a fsynced temporary file and a rename. Only then are checkpoints beyond
``train.keep_checkpoints`` removed, never the one ``best`` names. A kill at any moment leaves ``latest`` naming
a complete checkpoint (or no pointer at all before the first).

Reading: the manifest is checked before a checkpoint is used (config and state when they are read, every file
before a resume or an evaluation loads the shards), so damage after the write (a truncated or overwritten
file) is a :class:`CheckpointError` naming the file. A resume whose ``latest`` checkpoint is damaged continues
from the newest earlier intact one, and sets the damaged ones aside as ``damaged-step-XXXXXXXX/``.
DCP reshards on load, so a checkpoint loads into any world size and sharding plan.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn

from dare_rec.config import Config, ConfigError, from_dict, to_dict
from dare_rec.data.schema import DataError, DatasetMeta, dataset_fingerprint
from dare_rec.distributed import DistEnv, broadcast_object
from dare_rec.durable import fsync_dir
from dare_rec.manifest import MANIFEST, CheckpointError, manifest_text, verify_checkpoint

CHECKPOINTS = "checkpoints"
CONFIG_FILE = "config.yaml"
STATE_FILE = "train_state.json"
RANK_FILE = "rank-{:05d}.json"
LATEST = "latest"
BEST = "best"
POINTERS = (LATEST, BEST)
_NAME = re.compile(r"^step-(\d{8,})$")
_TMP = ".tmp-"
_DAMAGED = "damaged-"


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(model: nn.Module, optimizer: Any, cfg: Config, state: Dict[str, Any],
                    rank_state: Dict[str, Any], env: DistEnv, best: bool) -> Path:
    """Saves ``model`` (a DistributedModelParallel) and ``optimizer`` under ``cfg.train.output_dir``.

    Collective: every rank calls it with the same ``state`` and ``best``.

    Args:
        state: JSON-serialisable training state (rank 0's is written; must hold "step", and "best" with the
            name of the best checkpoint so far, which is never removed).
        rank_state: this rank's JSON-serialisable state (RNG states, loss window).
        best: this checkpoint is the new best: point ``best`` at it.
    Returns:
        The checkpoint folder.
    """
    root = checkpoints_dir(cfg.train.output_dir)
    name = checkpoint_name(state["step"])
    final, tmp = root / name, root / f"{_TMP}{name}"
    if env.is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    dist.barrier()
    dcp.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, checkpoint_id=str(tmp))
    _write_durably(tmp / RANK_FILE.format(env.rank), json.dumps(rank_state))
    dist.barrier()
    if env.is_main:
        _write_durably(tmp / CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
        _write_durably(tmp / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
        # Last: it lists every file above. Hashing reads the whole checkpoint once more (see dare_rec/manifest.py
        # for the cost); the shards are still in the page cache, so it costs CPU time, not disk reads.
        _write_durably(tmp / MANIFEST, manifest_text(tmp))
        fsync_dir(tmp)
        if final.exists():  # left by an attempt killed after this step; resume made sure no pointer names it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        set_pointer(root, LATEST, name)
        if best:
            set_pointer(root, BEST, name)
        protect = {name} | ({state["best"]["checkpoint"]} if state.get("best") else set())
        _prune(root, cfg.train.keep_checkpoints, protect)
    dist.barrier()
    return final


def set_pointer(root: Path, pointer: str, name: str) -> None:
    """Atomically and durably makes ``root/pointer`` name checkpoint ``name``."""
    tmp = root / f".{pointer}.tmp"
    _write_durably(tmp, name + "\n")
    os.replace(tmp, root / pointer)
    fsync_dir(root)


def read_pointer(root: Path, pointer: str) -> Optional[Path]:
    """The checkpoint a pointer names, or None if there is no such pointer."""
    path = root / pointer
    if not path.is_file():
        return None
    return root / path.read_text().strip()


def list_checkpoints(root: Path) -> List[Tuple[int, Path]]:
    """(step, folder) of every checkpoint folder under ``root`` (complete or orphaned), by step."""
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
    return sorted(found)


def _prune(root: Path, keep: int, protect: Iterable[str]) -> None:
    """Removes all but the newest ``keep`` checkpoints and the protected ones, and stale temporary folders."""
    checkpoints = list_checkpoints(root)
    kept = {p.name for _, p in checkpoints[-keep:]} | set(protect)
    for _, path in checkpoints:
        if path.name not in kept:
            shutil.rmtree(path)
    for path in root.glob(f"{_TMP}*"):
        shutil.rmtree(path)


def prepare_resume(root: Path, state: Dict[str, Any]) -> None:
    """Rank 0, before a resumed run trains: the checkpoint ``latest`` names becomes the newest one.

    Folders of later steps (written after ``latest`` by an attempt that was killed before moving the
    pointer) and temporary folders are removed, and ``best`` is set from the resumed state, so every pointer
    agrees with the trajectory the run continues.
    """
    for step, path in list_checkpoints(root):
        if step > state["step"]:
            shutil.rmtree(path)
    for path in root.glob(f"{_TMP}*"):
        shutil.rmtree(path)
    if state.get("best"):
        set_pointer(root, BEST, state["best"]["checkpoint"])
    elif (root / BEST).exists():
        (root / BEST).unlink()
        fsync_dir(root)


def is_complete(path: Path) -> bool:
    return (path / ".metadata").is_file() and (path / STATE_FILE).is_file() and (path / CONFIG_FILE).is_file()


def resolve_checkpoint(path: str | Path, pick: str = BEST) -> Path:
    """The checkpoint folder :func:`pick_checkpoint` chooses."""
    return pick_checkpoint(path, pick)[0]


def pick_checkpoint(path: str | Path, pick: str = BEST) -> Tuple[Path, str]:
    """The checkpoint to evaluate and how it was chosen.

    Accepts a checkpoint folder (used as is), or a run's output_dir or its ``checkpoints/`` folder: then the
    checkpoint the ``pick`` pointer names (``best``, falling back to ``latest`` when the run has no best
    yet, or ``latest``). Returns (folder, "best" | "latest" | "given").
    """
    if pick not in POINTERS:
        raise ConfigError(f"--pick: must be one of {POINTERS}, got {pick!r}")
    p = Path(path)
    if is_complete(p):
        return p, "given"
    for root in (p, p / CHECKPOINTS):
        for pointer in ((BEST, LATEST) if pick == BEST else (LATEST,)):
            target = read_pointer(root, pointer)
            if target is not None:
                if not is_complete(target):
                    raise ConfigError(f"--checkpoint: {root / pointer} names {target.name}, which is missing or "
                                      f"incomplete")
                return target, pointer
    raise ConfigError(f"--checkpoint: {str(p)!r} is not a checkpoint (no .metadata + {CONFIG_FILE} + "
                      f"{STATE_FILE}, and no {LATEST} pointer)")


def read_checkpoint_info(path: Path) -> Tuple[Config, Dict[str, Any]]:
    """The config and training state stored with a checkpoint, checked against its manifest first."""
    verify_checkpoint(path, [CONFIG_FILE, STATE_FILE])
    try:
        with open(path / CONFIG_FILE, encoding="utf-8") as f:
            cfg = from_dict(Config, yaml.safe_load(f), prefix="").validate()
    except (yaml.YAMLError, ValueError, TypeError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"{path / CONFIG_FILE}: not a valid run config: {str(e).splitlines()[0]}") from None
    state = _read_json(path / STATE_FILE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path / STATE_FILE}: not a training state (no integer 'step')")
    return cfg, state


def read_rank_state(path: Path, rank: int) -> Optional[Dict[str, Any]]:
    """A rank's own state from a checkpoint (None if that rank did not exist when it was written)."""
    file = path / RANK_FILE.format(rank)
    return _read_json(file) if file.is_file() else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path}: not valid JSON: {e}") from None


def verify_on_main(path: Path, env: DistEnv) -> None:
    """Rank 0 checks every file of a checkpoint against its manifest; every rank raises its CheckpointError.

    Collective (before the shards are loaded): one rank reads the checkpoint instead of all of them."""
    error = None
    if env.is_main:
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            error = str(e)
    error = broadcast_object(error, env)
    if error is not None:
        raise CheckpointError(error)


def resumable_checkpoint(root: Path, warn: Callable[[str], None]) -> Optional[Path]:
    """The checkpoint a resumed run continues from: the one ``latest`` names, or, when that one is missing,
    incomplete or damaged, the newest earlier intact one (None when there is no ``latest`` pointer).

    Every file of a candidate is checked against its manifest. Damaged candidates are renamed to
    ``damaged-step-XXXXXXXX`` (kept for inspection; the resumed run writes that step again) and reported
    through ``warn``, and ``latest`` is pointed at the checkpoint chosen. Raises CheckpointError when no
    checkpoint is intact.
    """
    latest = read_pointer(root, LATEST)
    if latest is None:
        return None
    match = _NAME.match(latest.name)
    candidates = [latest] + [path for step, path in reversed(list_checkpoints(root))
                             if path != latest and (match is None or step < int(match.group(1)))]
    problems = []
    for path in candidates:
        try:
            if not is_complete(path):
                raise CheckpointError(f"{path}: missing or incomplete (needs .metadata, {CONFIG_FILE} and "
                                      f"{STATE_FILE})")
            verify_checkpoint(path)
            read_checkpoint_info(path)
            if path != latest:
                set_pointer(root, LATEST, path.name)
            return path
        except CheckpointError as e:
            problems.append(str(e))
            aside = ""
            if path.is_dir():
                target = root / f"{_DAMAGED}{path.name}"
                if target.exists():
                    shutil.rmtree(target)
                os.replace(path, target)
                aside = f" (moved to {target.name})"
            warn(f"{e}; skipping checkpoint {path.name}{aside}")
    raise CheckpointError(f"{root}: no intact checkpoint to resume from ({len(candidates)} tried; the latest: "
                          f"{problems[0]}); delete the run or start over with --train.resume never "
                          f"--train.overwrite true")


# Config fields a resumed run must share with its checkpoint: they define the model and its state keys (the
# sparse optimizer's state, the table lookup), the rows of every batch and the shuffles. Everything else
# (epochs, max_steps, validation, logging, checkpoint cadence, timeouts, sharding plan, learning rates) may
# change between attempts.
RESUME_FIXED = ("model.", "data.batch_size", "data.max_len", "train.seed", "train.sparse_optimizer",
                "sharding.lookup")


def check_vocabulary(meta: DatasetMeta, state: Dict[str, Any], data_path: str, checkpoint: Path) -> None:
    """The dataset's vocabulary sizes are the checkpoint's (else ids would mean other rows of the tables)."""
    if (meta.num_items, meta.num_categories) != (state["num_items"], state["num_categories"]):
        raise DataError(f"{data_path}: vocabulary sizes (items {meta.num_items}, categories "
                        f"{meta.num_categories}) differ from those of checkpoint {checkpoint} (items "
                        f"{state['num_items']}, categories {state['num_categories']}); the ids would not mean the "
                        f"same things")


def check_resumable(saved: Config, cfg: Config, state: Dict[str, Any], meta: DatasetMeta, world_size: int,
                    checkpoint: Path) -> None:
    """Refuses to continue ``checkpoint`` with a config, dataset or world size that would change the run."""
    how = ("use another train.output_dir, or start over with --train.resume never --train.overwrite true")
    old, new = _flatten(to_dict(saved)), _flatten(to_dict(cfg))
    for key in sorted(new):
        if key.startswith(RESUME_FIXED) and old.get(key) != new[key]:
            raise ConfigError(f"{key}: {new[key]!r} differs from {old.get(key)!r} in checkpoint {checkpoint}, "
                              f"which train.resume auto would continue; {how}")
    check_vocabulary(meta, state, cfg.data.path, checkpoint)
    if state["dataset"] != dataset_fingerprint(meta):
        raise DataError(f"{cfg.data.path}: not the dataset checkpoint {checkpoint} was trained on (meta.json's "
                        f"files, counts or vocabularies differ); {how}")
    if state["world_size"] != world_size:
        raise ConfigError(f"train.resume: checkpoint {checkpoint} was written by a job of {state['world_size']} "
                          f"process(es) and this job has {world_size}; the data position (rows dealt to each "
                          f"rank) only holds for the same number. Rerun with {state['world_size']}, or {how}")


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_model_state(model: nn.Module, path: Path, optimizer: Optional[Any] = None) -> None:
    """Loads model (and optimizer) state from a checkpoint into a DistributedModelParallel, resharding."""
    state: Dict[str, Any] = {"model": model.state_dict()}
    if optimizer is not None:
        optimizer.init_state()  # materialise lazy optimizer state so the in-place load fills it
        state["optim"] = optimizer.state_dict()
    dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optim"])


def remove_run(output_dir: str | Path) -> None:
    """Deletes what a training run wrote into ``output_dir`` (checkpoints, metrics, sample trace)."""
    out = Path(output_dir)
    for name in (CHECKPOINTS, "trace"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    (out / "metrics.jsonl").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# RNG states (kept per rank: each rank's generators advance on their own)
# --------------------------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _unb64(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def rng_states() -> Dict[str, Any]:
    """torch (CPU and every CUDA device), numpy's global and Python's ``random`` generator states, as JSON."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(states["torch"]))
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in states["cuda"]])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------------
# Durable writes
# --------------------------------------------------------------------------------------------------


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
