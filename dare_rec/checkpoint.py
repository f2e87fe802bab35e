"""Checkpoints: sharded model + optimizer state via torch.distributed.checkpoint (DCP), written atomically.

Layout::

    <output_dir>/checkpoints/step-00001234/   .metadata, __<rank>_0.distcp  (DCP: model + optimizer)
                                              config.yaml       the resolved run config
                                              train_state.json  step, epoch, vocab sizes, metrics
    <output_dir>/checkpoints/latest           name of the newest complete checkpoint

Every rank writes its shards into a temporary folder; after a barrier rank 0 renames it into place and then
rewrites ``latest``, so a killed job never leaves a half-written checkpoint behind a valid name. DCP reshards
on load, so a checkpoint loads into any world size and sharding plan.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn

from dare_rec.config import Config, ConfigError, dump_config, from_dict
from dare_rec.distributed import DistEnv

CONFIG_FILE = "config.yaml"
STATE_FILE = "train_state.json"
LATEST = "latest"


def save_checkpoint(model: nn.Module, optimizer: Any, cfg: Config, state: Dict[str, Any], env: DistEnv) -> Path:
    """Saves ``model`` (a DistributedModelParallel) and ``optimizer`` under ``cfg.train.output_dir``.

    Args:
        state: JSON-serialisable training state (must hold "step").
    Returns:
        The checkpoint folder.
    """
    root = Path(cfg.train.output_dir) / "checkpoints"
    name = f"step-{state['step']:08d}"
    final, tmp = root / name, root / f".tmp-{name}"
    if env.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, checkpoint_id=str(tmp))
    dist.barrier()
    if env.is_main:
        dump_config(cfg, tmp / CONFIG_FILE)
        with open(tmp / STATE_FILE, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(name + "\n")
        os.replace(pointer, root / LATEST)
    dist.barrier()
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """Accepts a checkpoint folder, a run's ``checkpoints/`` folder, or a run's output_dir."""
    p = Path(path)
    for candidate in (p, p / "checkpoints"):
        if (candidate / LATEST).is_file():
            return candidate / (candidate / LATEST).read_text().strip()
    if (p / ".metadata").is_file() and (p / CONFIG_FILE).is_file():
        return p
    raise ConfigError(f"--checkpoint: {str(p)!r} is not a checkpoint (no .metadata + {CONFIG_FILE}, "
                      f"and no {LATEST} pointer)")


def read_checkpoint_info(path: Path) -> tuple[Config, Dict[str, Any]]:
    """The config and training state stored with a checkpoint."""
    with open(path / CONFIG_FILE) as f:
        cfg = from_dict(Config, yaml.safe_load(f), prefix="").validate()
    with open(path / STATE_FILE) as f:
        state = json.load(f)
    return cfg, state


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
