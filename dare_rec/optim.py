"""Optimizers: one fused in-backward optimizer for the sharded tables, Adam for everything dense."""

from __future__ import annotations

from typing import Any, Dict, Type

import torch
from torch import nn
from torchrec import optim as trec_optim
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from dare_rec.config import CUDA_ONLY_SPARSE_OPTIMIZERS, ConfigError, TrainConfig

# train.sparse_optimizer -> the TorchRec optimizer class that maps to the FBGEMM kernel (EXACT_ROWWISE_ADAGRAD,
# EXACT_ADAGRAD, EXACT_SGD, ADAM, PARTIAL_ROWWISE_ADAM) and its extra arguments.
_SPARSE: Dict[str, tuple[Type[torch.optim.Optimizer], Dict[str, Any]]] = {
    "rowwise_adagrad": (trec_optim.RowWiseAdagrad, {"eps": 1e-8}),
    "adagrad": (trec_optim.Adagrad, {"eps": 1e-8}),
    "sgd": (trec_optim.SGD, {}),
    "adam": (trec_optim.Adam, {"eps": 1e-8}),
    "rowwise_adam": (trec_optim.PartialRowWiseAdam, {"eps": 1e-8}),
}


def apply_sparse_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
    """Attaches ``cfg.sparse_optimizer`` to every embedding table of ``model`` (before sharding).

    FBGEMM then applies it inside the backward pass (no gradient tensor for the tables is ever materialised).
    Embedding gradients are averaged across ranks, like dense DDP gradients.

    Raises:
        ConfigError: the optimizer has no FBGEMM kernel on ``device`` (Adam variants need CUDA).
    """
    if cfg.sparse_optimizer in CUDA_ONLY_SPARSE_OPTIMIZERS and device.type != "cuda":
        raise ConfigError(
            f"train.sparse_optimizer: {cfg.sparse_optimizer!r} needs a CUDA device (FBGEMM's CPU kernels "
            f"support only rowwise_adagrad, adagrad and sgd); this run is on {device.type}")
    optimizer_class, extra = _SPARSE[cfg.sparse_optimizer]
    params = [p for m in model.modules() if isinstance(m, (EmbeddingCollection, EmbeddingBagCollection))
              for p in m.parameters()]
    apply_optimizer_in_backward(optimizer_class, params, {"lr": cfg.sparse_lr, **extra})


def takes_l2(name: str) -> bool:
    """Whether the dense parameter ``name`` is penalised by ``train.dense_l2``: weights, not biases and not
    position tables (the reference code exempts everything named bias or embedding)."""
    return not name.endswith("bias") and ".positions." not in name


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> CombinedOptimizer:
    """The step optimizer of a DistributedModelParallel model: its fused optimizer (sparse tables, a no-op at
    ``step``) plus Adam over every parameter that has no in-backward optimizer, with coupled weight decay
    ``2 * dense_l2`` on the weights :func:`takes_l2` selects (the gradient of ``dense_l2 * sum(w^2)``)."""
    dense = dict(in_backward_optimizer_filter(model.named_parameters()))
    decayed = {id(p) for name, p in dense.items() if takes_l2(name)}

    def adam(params: list) -> torch.optim.Optimizer:
        groups = [{"params": [p for p in params if id(p) in decayed], "weight_decay": 2 * cfg.dense_l2},
                  {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]
        return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.dense_lr)

    return CombinedOptimizer([model.fused_optimizer, KeyedOptimizerWrapper(dense, adam)])
