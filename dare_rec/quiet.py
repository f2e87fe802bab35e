"""Silences the library warnings known to be harmless in this pipeline, so that a successful run prints only
warnings that mean something. Each filter says why its warning does not apply; anything not listed here is
left alone. The jobs call :func:`quiet_known_warnings` first thing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Tuple

# (logger name, message start, short reason): library log warnings that do not apply here, and why.
_KNOWN_LOGS: Tuple[Tuple[str, str, str], ...] = (
    # We build the Topology ourselves, with the world size, device and memory caps of the run; the planner
    # tests cover the plans it gives. (TorchRec's message ends "otherwise, the job will fail": it does not.)
    ("torchrec.distributed.planner.types", "The topology was constructed directly", "topology"),
    # Our tables are materialised by the planner's plan; the reservation estimate is a heuristic only.
    ("torchrec.distributed.planner.storage_reservations", "There is a known issue with TorchRec's dense tensor",
     "dry-run estimate"),
    # The planner also enumerates the data-parallel option of every table and drops it because its dense
    # kernel is not our fused one: that is the constraint doing its job.
    ("torchrec.distributed.planner.enumerators", "No available compute kernels after applying user provided",
     "filtered options"),
    # CPU runs have one stream: the batch-side modules run in order, there is nothing to race with.
    ("torchrec.distributed.train_pipeline.postproc", "Postproc module", "no dist stream on CPU"),
    # Reported by the job itself in one line (which collections overlap their input distribution and why the
    # selected behaviors' lookup cannot).
    ("torchrec.distributed.train_pipeline.utils", "Module '", "not pipelined"),
    ("torchrec.distributed.train_pipeline.utils", "Sharded modules were not pipelined", "not pipelined"),
    # torch.fx notes the tracing API TorchRec's pipeline calls; nothing to act on.
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true", "fx API note"),
    # train.sparse_optimizer dense_adam: replicated (data-parallel) tables have no sharding spec and no cache by
    # design (TorchRec logs both through the root logger and its utils).
    ("root", "Sharding spec not found for", "replicated tables"),
    ("torchrec.distributed.utils", "Sharding Type is data_parallel, caching params will be ignored",
     "replicated tables"),
)


class _DropKnown(logging.Filter):
    def __init__(self, starts: Tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def quiet_known_warnings() -> None:
    """Installs the filters (idempotent)."""
    by_logger: dict = {}
    for name, start, _ in _KNOWN_LOGS:
        by_logger.setdefault(name, []).append(start)
    for name, starts in by_logger.items():
        logger = logging.getLogger(None if name == "root" else name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(tuple(starts)))
    # TorchRec's own planner default and its DDP wrapper arguments, not choices of ours.
    warnings.filterwarnings("ignore", message="HeuristicalStorageReservation is known", category=FutureWarning)
    warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
    # FBGEMM registers the dense (data-parallel) tables' backward through a Python autograd function; the
    # gradient is exact (dense_adam's sharded-parity test compares the updates with plain PyTorch).
    warnings.filterwarnings("ignore", message="fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel")
    # TorchRec's sharded state (tables and their optimizer state) is ShardedTensor, which DCP saves and loads
    # while announcing DTensor as its successor; the resume tests cover the round trip.
    warnings.filterwarnings("ignore", message="Please use DTensor instead and we are deprecating ShardedTensor")
    # torch's @record cannot install its fault handler on a captured stderr (tests, notebooks); nothing is lost.
    warnings.filterwarnings("ignore", message="Unable to enable fault handler")
