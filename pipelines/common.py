"""Pieces shared by the training and evaluation jobs: building the sharded model, the evaluation pass."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from tqdm import tqdm

from dare_rec.config import Config, resolve_lookup
from dare_rec.data.batch import padding_batch
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.schema import DatasetMeta
from dare_rec.distributed import DistEnv, gather_arrays
from dare_rec.metrics.offline import evaluation_metrics
from dare_rec.modules.model import build_model
from dare_rec.optim import apply_sparse_optimizer
from sharding.planner import shard_model


def build_sharded_model(cfg: Config, meta: DatasetMeta, env: DistEnv) -> DistributedModelParallel:
    """The model for ``cfg`` and the dataset's vocabularies, tables sharded by the planner.

    Tables are built on the meta device and materialised only as shards; the dense part lives on
    ``env.device`` and is replicated (DDP) by DistributedModelParallel.
    """
    # The checkpoint's config records how its tables were read (their state keys differ between lookups).
    cfg.sharding.lookup = resolve_lookup(cfg.sharding.lookup, env.device.type)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, meta.num_items, meta.num_categories, torch.device("meta"), env.device)
    apply_sparse_optimizer(model, cfg.train, env.device)
    return shard_model(model, cfg, env.device, env.world_size, env.local_world_size)


def predict(model: torch.nn.Module, reader: ParquetBatchReader, env: DistEnv, desc: str,
            progress: bool = True) -> Optional[Dict[str, np.ndarray]]:
    """Runs the model over one split in eval mode; returns every sample's outputs on rank 0, None elsewhere.

    Every rank takes the same number of steps (the busiest rank's); a rank whose rows ran out feeds a
    padding batch whose outputs are dropped. Keys: logits, labels, user_ids, target_cates (+ click_probs).
    """
    steps = reader.max_batches_any_rank()
    parts: Dict[str, list] = {"logits": [], "labels": [], "user_ids": [], "target_cates": []}
    if reader.with_click_prob:
        parts["click_probs"] = []
    model.eval()
    batches = reader.epoch(0)
    try:
        with torch.no_grad():
            for _ in tqdm(range(steps), desc=desc, unit="batch", leave=False,
                          disable=not (progress and env.is_main)):
                batch = next(batches, None)
                inputs = batch if batch is not None else padding_batch()
                _, (_, logits, _) = model(inputs.to(env.device, non_blocking=True))
                if batch is None:
                    continue
                parts["logits"].append(logits.float().cpu().numpy())
                parts["labels"].append(batch.labels.numpy())
                parts["user_ids"].append(batch.user_ids.numpy())
                parts["target_cates"].append(batch.sparse_features["target_cate"].values().numpy())
                if reader.with_click_prob:
                    parts["click_probs"].append(batch.click_probs.numpy())
    finally:
        batches.close()
        model.train()
    local = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    return gather_arrays(local, env)


def evaluate_split(model: torch.nn.Module, reader: ParquetBatchReader, env: DistEnv, desc: str,
                   progress: bool = True) -> Optional[Dict[str, float]]:
    """:func:`predict` over a split, then the exact metrics of ``dare_rec.metrics.offline`` on rank 0
    (None on other ranks)."""
    outputs = predict(model, reader, env, desc, progress)
    if outputs is None:
        return None
    return evaluation_metrics(outputs["labels"], outputs["logits"], outputs["user_ids"], outputs["target_cates"],
                              outputs.get("click_probs"))
