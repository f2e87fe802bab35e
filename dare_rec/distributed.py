"""Process-group setup, the few collectives the jobs need (gloo on CPU, nccl on GPU), and the rules that keep
a failing rank from hanging the others: errors published to every rank, a shared-folder check."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import numpy as np
import torch
import torch.distributed as dist

from dare_rec.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_s: float) -> DistEnv:
    """Joins the process group described by torchrun's environment, or makes a 1-process group.

    The backend is nccl when CUDA is available, else gloo. ``timeout_s`` bounds every collective, so a rank
    that dies or diverges makes the others fail instead of hanging.
    """
    timeout = timedelta(seconds=timeout_s)
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    else:
        rank, world_size, local_rank, local_world_size = 0, 1, 0, 1
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if world_size > 1 or "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    return DistEnv(rank, world_size, local_rank, local_world_size, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def global_sum(values: List[float], device: torch.device) -> List[float]:
    """Sums a few scalars over all ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank (pickled through the process group; small objects only)."""
    if env.world_size == 1:
        return obj
    holder = [obj if env.is_main else None]
    dist.broadcast_object_list(holder, src=0, device=env.device if env.device.type == "cuda" else None)
    return holder[0]


def gather_arrays(arrays: Dict[str, np.ndarray], env: DistEnv) -> Optional[Dict[str, np.ndarray]]:
    """Concatenates every rank's arrays on rank 0 (in rank order); other ranks get None."""
    gathered: List[Optional[Dict[str, np.ndarray]]] = [None] * env.world_size if env.is_main else []
    dist.gather_object(arrays, gathered if env.is_main else None, dst=0)
    if not env.is_main:
        return None
    return {k: np.concatenate([g[k] for g in gathered]) for k in arrays}


_TOKEN = ".shared-folder-check-"


def check_shared_folder(path: Path, env: DistEnv, field: str) -> None:
    """Fails on every rank, naming the ranks that differ, unless all ranks see ``path`` as one folder.

    Rank 0 writes a token file; every rank looks for it. Checkpoints and resume need this: each rank writes
    its own shards into the folder and every rank must find the checkpoint the job resumes from.
    """
    if env.world_size == 1:
        path.mkdir(parents=True, exist_ok=True)
        return
    token_name, main_path = broadcast_object((f"{_TOKEN}{uuid.uuid4().hex}", str(path)), env)
    token = path / token_name
    if env.is_main:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob(f"{_TOKEN}*"):  # left by a job killed during its check
            stale.unlink()
        token.write_text("")
    dist.barrier()
    seen = torch.zeros(env.world_size, dtype=torch.float64, device=env.device)
    seen[env.rank] = float(token.is_file())
    dist.all_reduce(seen)
    if env.is_main:
        token.unlink()
    missing = [r for r, s in enumerate(seen.tolist()) if not s]
    if missing:
        raise ConfigError(f"{field}: {main_path!r} is not one folder shared by all ranks: rank(s) "
                          f"{', '.join(map(str, missing))} do not see a file rank 0 wrote there. On several "
                          f"nodes it must be on a filesystem every node mounts at the same path")


# One key per rank and job attempt (a restarted worker group may see the store of the attempt before it).
_ERROR_KEY = "dare_rec_error_attempt_{}_rank_{}"


@contextlib.contextmanager
def errors_shared_across_ranks(env: DistEnv, clear_errors: Tuple[Type[Exception], ...]) -> Iterator[None]:
    """Makes one rank's error every rank's error instead of a hang or a backend message.

    A rank that raises publishes the error's type and message in the process group's store before the
    exception leaves the block. A rank whose collective then fails (the failing rank has left the group, so
    gloo reports a closed connection) looks up the published error and raises it as its own: an error of one
    of ``clear_errors`` keeps its type (the CLI prints it as one line, exit status 2), anything else becomes
    a RuntimeError naming the rank. Use it inside the process group's lifetime, around all collective work.
    """
    if env.world_size == 1:
        yield
        return
    store = dist.distributed_c10d._get_default_store()
    try:
        yield
    except RuntimeError as e:
        peer = _published_error(store, env, clear_errors)
        if peer is None:
            _publish(store, env, e)
            raise
        raise peer from None
    except Exception as e:
        _publish(store, env, e)
        raise


def _error_key(rank: int) -> str:
    return _ERROR_KEY.format(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"), rank)


def _publish(store: dist.Store, env: DistEnv, error: Exception) -> None:
    try:
        store.set(_error_key(env.rank), json.dumps({"type": type(error).__name__, "message": str(error)}))
    except Exception:  # the store may be gone with the rank that hosted it; the error still leaves this rank
        pass


def _published_error(store: dist.Store, env: DistEnv, clear_errors: Tuple[Type[Exception], ...],
                     wait_s: float = 5.0) -> Optional[Exception]:
    """The error another rank published (waiting up to ``wait_s`` for it), rebuilt as an exception."""
    deadline = time.monotonic() + wait_s
    keys = [_error_key(r) for r in range(env.world_size) if r != env.rank]
    while True:
        try:
            found = [k for k in keys if store.check([k])]
            if found:
                rank = int(found[0].rsplit("_", 1)[1])
                raw = json.loads(store.get(found[0]).decode())
                break
        except Exception:  # the store went away (its host rank exited): nothing to learn from it
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
    by_name = {cls.__name__: cls for cls in clear_errors}
    if raw["type"] in by_name:
        return by_name[raw["type"]](raw["message"] if raw["message"].startswith("rank ")
                                    else f"rank {rank}: {raw['message']}")
    return RuntimeError(f"rank {rank} failed with {raw['type']}: {raw['message']}")
