"""Runs a function on several gloo ranks in spawned processes, failing (not hanging) after a timeout."""

from __future__ import annotations

import faulthandler
import os
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world_size: int, init_file: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    # a rank that aborts (SIGABRT, SIGSEGV) prints every thread's Python stack: where it died, not only that it did
    faulthandler.enable(all_threads=True)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    try:
        fn(rank, world_size, *args)
    finally:
        if dist.is_initialized():  # fn may have shut the group down itself (the jobs do)
            dist.destroy_process_group()
    # A rank that returned has done what its test checks: it leaves without the interpreter's teardown. Gloo's
    # worker threads drop the last reference to a finished async op (an all-to-all of the input distribution)
    # after the op completed; when its tensors have Python objects that decref needs the GIL, and a worker
    # asking for the GIL once the interpreter is finalizing is ended by pthread_exit inside a noexcept frame:
    # std::terminate, SIGABRT ("terminate called without an active exception"; core dump: ProcessGroupGloo::
    # runLoop -> ~AsyncAlltoallWork -> TensorImpl::decref_pyobject -> take_gil -> PyThread_exit_thread). It hit
    # 6 of 127 runs of the 8-model pipelining test in a loop (and CI); 0 of 80 leaving this way. A rank that raised exits through
    # torch's error path; the jobs' own exit codes are checked where they run as processes (test_jobs, demo).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_on_ranks(fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 180.0) -> None:
    """Calls ``fn(rank, world_size, *args)`` on every rank; raises if any rank fails or time runs out.

    ``fn`` must be a module-level function (it is pickled into spawned processes).
    """
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.start_processes(_worker, args=(world_size, os.path.join(tmp, "init"), fn, args),
                                 nprocs=world_size, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(deadline - time.monotonic(), 0.0)):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{fn.__name__} did not finish on {world_size} ranks in {timeout:.0f}s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
