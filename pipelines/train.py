"""Training job: ``dare-rec train`` / ``python -m dare_rec.pipelines.train`` / torchrun / torchx (``launch/``).

One process or many (SPMD): every rank reads its own shard of the training files, the embedding tables are
sharded by the TorchRec planner, and the TorchRec sparse-dist train pipeline overlaps the next batch's input
distribution with the current step. Validation runs every ``train.val_every`` steps and at the end of every
epoch and keeps the best checkpoint by ``train.val_metric``; checkpoints are also written every
``train.checkpoint_every`` steps / ``train.checkpoint_every_minutes`` and at the end. Rerunning the same
command (or a torchx restart) continues from the output folder's latest checkpoint (``train.resume auto``)
and takes exactly the steps, over exactly the samples, an uninterrupted run would. Rank 0 appends metrics to
``<output_dir>/metrics.jsonl`` and to TensorBoard event files in ``<output_dir>/tensorboard``
(``tensorboard --logdir runs``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torchrec.distributed.train_pipeline import PrefetchTrainPipelineSparseDist, TrainPipelineSparseDist
from tqdm import tqdm

from dare_rec import checkpoint as ckpt
from dare_rec.config import Config, ConfigError, config_help, load_config, resolve_lookup, to_dict
from dare_rec.data.batch import Batch
from dare_rec.data.parquet import ParquetBatchReader, check_side_fields
from dare_rec.data.schema import DataError, DatasetMeta, dataset_fingerprint
from dare_rec.distributed import (DistEnv, broadcast_object, check_shared_folder, errors_shared_across_ranks,
                                  init_distributed, shutdown)
from dare_rec.manifest import CheckpointError
from dare_rec.metrics.offline import is_improvement
from dare_rec.optim import build_optimizer
from dare_rec.pipelines.common import build_sharded_model, evaluate_split, require_defined, set_determinism
from dare_rec.pipelines.errors import CLEAR_ERRORS, NonFiniteError, cli_errors

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TRACE_DIR = "trace"


class MetricsLog:
    """Appends one JSON object per event to ``metrics.jsonl`` and, with ``train.tensorboard``, the numbers of the
    ``train`` and ``val`` events to TensorBoard event files in ``<output_dir>/tensorboard`` (tags ``train/loss``,
    ``val/auc``, ...; rank 0 only; a no-op elsewhere).

    A resumed run first drops the events after its checkpoint's step (and earlier ``end`` events): they
    belong to the attempt that was killed, and the resumed run writes them again (TensorBoard is told to purge
    its own events from the step after the checkpoint on, so its curves have no doubled steps either).
    """

    def __init__(self, path: Path, enabled: bool, resumed_step: Optional[int], tensorboard: bool) -> None:
        self.path = path
        self.enabled = enabled
        self._board = None
        if enabled and resumed_step is not None:
            _keep_lines(path, lambda e: e["event"] != "end" and e.get("step", 0) <= resumed_step)
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(path.parent / TENSORBOARD_DIR),
                                        purge_step=None if resumed_step is None else resumed_step + 1)

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
        if self._board is not None and event in ("train", "val"):
            for name, value in fields.items():
                if name not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._board.add_scalar(f"{event}/{name}", value, fields["step"])

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None


class SampleTrace:
    """``train.trace_samples``: this rank's sample ids per step, ``<output_dir>/trace/rank-XXXXX.jsonl``.

    A line per batch the train stream hands out, written when it is handed out (before it trains), so an
    attempt that is killed leaves lines for a few steps it never finished; a resumed run drops the lines after
    its checkpoint's step and writes them again, so the file ends up listing the batches of the final run.
    """

    def __init__(self, output_dir: Path, rank: int, resumed_step: Optional[int]) -> None:
        self.path = output_dir / TRACE_DIR / f"rank-{rank:05d}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_step is not None:
            _keep_lines(self.path, lambda e: e["step"] <= resumed_step)
        self._file = open(self.path, "a", buffering=1)

    def write(self, step: int, epoch: int, batch: Batch) -> None:
        self._file.write(json.dumps({"step": step, "epoch": epoch, "ids": batch.sample_ids.tolist()}) + "\n")

    def close(self) -> None:
        self._file.close()


def _keep_lines(path: Path, keep) -> None:
    """Rewrites a JSON-lines file atomically with the events ``keep`` accepts (a torn last line is dropped)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if keep(event):
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def _batch_stream(reader: ParquetBatchReader, first_step: int, epochs: int,
                  trace: Optional[SampleTrace]) -> Iterator[Batch]:
    """The training batches from global step ``first_step + 1`` on (epoch by epoch, resuming mid-epoch)."""
    steps_per_epoch = reader.num_batches()
    first_epoch, first_batch = divmod(first_step, steps_per_epoch)
    for epoch in range(first_epoch, epochs):
        start = first_batch if epoch == first_epoch else 0
        batches = reader.epoch(epoch, start_batch=start)
        try:
            for index, batch in enumerate(batches, start=start):
                if trace is not None:
                    trace.write(epoch * steps_per_epoch + index + 1, epoch, batch)
                yield batch
        finally:
            batches.close()


