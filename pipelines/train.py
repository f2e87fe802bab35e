"""Training job: ``dare-rec train`` / ``python -m pipelines.train`` / torchrun / torchx (``launch/``).

One process or many (SPMD): every rank reads its own shard of the training files, the embedding tables are
sharded by the TorchRec planner, and the TorchRec sparse-dist train pipeline overlaps the next batch's input
distribution with the current step. Validation runs every ``train.val_every`` steps and at the end of every
epoch; a DCP checkpoint is written at the end; rank 0 appends metrics to ``<output_dir>/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from torch.distributed.elastic.multiprocessing.errors import record
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from tqdm import tqdm

from dare_rec.checkpoint import save_checkpoint
from dare_rec.config import Config, config_help, load_config, to_dict
from dare_rec.data.batch import Batch
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.schema import DatasetMeta
from dare_rec.distributed import DistEnv, global_sum, init_distributed, shutdown
from dare_rec.optim import build_optimizer
from pipelines.common import build_sharded_model, evaluate_split
from pipelines.errors import cli_errors


class MetricsLog:
    """Appends one JSON object per event to ``metrics.jsonl`` (rank 0 only; a no-op elsewhere)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")


def _batch_stream(reader: ParquetBatchReader, epochs: int) -> Iterator[Batch]:
    for epoch in range(epochs):
        batches = reader.epoch(epoch)
        try:
            yield from batches
        finally:
            batches.close()


def _validation_steps(steps_per_epoch: int, total: int, val_every: int) -> List[int]:
    """Steps after which to validate: every ``val_every``, every epoch end, and the last step."""
    points = set(range(steps_per_epoch, total + 1, steps_per_epoch)) | {total}
    if val_every:
        points |= set(range(val_every, total + 1, val_every))
    return sorted(points)


class ThroughputMeter:
    """Global (all-rank) loss and samples/s over logging windows; time outside training is not counted."""

    def __init__(self) -> None:
        self.train_time = 0.0
        self.total_samples = 0.0
        self._loss_sum = self._samples = 0.0
        self._started = time.perf_counter()

    def resume(self) -> None:
        """Starts timing again (after validation)."""
        self._started = time.perf_counter()

    def add(self, loss_sum: float, samples: float) -> None:
        self._loss_sum += loss_sum
        self._samples += samples

    def flush(self) -> tuple[float, float]:
        """Mean loss and samples/s of the window since the last flush or resume; starts a new window."""
        now = time.perf_counter()
        elapsed = max(now - self._started, 1e-9)
        loss, rate = self._loss_sum / self._samples, self._samples / elapsed
        self.train_time += elapsed
        self.total_samples += self._samples
        self._loss_sum = self._samples = 0.0
        self._started = now
        return loss, rate


def _step(pipeline: TrainPipelineSparseDist, batches: Iterator[Batch], step: int, env: DistEnv,
          meter: ThroughputMeter) -> None:
    """One pipelined training step; stops every rank if any rank's loss is not finite."""
    loss_t, _, labels = pipeline.progress(batches)
    loss = loss_t.item()
    loss_sum, bad_ranks, samples = global_sum(
        [loss * labels.numel(), float(not math.isfinite(loss)), float(labels.numel())], env.device)
    if bad_ranks:
        raise FloatingPointError(
            f"non-finite training loss at step {step} on {int(bad_ranks)} rank(s) (rank {env.rank} loss {loss}); "
            f"stopping before anything is checkpointed. Lower train.sparse_lr / train.dense_lr or check the data.")
    meter.add(loss_sum, samples)


def train(cfg: Config, meta: DatasetMeta, env: DistEnv) -> Dict[str, Any]:
    """Trains on ``cfg.data.path`` and returns the run summary (identical on every rank but ``final_val``)."""
    log = MetricsLog(Path(cfg.train.output_dir) / "metrics.jsonl", env.is_main)
    model = build_sharded_model(cfg, meta, env)
    optimizer = build_optimizer(model, cfg.train)
    reader_args = dict(root=cfg.data.path, max_len=cfg.data.max_len, rank=env.rank, world_size=env.world_size,
                       prefetch_batches=cfg.data.prefetch_batches, pin_memory=env.device.type == "cuda")
    train_reader = ParquetBatchReader(split="train", batch_size=cfg.data.batch_size, shuffle=True, drop_last=True,
                                      seed=cfg.train.seed, **reader_args)
    val_reader = ParquetBatchReader(split="val", batch_size=cfg.data.eval_batch_size, **reader_args)
    steps_per_epoch = train_reader.num_batches()
    total = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    log.write("start", world_size=env.world_size, steps_per_epoch=steps_per_epoch, total_steps=total,
              dataset=meta.source, config=to_dict(cfg), plan=str(model.plan))

    def epoch_of(step: int) -> int:
        return (step - 1) // steps_per_epoch

    pipeline = TrainPipelineSparseDist(model, optimizer, env.device, execute_all_batches=True)
    stream = _batch_stream(train_reader, cfg.train.epochs)
    bar = tqdm(total=total, desc="train", unit="step", disable=not env.is_main, dynamic_ncols=True)
    meter = ThroughputMeter()
    step = 0
    val_metrics: Optional[Dict[str, float]] = None
    try:
        for val_step in _validation_steps(steps_per_epoch, total, cfg.train.val_every):
            # Each segment between validations is its own iterator, so the pipeline drains completely
            # before validation runs the plain (detached) model forward.
            segment = itertools.islice(stream, val_step - step)
            meter.resume()
            while step < val_step:
                step += 1
                _step(pipeline, segment, step, env, meter)
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == val_step:
                    loss, rate = meter.flush()
                    bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{rate:,.0f}")
                    log.write("train", step=step, epoch=epoch_of(step), loss=loss, samples_per_s=rate)
            pipeline.detach()
            val_started = time.perf_counter()
            val_metrics = evaluate_split(model, val_reader, env, desc="validate")
            if env.is_main:
                log.write("val", step=step, epoch=epoch_of(step), val_time_s=time.perf_counter() - val_started,
                          **val_metrics)
                bar.write(f"step {step}: val " + " ".join(
                    f"{k}={val_metrics[k]:.4f}" for k in ("auc", "gauc_user", "logloss", "oracle_auc")
                    if k in val_metrics))
    finally:
        bar.close()
        stream.close()

    state = {"step": step, "epoch": epoch_of(step), "num_items": meta.num_items,
             "num_categories": meta.num_categories, "world_size": env.world_size, "val": val_metrics}
    path = save_checkpoint(model, optimizer, cfg, state, env)
    summary = {"steps": step, "train_time_s": meter.train_time,
               "samples_per_s": meter.total_samples / max(meter.train_time, 1e-9), "world_size": env.world_size,
               "checkpoint": str(path), "final_val": val_metrics}
    log.write("end", **summary)
    return summary


def parse_args(argv: Optional[List[str]]) -> tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(
        prog="dare-rec train", description=__doc__, epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset (configs/*.yaml); defaults apply when omitted")
    return parser.parse_known_args(argv)


@record
@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, overrides = parse_args(argv)
    cfg = load_config(args.config, overrides)
    meta = DatasetMeta.read(cfg.data.path)  # fails here, before any process group, if the data is missing
    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        summary = train(cfg, meta, env)
    finally:
        shutdown()
    if env.is_main:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
