"""Model passes over a split that collect intermediate outputs (search rankings, ESU outputs) per sample.

Works on a DistributedModelParallel model on any number of ranks: every rank takes the same number of steps
(a rank whose rows ran out feeds a padding batch whose outputs are dropped, as evaluation does) and rank 0
gathers every sample's arrays in rank order.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from dare_rec.data import schema
from dare_rec.data.batch import Batch
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.distributed import DistEnv, gather_arrays
from dare_rec.eval_loop import lockstep_batches
from dare_rec.modules.embeddings import SequenceEmbeddings
from dare_rec.modules.model import DareModel
from dare_rec.modules.search import target_vector
from dare_rec.ops import gsu_topk

# (model, batch, role vectors) -> per-sample arrays of the batch
Collector = Callable[[DareModel, Batch, SequenceEmbeddings], Dict[str, np.ndarray]]


def dare_model(model: nn.Module) -> DareModel:
    """The :class:`DareModel` inside a DistributedModelParallel (or a DareTrain, or itself)."""
    inner = getattr(model, "module", model)
    return getattr(inner, "model", inner)


def collect_split(model: nn.Module, reader: ParquetBatchReader, env: DistEnv, collector: Collector, desc: str,
                  progress: bool = True) -> Optional[Dict[str, np.ndarray]]:
    """Runs ``collector`` on every batch of the reader's split in eval mode, without gradients.

    Every sample also gets ``labels``, ``target_cates``, ``user_ids`` and ``lengths`` (history length after
    truncation), which the analyses use to check row order. Returns the arrays on rank 0, None elsewhere.
    """
    inner = dare_model(model)
    parts: Dict[str, list] = {}
    with torch.no_grad():
        for inputs, batch in lockstep_batches(model, reader, env, desc, progress):
            emb = inner.sparse_arch(inputs.sparse_features)
            with torch.autocast(inner.autocast_device, dtype=torch.bfloat16, enabled=inner.bf16):
                arrays = collector(inner, inputs, emb)
            if batch is None:
                continue
            arrays.update(labels=batch.labels.numpy(), user_ids=batch.user_ids.numpy(),
                          target_cates=batch.sparse_features[schema.TARGET_CATE].values().numpy(),
                          lengths=batch.sparse_features[schema.HIST_ITEM].lengths().numpy().astype(np.int64))
            for key, value in arrays.items():
                parts.setdefault(key, []).append(value)
    return gather_arrays({k: np.concatenate(v) for k, v in parts.items()}, env)


def _positions(top_indices: torch.Tensor, top_mask: torch.Tensor, offsets: torch.Tensor) -> np.ndarray:
    """GSU slots (0 = oldest behavior) -> target-relative positions (1 = most recent), 0 where masked."""
    lengths = (offsets[1:] - offsets[:-1]).unsqueeze(1)
    return torch.where(top_mask, lengths - top_indices, 0).cpu().numpy()


def search_rankings(model: DareModel, batch: Batch, emb: SequenceEmbeddings) -> Dict[str, np.ndarray]:
    """Rankings ``[B, K]`` as target-relative positions, best first (0 = no behavior):

    * ``ranking_gsu``: what the model's GSU selects (its scores, or hard search);
    * ``ranking_category_position`` (dot score only): the same score restricted to the category block of the
      attention vectors plus the position term, as the official analysis ranks (item ids ignored).
    """
    features = batch.sparse_features
    gsu = model.search(emb, features)
    out = {"ranking_gsu": _positions(gsu.top_indices, gsu.top_mask, emb.offsets)}
    if model.gsu.din is None:
        dim = emb.att_hist.size(1) // len(model.sparse_arch.fields)  # [item; cate; ...] -> cate
        bias = model.gsu.position_bias(emb)
        cate = slice(dim, 2 * dim)
        cp = gsu_topk(emb.att_hist[:, cate], emb.offsets, emb.att_target[:, cate], bias, model.gsu.top_k,
                      model.gsu.max_len, model.gsu.scale, model.gsu.kernel)
        out["ranking_category_position"] = _positions(cp.top_indices, cp.top_mask, emb.offsets)
    return out


def representations(model: DareModel, batch: Batch, emb: SequenceEmbeddings) -> Dict[str, np.ndarray]:
    """Per sample: ``esu`` = h, the ESU output ``[B, esu_layers * (n * d_rep (+ d_pos))]`` (one block per layer,
    layer 2 from its own search), and ``target_aware`` = v_t * h (v_t times each block), TIN's target-aware
    product (computed for every variant, whether its over-arch reads it or not)."""
    features = batch.sparse_features
    gsu = model.search(emb, features)
    h = model.esu(gsu, emb, second=model.layer_two_search(emb, gsu)).float()
    target = target_vector(emb).float()
    return {"esu": h.cpu().numpy(), "target_aware": (target.repeat(1, model.esu_layers) * h).cpu().numpy()}
