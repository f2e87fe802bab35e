"""Pieces shared by the training and evaluation jobs: determinism, the sharded model, the evaluation pass."""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
import torch
import torch.utils.deterministic
from torchrec.distributed.model_parallel import DistributedModelParallel

from dare_rec.config import Config, resolve_lookup
from dare_rec.data.parquet import ParquetBatchReader, check_side_fields, num_behavior_types, semantic_vocabulary
from dare_rec.data.schema import DataError, DatasetMeta
from dare_rec.distributed import DistEnv, broadcast_object, gather_arrays
from dare_rec.eval_loop import lockstep_batches
from dare_rec.metrics.offline import evaluation_metrics
from dare_rec.modules.model import build_model
from dare_rec.optim import apply_sparse_optimizer, resolve_sparse_lr
from dare_rec.pipelines.errors import NonFiniteError
from dare_rec.sharding.planner import shard_model


def set_determinism(enabled: bool) -> None:
    """``train.deterministic``: deterministic kernels everywhere in this process.

    On CPU this replaces the multi-threaded atomic-add path of ``index_put_(accumulate=True)`` (the backward
    of every gather the model does: history rows, top-K rows, position rows) with a sorted, ordered
    reduction; with it, a run's metrics depend only on config, seed and process/thread count. Filling
    uninitialized memory (PyTorch's default in this mode, a debugging aid) is turned off: correct kernels never
    read it, and the fills cost about 10% of a CPU training step. On CUDA it also needs cuBLAS's fixed
    workspace, set here before any cuBLAS call.
    """
    if enabled and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False if enabled else torch.backends.cudnn.benchmark


def build_sharded_model(cfg: Config, meta: DatasetMeta, env: DistEnv) -> DistributedModelParallel:
    """The model for ``cfg`` and the dataset's vocabularies, tables sharded by the planner.

    Tables are built on the meta device and materialised only as shards; the dense part lives on
    ``env.device`` and is replicated (DDP) by DistributedModelParallel.
    """
    # The checkpoint's config records how its tables were read (their state keys differ between lookups).
    cfg.sharding.lookup = resolve_lookup(cfg.sharding.lookup, env.device.type)
    # ... and the tables' step size chosen from the dataset when the config leaves it null
    resolve_sparse_lr(cfg.train, meta.counts["train"], meta.num_items)
    check_side_fields(meta, cfg.data.path, cfg.model.read_side_fields, cfg.model.hard_side_fields,
                      cfg.model.position_objectives)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, meta.num_items, meta.num_categories, torch.device("meta"), env.device,
                        num_behavior_types(meta, cfg.data.path), semantic_vocabulary(meta, cfg.data.path))
    apply_sparse_optimizer(model, cfg.train, env.device)
    return shard_model(model, cfg, env.device, env.world_size, env.local_world_size)


def predict(model: torch.nn.Module, reader: ParquetBatchReader, env: DistEnv, desc: str,
            progress: bool = True) -> Optional[Dict[str, np.ndarray]]:
    """Runs the model over one split in eval mode; returns every sample's outputs on rank 0, None elsewhere.

    Every rank takes the same number of steps (the busiest rank's); a rank whose rows ran out feeds a
    padding batch whose outputs are dropped. Keys: logits, labels, user_ids, target_cates, sample_ids
    (+ click_probs).
    """
    parts: Dict[str, list] = {"logits": [], "labels": [], "user_ids": [], "target_cates": [], "sample_ids": []}
    if reader.with_click_prob:
        parts["click_probs"] = []
    with torch.no_grad():
        for inputs, batch in lockstep_batches(model, reader, env, desc, progress):
            _, (_, logits, _) = model(inputs)
            if batch is None:
                continue
            parts["logits"].append(logits.float().cpu().numpy())
            parts["labels"].append(batch.labels.numpy())
            parts["user_ids"].append(batch.user_ids.numpy())
            parts["target_cates"].append(batch.sparse_features["target_cate"].values().numpy())
            parts["sample_ids"].append(batch.sample_ids.numpy())
            if reader.with_click_prob:
                parts["click_probs"].append(batch.click_probs.numpy())
    local = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    return gather_arrays(local, env)


def evaluate_split(model: torch.nn.Module, reader: ParquetBatchReader, env: DistEnv, desc: str,
                   progress: bool = True) -> Dict[str, float]:
    """:func:`predict` over a split, then the exact metrics of ``dare_rec.metrics.offline``, on every rank.

    Rank 0 computes; the metrics (or the error) are broadcast, so every rank returns the same metrics or
    raises the same error. Non-finite logits are a :class:`NonFiniteError` naming the first such sample.
    """
    outcome: Dict[str, object] = {}
    if env.is_main:
        outputs = predict(model, reader, env, desc, progress)
        outcome = _metrics_or_error(outputs, reader)
    else:
        predict(model, reader, env, desc, progress)
    outcome = broadcast_object(outcome, env)
    if "error" in outcome:
        raise NonFiniteError(outcome["error"])
    return outcome["metrics"]  # type: ignore[return-value]


def _metrics_or_error(outputs: Dict[str, np.ndarray], reader: ParquetBatchReader) -> Dict[str, object]:
    logits = outputs["logits"]
    bad = ~np.isfinite(logits)
    if bad.any():
        first = int(np.argmin(np.where(bad, outputs["sample_ids"], np.iinfo(np.int64).max)))
        return {"error": f"{reader.root / reader.split}: {int(bad.sum()):,} of {len(logits):,} logits are not "
                         f"finite, the first for the sample at {reader.locate(int(outputs['sample_ids'][first]))}; "
                         f"the model has diverged (or its checkpoint is damaged)"}
    return {"metrics": evaluation_metrics(outputs["labels"], logits, outputs["user_ids"], outputs["target_cates"],
                                          outputs.get("click_probs"))}


def require_defined(metrics: Dict[str, float], metric: str, reader: ParquetBatchReader) -> float:
    """The value of ``metric``; a clear error when the split makes it undefined (e.g. one class only)."""
    value = metrics[metric]
    if not np.isfinite(value):
        raise DataError(f"{reader.root / reader.split}: train.val_metric {metric} is undefined on this split "
                          f"({metrics['samples']:,} samples, positive rate {metrics['positive_rate']:.3f}); "
                          f"the split needs both classes (in some group, for a GAUC)")
    return value