def make_train_pipeline(kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        device: torch.device) -> TrainPipelineSparseDist:
    """The TorchRec train pipeline named by ``train.pipeline``.

    ``sparse_dist`` copies batch i+1 to the device and starts its input all-to-all while step i runs.
    ``prefetch`` (CUDA, ``fused_uvm_caching`` tables; the config check enforces both) additionally prefetches
    batch i+1's cache rows from host memory into the HBM cache on a side stream, so a step never waits for UVM
    reads. Both drain every batch (``execute_all_batches``), which the exact-resume bookkeeping relies on.
    """
    pipelines = {"sparse_dist": TrainPipelineSparseDist, "prefetch": PrefetchTrainPipelineSparseDist}
    # pipeline_postproc: the modules that build the pooled lookups' inputs from the batch (SingletonBags) run in
    # the pipeline's data-distribution stage, so those lookups are pipelined too
    return pipelines[kind](model, optimizer, device, execute_all_batches=True, pipeline_postproc=True)


def describe_pipelining(model: torch.nn.Module, pipeline: TrainPipelineSparseDist) -> str:
    """One line: which table collections overlap their input distribution with the step (their input comes from
    the batch) and which run in the step (the representation lookup of the selected behaviors, which depends on
    the search: without the aux head, in training)."""
    collections = model.module.model.sparse_arch.collections
    pipelined = [name for name, m in collections.items() if any(m is p for p in pipeline._pipelined_modules)]
    in_step = [name for name in collections if name not in pipelined]
    return (f"train pipeline: collections {', '.join(pipelined) or 'none'} distribute their input ahead of the step"
            + (f"; {', '.join(in_step)} looks up the selected behaviors in the step (it depends on the search)"
               if in_step else ""))


def _validation_steps(steps_per_epoch: int, total: int, val_every: int) -> List[int]:
    """Steps after which to validate: every ``val_every``, every epoch end, and the last step."""
    points = set(range(steps_per_epoch, total + 1, steps_per_epoch)) | {total}
    if val_every:
        points |= set(range(val_every, total + 1, val_every))
    return sorted(points)


