"""The evaluation loop's batch stream, shared by prediction (pipelines/common.py) and the analyses.

Every rank must take the same number of forward steps (the sharded model's collectives run in lockstep), so a
rank whose rows ran out feeds a padding batch whose outputs the caller drops.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

from torch import nn
from tqdm import tqdm

from dare_rec.data.batch import Batch, padding_batch
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.distributed import DistEnv


def lockstep_batches(model: nn.Module, reader: ParquetBatchReader, env: DistEnv, desc: str,
                     progress: bool = True) -> Iterator[Tuple[Batch, Optional[Batch]]]:
    """Yields ``(inputs on env.device, batch or None)`` for the busiest rank's number of steps, with ``model``
    in eval mode; ``batch`` is None where ``inputs`` is padding. Closes the reader's epoch and puts the model
    back in train mode when the stream ends or is closed. Callers run their forward under ``torch.no_grad()``.
    """
    steps = reader.max_batches_any_rank()
    model.eval()
    batches = reader.epoch(0)
    try:
        for _ in tqdm(range(steps), desc=desc, unit="batch", leave=False, disable=not (progress and env.is_main)):
            batch = next(batches, None)
            inputs = batch if batch is not None else padding_batch(reader.side_keys, reader.target_side_keys)
            yield inputs.to(env.device, non_blocking=True), batch
    finally:
        batches.close()
        model.train()
