"""Embedding tables of the model: TorchRec EmbeddingCollections (sharded) plus small position tables.

A variant decides which *table sets* exist. DARE has two sets, attention (dim ``d_att``) and representation
(dim ``d_rep``); TWIN has one set used for both roles. One EmbeddingCollection requires one embedding dim,
so every set is its own EmbeddingCollection. In every set each table is shared by the history feature and
the target feature (``item_<set>`` serves ``hist_item`` and ``target_item``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple

import torch
from torch import nn
from torchrec.modules.embedding_configs import DataType, EmbeddingConfig
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.config import ModelConfig, ShardingConfig
from dare_rec.data import schema as S

ATTENTION = "att"
REPRESENTATION = "rep"


@dataclass(frozen=True)
class VariantLayout:
    """Which table set serves each role. Two names: decoupled (DARE); one name: shared (TWIN)."""

    attention_set: str
    representation_set: str

    @property
    def sets(self) -> List[str]:
        return list(dict.fromkeys([self.attention_set, self.representation_set]))


VARIANT_LAYOUTS: Dict[str, VariantLayout] = {
    "dare": VariantLayout(attention_set="att", representation_set="rep"),
    "twin": VariantLayout(attention_set="shared", representation_set="shared"),
}

# (table prefix, history feature, target feature)
_FEATURES = (("item", S.HIST_ITEM, S.TARGET_ITEM), ("cate", S.HIST_CATE, S.TARGET_CATE))
_DATA_TYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16}


def table_names(variant: str) -> List[str]:
    """Embedding table names of a variant, e.g. ``['item_att', 'cate_att', 'item_rep', 'cate_rep']``."""
    return [f"{prefix}_{s}" for s in VARIANT_LAYOUTS[variant].sets for prefix, _, _ in _FEATURES]


def set_dim(model: ModelConfig, set_name: str) -> int:
    layout = VARIANT_LAYOUTS[model.variant]
    return model.d_att if set_name == layout.attention_set and set_name != layout.representation_set \
        else model.d_rep


class SequenceEmbeddings(NamedTuple):
    """Looked-up vectors of a batch (B samples, L = total history behaviors).

    Attributes:
        att_hist: ``[L, 2 * d_att]`` [item; cate] attention vectors of every behavior.
        att_target: ``[B, 2 * d_att]`` attention vectors of the targets.
        rep_hist: ``[L, 2 * d_rep]`` [item; cate] representation vectors of every behavior.
        rep_target: ``[B, 2 * d_rep]`` representation vectors of the targets.
        offsets: ``[B + 1]`` int64 row offsets of the history.
    """

    att_hist: torch.Tensor
    att_target: torch.Tensor
    rep_hist: torch.Tensor
    rep_target: torch.Tensor
    offsets: torch.Tensor


class SparseArch(nn.Module):
    """Looks up every table set; also owns the position tables of each role.

    Args:
        model: variant and dims.
        sharding: per-table storage data type (fp32/fp16).
        num_items, num_categories: vocabulary sizes including padding id 0.
        max_len: longest history (N); position tables have ``max_len + 1`` rows (0 = the target).
        embedding_device: device of the EmbeddingCollections ("meta" when DistributedModelParallel
            materialises them sharded).
        dense_device: device of the position tables.
    """

    def __init__(
        self,
        model: ModelConfig,
        sharding: ShardingConfig,
        num_items: int,
        num_categories: int,
        max_len: int,
        embedding_device: torch.device,
        dense_device: torch.device,
    ) -> None:
        super().__init__()
        self.layout = VARIANT_LAYOUTS[model.variant]
        vocab = {"item": num_items, "cate": num_categories}
        self.collections = nn.ModuleDict()
        for set_name in self.layout.sets:
            dim = set_dim(model, set_name)
            tables = [
                EmbeddingConfig(
                    name=f"{prefix}_{set_name}",
                    num_embeddings=vocab[prefix],
                    embedding_dim=dim,
                    feature_names=[hist, target],
                    data_type=_DATA_TYPES[sharding.for_table(f"{prefix}_{set_name}").data_type],
                )
                for prefix, hist, target in _FEATURES
            ]
            self.collections[set_name] = EmbeddingCollection(tables=tables, device=embedding_device)
        self.positions = nn.ModuleDict({
            set_name: PositionTable(max_len + 1, model.d_pos, dense_device) for set_name in self.layout.sets
        })

    def position_table(self, role: str) -> "PositionTable":
        return self.positions[self.layout.attention_set if role == ATTENTION else self.layout.representation_set]

    def forward(self, features: KeyedJaggedTensor) -> SequenceEmbeddings:
        looked_up = {name: ec(features) for name, ec in self.collections.items()}
        att = looked_up[self.layout.attention_set]
        rep = looked_up[self.layout.representation_set]
        hist = att[S.HIST_ITEM]
        return SequenceEmbeddings(
            att_hist=torch.cat([att[S.HIST_ITEM].values(), att[S.HIST_CATE].values()], dim=1),
            att_target=torch.cat([att[S.TARGET_ITEM].values(), att[S.TARGET_CATE].values()], dim=1),
            rep_hist=torch.cat([rep[S.HIST_ITEM].values(), rep[S.HIST_CATE].values()], dim=1),
            rep_target=torch.cat([rep[S.TARGET_ITEM].values(), rep[S.TARGET_CATE].values()], dim=1),
            offsets=hist.offsets().long(),
        )


class PositionTable(nn.Module):
    """Dense table of target-relative position vectors, row p = p behaviors before the target (0 = target).

    Tiny, so it is replicated (trained by the dense optimizer) rather than sharded.
    """

    def __init__(self, num_positions: int, dim: int, device: torch.device) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_positions, dim, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(1.0 / self.weight.size(0))  # the same rule TorchRec uses for its tables
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` of any shape -> vectors of shape ``positions.shape + [dim]``."""
        return self.weight[positions]