class StepStats:
    """Loss and health of the steps since the last log point, kept on the device.

    :meth:`add` runs every step with no host synchronisation (no ``.item()``, no collective): the loss sum,
    the count of non-finite losses and the first step with one accumulate in device tensors. :meth:`reduce`
    reads and all-reduces them; the loop calls it every ``train.log_every`` steps and before every validation
    and checkpoint, so a non-finite loss on any rank stops every rank before anything is checkpointed. Time
    spent outside training (validation, checkpoints) is not counted in samples/s.
    """

    def __init__(self, env: DistEnv, samples_per_step: int, window: Optional[Dict[str, Any]] = None) -> None:
        self.env = env
        self.samples_per_step = samples_per_step  # global: batch_size * world_size
        device = env.device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad_step = torch.full((), float("inf"), dtype=torch.float64, device=device)
        self.window_steps = 0
        if window is not None:  # resumed: this rank's partial window, so the next log line is unchanged
            self.loss_sum.fill_(window["loss_sum"])
            self.window_steps = window["steps"]
        self.train_time = 0.0
        self.total_samples = 0.0
        self._window_time = 0.0
        self._started = time.perf_counter()

    def add(self, loss: torch.Tensor, batch_size: int, step: int) -> None:
        bad = ~torch.isfinite(loss)
        self.nonfinite += bad
        self.first_bad_step = torch.where(bad, torch.clamp(self.first_bad_step, max=step), self.first_bad_step)
        self.loss_sum += loss.detach().double() * batch_size
        self.window_steps += 1

    def pause(self) -> None:
        """Stops the training clock (before validation or a checkpoint)."""
        elapsed = time.perf_counter() - self._started
        self._window_time += elapsed
        self.train_time += elapsed

    def resume(self) -> None:
        self._started = time.perf_counter()

    def reduce(self, step: int, time_due: bool, bf16: bool) -> tuple[float, bool]:
        """All-reduces the window; raises NonFiniteError on every rank if any loss was not finite.

        Returns the global loss sum of the window and whether any rank's checkpoint clock is due."""
        sums = torch.stack([self.loss_sum, self.nonfinite])
        mins = torch.stack([self.first_bad_step, self.first_bad_step.new_tensor(-float(time_due))])
        dist.all_reduce(sums)
        dist.all_reduce(mins, op=dist.ReduceOp.MIN)
        (loss_sum, bad), (first_bad, due) = sums.tolist(), mins.tolist()
        if bad:
            raise NonFiniteError(
                f"non-finite training loss at step {int(first_bad)} ({int(bad)} rank-step(s) up to step {step}); "
                f"stopped before anything was checkpointed. Every batch passed the reader's data checks, so the "
                f"model diverged: lower train.sparse_lr / train.dense_lr"
                + (" or turn off train.bf16" if bf16 else ""))
        return loss_sum, due < 0

    def flush(self, loss_sum: float) -> tuple[float, float]:
        """Global mean loss (from :meth:`reduce`'s sum) and samples/s of the window; starts a new window."""
        now = time.perf_counter()
        self._window_time += now - self._started
        self.train_time += now - self._started
        self._started = now
        samples = self.window_steps * self.samples_per_step
        loss, rate = loss_sum / samples, samples / max(self._window_time, 1e-9)
        self.total_samples += samples
        self.loss_sum.zero_()
        self.window_steps = 0
        self._window_time = 0.0
        return loss, rate

    def window_state(self) -> Dict[str, Any]:
        """This rank's partial window (exact: float64 round-trips through JSON)."""
        return {"loss_sum": self.loss_sum.item(), "steps": self.window_steps}


class BestValidation:
    """The best validation so far by ``train.val_metric`` and the validations since (early stopping).

    Both are part of every checkpoint, so a resumed run keeps choosing and stopping as an uninterrupted one.
    """

    def __init__(self, metric: str, patience: int, state: Optional[Dict[str, Any]] = None) -> None:
        self.metric = metric
        self.patience = patience
        self.best: Optional[Dict[str, Any]] = state["best"] if state else None
        self.since_best: int = state["validations_since_best"] if state else 0

    def update(self, step: int, value: float) -> bool:
        """Records a validation; returns whether it is the new best."""
        improved = is_improvement(self.metric, value, self.best["value"] if self.best else None)
        if improved:
            self.best = {"step": step, "checkpoint": ckpt.checkpoint_name(step), "metric": self.metric,
                         "value": value}
            self.since_best = 0
        else:
            self.since_best += 1
        return improved

    @property
    def stop(self) -> bool:
        """Early stop: ``patience`` validations in a row without a better value."""
        return bool(self.patience) and self.since_best >= self.patience

    def describe(self, improved: bool) -> str:
        best = self.best
        return "(best)" if improved else f"(best {self.metric} {best['value']:.4f} at step {best['step']})"


