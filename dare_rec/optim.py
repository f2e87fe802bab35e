"""Optimizers: a fused in-backward optimizer for the sharded tables, Adam for everything dense."""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from dare_rec.config import TrainConfig


def apply_sparse_optimizer(model: nn.Module, cfg: TrainConfig) -> None:
    """Attaches row-wise Adagrad to every EmbeddingCollection parameter of ``model`` (before sharding).

    FBGEMM then applies it inside the backward pass (no gradient tensor for the tables is ever materialised).
    Embedding gradients are averaged across ranks, like dense DDP gradients.
    """
    params = [p for m in model.modules() if isinstance(m, EmbeddingCollection) for p in m.parameters()]
    apply_optimizer_in_backward(RowWiseAdagrad, params, {"lr": cfg.sparse_lr, "eps": 1e-8})


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> CombinedOptimizer:
    """The step optimizer of a DistributedModelParallel model: its fused optimizer (sparse tables, a no-op at
    ``step``) plus Adam over every parameter that has no in-backward optimizer."""
    dense = dict(in_backward_optimizer_filter(model.named_parameters()))
    dense_opt = KeyedOptimizerWrapper(dense, lambda params: torch.optim.Adam(params, lr=cfg.dense_lr))
    return CombinedOptimizer([model.fused_optimizer, dense_opt])
