"""Optimizers: one fused in-backward optimizer for the sharded tables, Adam for everything dense."""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

import torch
from fbgemm_gpu.tbe.config.optimizer_config import UserEnabledConfigDefinition
from torch import nn
from torchrec import optim as trec_optim
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from dare_rec.config import CUDA_ONLY_SPARSE_OPTIMIZERS, DENSE_ADAM, ConfigError, TrainConfig
from dare_rec.cpu_adam import KERNEL_PARAM

# train.sparse_optimizer -> the TorchRec optimizer class that maps to the FBGEMM kernel (EXACT_ROWWISE_ADAGRAD,
# EXACT_ADAGRAD, EXACT_SGD, ADAM, PARTIAL_ROWWISE_ADAM) and its extra arguments. Adam's bias correction is per
# row (FBGEMM's row_counter; dare_rec/ops/row_sparse_adam.py says why), on CUDA and on CPU alike.
_SPARSE: Dict[str, tuple[Type[torch.optim.Optimizer], Dict[str, Any]]] = {
    "rowwise_adagrad": (trec_optim.RowWiseAdagrad, {"eps": 1e-8}),
    "adagrad": (trec_optim.Adagrad, {"eps": 1e-8}),
    "sgd": (trec_optim.SGD, {}),
    "adam": (trec_optim.Adam, {"eps": 1e-8, "extra_optimizer_config":
                               UserEnabledConfigDefinition(use_rowwise_bias_correction=True)}),
    "rowwise_adam": (trec_optim.PartialRowWiseAdam, {"eps": 1e-8}),
}


def is_table(name: str) -> bool:
    """Whether parameter ``name`` (of the model, or of its DistributedModelParallel) is an embedding table."""
    return ".collections." in name


# The step size of the tables when train.sparse_optimizer leaves it null (benchmarks/results/optimizer_study.md).
# Exact Adagrad: 0.2 on a sparse catalog, whose items are each the target of few training samples (it learns a
# rarely seen row from few, large steps), 0.02 on a dense one (there the large first steps of every row are
# noise: DARE on the dense-catalog log and, in the report, DARE and TWIN on a real Taobao cut); the
# threshold lies between the logs measured: 3.8 (planted) and 4.9 (synthetic_small) samples per item took 0.2
# best, 7.5 (dense catalog) and 7.0 (the real cut) 0.02. The other optimizers: the rates measured in the study
# (row-wise Adagrad 0.05; Adam 0.01, the reference's) or, for SGD, not measured.
ADAGRAD_LR = {"sparse": 0.2, "dense": 0.02}
DENSE_CATALOG_SAMPLES_PER_ITEM = 6.0
FIXED_LR = {"rowwise_adagrad": 0.05, "sgd": 0.05, "adam": 0.01, "rowwise_adam": 0.01, DENSE_ADAM: 0.01}


def default_sparse_lr(optimizer: str, samples_per_item: Optional[float]) -> float:
    """The step size of ``optimizer`` for a training split of ``samples_per_item`` samples per item (None: no
    dataset at hand, e.g. a benchmark on random ids: the sparse-catalog value)."""
    if optimizer != "adagrad":
        return FIXED_LR[optimizer]
    dense = samples_per_item is not None and samples_per_item >= DENSE_CATALOG_SAMPLES_PER_ITEM
    return ADAGRAD_LR["dense" if dense else "sparse"]


def table_lr(cfg: TrainConfig) -> float:
    """The tables' step size: ``cfg.sparse_lr``, or without a dataset to choose it from (a benchmark on random
    ids, ``dare-rec plan``) the sparse-catalog default."""
    return cfg.sparse_lr if cfg.sparse_lr is not None else default_sparse_lr(cfg.sparse_optimizer, None)


def resolve_sparse_lr(cfg: TrainConfig, train_samples: int, num_items: int) -> float:
    """Fills ``cfg.sparse_lr`` when null (from the dataset's training samples and item vocabulary, padding id 0
    included in ``num_items``) and returns it; a given value is kept."""
    if cfg.sparse_lr is None:
        cfg.sparse_lr = default_sparse_lr(cfg.sparse_optimizer, train_samples / max(num_items - 1, 1))
    return cfg.sparse_lr


def apply_sparse_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
    """Attaches ``cfg.sparse_optimizer`` to every embedding table of ``model`` (before sharding).

    FBGEMM (or, for Adam on CPU, dare_rec.cpu_adam) then applies it inside the backward pass (no gradient
    tensor for the tables is ever materialised). Embedding gradients are averaged across ranks, like dense DDP
    gradients. ``dense_adam`` attaches nothing: the tables are replicated and the dense Adam of
    :func:`build_optimizer` trains them.

    Raises:
        ConfigError: the optimizer has no kernel on ``device`` (rowwise_adam needs CUDA).
    """
    if cfg.sparse_optimizer in CUDA_ONLY_SPARSE_OPTIMIZERS and device.type != "cuda":
        raise ConfigError(
            f"train.sparse_optimizer: {cfg.sparse_optimizer!r} needs a CUDA device (FBGEMM has no CPU kernel "
            f"for it); this run is on {device.type}")
    if cfg.sparse_optimizer == DENSE_ADAM:
        return
    optimizer_class, extra = _SPARSE[cfg.sparse_optimizer]
    if cfg.sparse_optimizer == "adam" and device.type == "cpu":
        extra = {**extra, KERNEL_PARAM: cfg.sparse_adam_kernel}
    lr = table_lr(cfg)
    params = [p for m in model.modules() if isinstance(m, (EmbeddingCollection, EmbeddingBagCollection))
              for p in m.parameters()]
    apply_optimizer_in_backward(optimizer_class, params, {"lr": lr, **extra})


def takes_l2(name: str) -> bool:
    """Whether the dense parameter ``name`` is penalised by ``train.dense_l2``: weights, not biases, not
    position tables and not replicated embedding tables (the reference code exempts everything named bias or
    embedding)."""
    return not name.endswith("bias") and ".positions." not in name and not is_table(name)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> CombinedOptimizer:
    """The step optimizer of a DistributedModelParallel model: its fused optimizer (sparse tables, a no-op at
    ``step``) plus Adam over every parameter that has no in-backward optimizer, with coupled weight decay
    ``2 * dense_l2`` on the weights :func:`takes_l2` selects (the gradient of ``dense_l2 * sum(w^2)``). With
    ``dense_adam`` the replicated tables are among those parameters, in a group of their own at ``sparse_lr``
    (Adam is per parameter, so at ``sparse_lr == dense_lr`` this is the reference's one Adam over everything)."""
    dense = dict(in_backward_optimizer_filter(model.named_parameters()))
    decayed = {id(p) for name, p in dense.items() if takes_l2(name)}
    tables = {id(p) for name, p in dense.items() if is_table(name)}

    def adam(params: list) -> torch.optim.Optimizer:
        groups = [{"params": [p for p in params if id(p) in decayed], "weight_decay": 2 * cfg.dense_l2},
                  {"params": [p for p in params if id(p) not in decayed | tables], "weight_decay": 0.0},
                  {"params": [p for p in params if id(p) in tables], "weight_decay": 0.0, "lr": table_lr(cfg)}]
        return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.dense_lr)

    return CombinedOptimizer([model.fused_optimizer, KeyedOptimizerWrapper(dense, adam)])