def _prepare_output(cfg: Config, meta: DatasetMeta, env: DistEnv) -> Optional[str]:
    """Decides on rank 0 whether this run starts fresh or resumes (and cleans the folder accordingly); every
    rank returns the same decision: the checkpoint to resume from, or None."""
    decision: Dict[str, Any] = {}
    kinds = {cls.__name__: cls for cls in (ConfigError, DataError, CheckpointError)}
    if env.is_main:
        try:
            decision["checkpoint"] = _decide_start(cfg, meta, env.world_size)
        except tuple(kinds.values()) as e:
            decision["error"] = (type(e).__name__, str(e))
    decision = broadcast_object(decision, env)
    if "error" in decision:
        kind, message = decision["error"]
        raise kinds[kind](message)
    return decision["checkpoint"]


def _decide_start(cfg: Config, meta: DatasetMeta, world_size: int) -> Optional[str]:
    out = Path(cfg.train.output_dir)
    root = ckpt.checkpoints_dir(out)
    holds_run = (out / METRICS_FILE).exists() or root.exists()
    if cfg.train.resume == "never":
        if holds_run:
            if not cfg.train.overwrite:
                raise ConfigError(f"train.output_dir: {str(out)!r} already holds a run ({METRICS_FILE}, "
                                  f"{ckpt.CHECKPOINTS}/); choose another folder, continue it with --train.resume "
                                  f"auto, or delete it with --train.overwrite true")
            ckpt.remove_run(out)
        return None
    # every file of the checkpoint is verified here, on rank 0, before any rank loads it
    latest = ckpt.resumable_checkpoint(root, lambda message: print(f"warning: {message}", file=sys.stderr))
    if latest is None:  # nothing to resume (a run killed before its first checkpoint leaves only metrics)
        ckpt.remove_run(out)
        return None
    saved, state = ckpt.read_checkpoint_info(latest)
    ckpt.check_resumable(saved, cfg, state, meta, world_size, latest)
    ckpt.prepare_resume(root, state)
    return str(latest)


def _check_eval_splits(val_reader: ParquetBatchReader, reader_args: Dict[str, Any],
                       batch_size: int) -> Dict[str, Any]:
    """Checks, before the first step, what training would otherwise meet late: the test split's files
    (list, footers, schema, row count; train's and val's were checked when their readers opened) and every
    value of the val and test splits (train's values are checked as each batch is read), this rank's row
    groups of each. Returns the rows checked by this rank and the seconds it took."""
    started = time.perf_counter()
    test_reader = ParquetBatchReader(split="test", batch_size=batch_size, **reader_args)
    rows = {"val": val_reader.check_rows(), "test": test_reader.check_rows()}
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}


def train(cfg: Config, meta: DatasetMeta, env: DistEnv) -> Dict[str, Any]:
    """Trains on ``cfg.data.path`` (or continues the run in ``cfg.train.output_dir``) and returns the run
    summary (identical on every rank)."""
    out = Path(cfg.train.output_dir)
    # resolved now (build_sharded_model would), so that a resume compares it with the checkpoint's
    cfg.sharding.lookup = resolve_lookup(cfg.sharding.lookup, env.device.type)
    check_shared_folder(out, env, "train.output_dir")
    resume_from = _prepare_output(cfg, meta, env)
    state: Optional[Dict[str, Any]] = None
    if resume_from is not None:
        _, state = ckpt.read_checkpoint_info(Path(resume_from))
    reader_args = dict(root=cfg.data.path, max_len=cfg.data.max_len, rank=env.rank, world_size=env.world_size,
                       prefetch_batches=cfg.data.prefetch_batches, pin_memory=env.device.type == "cuda",
                       verify_hashes=cfg.data.verify_hashes, **cfg.model.reader_inputs())
    train_reader = ParquetBatchReader(split="train", batch_size=cfg.data.batch_size, shuffle=True, drop_last=True,
                                      seed=cfg.train.seed, **reader_args)
    val_reader = ParquetBatchReader(split="val", batch_size=cfg.data.eval_batch_size, **reader_args)
    steps_per_epoch = train_reader.num_batches()
    total = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    step = state["step"] if state else 0
    if state and (state["stopped_early"] or step >= total):
        return {**state["summary"], "already_finished": True}
    data_check = _check_eval_splits(val_reader, reader_args, cfg.data.eval_batch_size)

    model = build_sharded_model(cfg, meta, env)
    optimizer = build_optimizer(model, cfg.train)
    rank_state = None
    if resume_from is not None:
        ckpt.load_model_state(model, Path(resume_from), optimizer)
        rank_state = ckpt.read_rank_state(Path(resume_from), env.rank)
        ckpt.set_rng_states(rank_state["rng"])
    log = MetricsLog(out / METRICS_FILE, env.is_main, step if state else None, cfg.train.tensorboard)
    if state:
        log.write("resume", step=step, checkpoint=Path(resume_from).name, world_size=env.world_size,
                  data_check=data_check)
    else:
        log.write("start", world_size=env.world_size, steps_per_epoch=steps_per_epoch, total_steps=total,
                  dataset=meta.source, config=to_dict(cfg), plan=str(model.plan), data_check=data_check)
    trace = SampleTrace(out, env.rank, step if state else None) if cfg.train.trace_samples else None

    tracker = BestValidation(cfg.train.val_metric, cfg.train.early_stop_patience, state)
    val_metrics: Optional[Dict[str, float]] = state["val"] if state else None
    stats = StepStats(env, cfg.data.batch_size * env.world_size, rank_state["window"] if rank_state else None)
    if state:
        stats.train_time, stats.total_samples = state["train_time_s"], state["samples"]
    stopped_early = False
    latest = Path(resume_from) if resume_from else None
    last_checkpoint_time = time.monotonic()

    def save(at_val: Optional[Dict[str, float]], improved: bool, finished: bool) -> Path:
        summary = _summary(step, stats, env, tracker.best, val_metrics, stopped_early,
                           str(ckpt.checkpoints_dir(out) / ckpt.checkpoint_name(step)))
        train_state = {
            "step": step, "data_position": dict(zip(("epoch", "batches"), divmod(step, steps_per_epoch))),
            "steps_per_epoch": steps_per_epoch, "total_steps": total, "world_size": env.world_size,
            "batch_size": cfg.data.batch_size, "num_items": meta.num_items, "num_categories": meta.num_categories,
            "dataset": dataset_fingerprint(meta), "val": at_val, "best": tracker.best,
            "validations_since_best": tracker.since_best, "finished": finished, "stopped_early": stopped_early,
            "train_time_s": stats.train_time, "samples": stats.total_samples, "summary": summary}
        own = {"rank": env.rank, "rng": ckpt.rng_states(), "window": stats.window_state()}
        started = time.perf_counter()
        path = ckpt.save_checkpoint(model, optimizer, cfg, train_state, own, env, best=improved)
        log.write("checkpoint", step=step, checkpoint=path.name, best=improved, seconds=time.perf_counter() - started)
        return path

    pipeline = make_train_pipeline(cfg.train.pipeline, model, optimizer, env.device)
    first_step = step
    stream = _batch_stream(train_reader, step, cfg.train.epochs, trace)
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not env.is_main, dynamic_ncols=True)
    every, minutes = cfg.train.checkpoint_every, cfg.train.checkpoint_every_minutes
    try:
        for val_step in [s for s in _validation_steps(steps_per_epoch, total, cfg.train.val_every) if s > step]:
            # Each segment between validations is its own iterator, so the pipeline drains completely
            # before validation runs the plain (detached) model forward.
            segment = itertools.islice(stream, val_step - step)
            stats.resume()
            clock_due = False
            while step < val_step:
                loss_t, _, labels = pipeline.progress(segment)
                if step == first_step and env.is_main:
                    bar.write(describe_pipelining(model, pipeline))
                step += 1
                stats.add(loss_t, labels.numel(), step)
                bar.update(1)
                log_now = step % cfg.train.log_every == 0 or step == val_step
                count_due = bool(every) and step % every == 0
                if log_now or count_due:
                    loss_sum, clock_due = stats.reduce(
                        step, bool(minutes) and time.monotonic() - last_checkpoint_time >= 60 * minutes,
                        cfg.train.bf16)
                    if log_now:
                        loss, rate = stats.flush(loss_sum)
                        bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{rate:,.0f}")
                        log.write("train", step=step, epoch=(step - 1) // steps_per_epoch, loss=loss,
                                  samples_per_s=rate)
                    if step < val_step and (count_due or clock_due):
                        stats.pause()
                        latest = save(None, improved=False, finished=False)
                        last_checkpoint_time = time.monotonic()
                        stats.resume()
            stats.pause()
            pipeline.detach()
            val_started = time.perf_counter()
            val_metrics = evaluate_split(model, val_reader, env, desc="validate")
            improved = tracker.update(step, require_defined(val_metrics, cfg.train.val_metric, val_reader))
            stopped_early = tracker.stop
            finished = step == total or stopped_early
            log.write("val", step=step, epoch=(step - 1) // steps_per_epoch,
                      val_time_s=time.perf_counter() - val_started, best=tracker.best, **val_metrics)
            bar.write(f"step {step}: val " + " ".join(
                f"{k}={val_metrics[k]:.4f}" for k in ("auc", "gauc_user", "logloss", "oracle_auc") if k in val_metrics)
                + " " + tracker.describe(improved))
            if improved or finished or clock_due or (bool(every) and step % every == 0):
                latest = save(val_metrics, improved=improved, finished=finished)
                last_checkpoint_time = time.monotonic()
            if stopped_early:
                bar.write(f"early stop: {tracker.since_best} validations without a better {cfg.train.val_metric}")
                break
    finally:
        bar.close()
        stream.close()
        if trace is not None:
            trace.close()
        if sys.exc_info()[0] is not None:  # a failed run: its event files end here
            log.close()

    summary = _summary(step, stats, env, tracker.best, val_metrics, stopped_early, str(latest) if latest else None)
    log.write("end", **summary)
    log.close()
    return summary


def _summary(step: int, stats: StepStats, env: DistEnv, best: Optional[Dict[str, Any]],
             val_metrics: Optional[Dict[str, float]], stopped_early: bool, checkpoint: Optional[str]) -> Dict[str, Any]:
    return {"steps": step, "train_time_s": stats.train_time,
            "samples_per_s": stats.total_samples / max(stats.train_time, 1e-9), "world_size": env.world_size,
            "checkpoint": checkpoint, "final_val": val_metrics, "best": best, "stopped_early": stopped_early}


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
    check_side_fields(meta, cfg.data.path, cfg.model.read_side_fields,  # ... or lacks a side field asked for
                      cfg.model.hard_side_fields, cfg.model.position_objectives)
    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        with errors_shared_across_ranks(env, CLEAR_ERRORS):
            set_determinism(cfg.train.deterministic)
            summary = train(cfg, meta, env)
    finally:
        shutdown()
    if env.is_main:
        if summary.get("already_finished"):
            best = summary.get("best") or {}
            print(f"{cfg.train.output_dir}: this run already finished (step {summary['steps']}"
                  + (f"; best val {best['metric']} {best['value']:.4f} at step {best['step']}" if best else "")
                  + "). Nothing was trained. To train again: a new --train.output_dir, or --train.resume never "
                    "--train.overwrite true to replace it.")
        else:
            print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
