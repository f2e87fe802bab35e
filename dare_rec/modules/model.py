"""The DARE model (and its variants, chosen by ``ModelConfig.variant``) and its train wrapper."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.config import Config, ModelConfig, ShardingConfig
from dare_rec.data.batch import Batch
from dare_rec.modules.embeddings import ATTENTION, REPRESENTATION, SparseArch, set_dim
from dare_rec.modules.over_arch import OverArch
from dare_rec.modules.search import ExactSearchUnit, FullSequenceAttention, GeneralSearchUnit
from dare_rec.ops import Kernel


class ModelOutput(NamedTuple):
    """``logits [B]``; ``aux_logits [B]`` from the full-sequence aux head (training only, when enabled)."""

    logits: torch.Tensor
    aux_logits: Optional[torch.Tensor]


class DareModel(nn.Module):
    """Long-sequence CTR model: embeddings -> GSU top-K -> ESU (TIN) -> over-arch.

    With the target representation ``v_t^R = [item; cate; p_0^R]`` and the ESU output ``h``, the over-arch
    input is ``[v_t^R; h; v_t^R * h]`` (DESIGN.md §4). The aux head (``model.aux_loss``) applies its own
    over-arch to the same features built from a softmax over all behaviors; it only runs in training.

    Args:
        model: variant, dims, K, MLP, aux head, GSU kernel.
        sharding: per-table storage precision.
        num_items, num_categories: vocabulary sizes including padding id 0.
        max_len: N, the longest history the model searches.
        bf16: autocast the dense part (search, aggregation, MLPs) to bfloat16.
        embedding_device: "meta" when DistributedModelParallel will shard the tables.
        dense_device: device of everything that is not sharded.
    """

    def __init__(
        self,
        model: ModelConfig,
        sharding: ShardingConfig,
        num_items: int,
        num_categories: int,
        max_len: int,
        bf16: bool,
        embedding_device: torch.device,
        dense_device: torch.device,
    ) -> None:
        super().__init__()
        kernel = Kernel(model.gsu_kernel)
        self.sparse_arch = SparseArch(model, sharding, num_items, num_categories, max_len, embedding_device,
                                      dense_device)
        att_set, rep_set = self.sparse_arch.layout.attention_set, self.sparse_arch.layout.representation_set
        self.gsu = GeneralSearchUnit(2 * set_dim(model, att_set), model.d_pos, model.top_k, max_len, kernel)
        self.esu = ExactSearchUnit(kernel)
        self.full_sequence_attention = FullSequenceAttention(kernel) if model.aux_loss else None
        rep_width = 2 * set_dim(model, rep_set) + model.d_pos
        self.over_arch = OverArch(3 * rep_width, model.mlp_hidden, dense_device)
        self.aux_over_arch = OverArch(3 * rep_width, model.mlp_hidden, dense_device) if model.aux_loss else None
        self.bf16 = bf16
        self.autocast_device = dense_device.type

    def forward(self, features: KeyedJaggedTensor) -> ModelOutput:
        """``features``: the batch KJT (see :class:`dare_rec.data.batch.Batch`).

        TorchRec's train pipeline fx-traces this method (submodules without sharded tables are leaves), so
        it must stay free of data-dependent Python; such code belongs inside a submodule.
        """
        emb = self.sparse_arch(features)
        att_positions = self.sparse_arch.position_table(ATTENTION)
        rep_positions = self.sparse_arch.position_table(REPRESENTATION)
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16, enabled=self.bf16):
            gsu = self.gsu(emb.att_hist, emb.offsets, emb.att_target, att_positions)
            target = torch.cat([emb.rep_target, rep_positions.weight[0].expand(emb.rep_target.size(0), -1)], dim=1)
            h = self.esu(gsu, emb.rep_hist, emb.offsets, rep_positions)
            logits = self.over_arch(torch.cat([target, h, target * h], dim=1)).float()
            aux_logits = None
            if self.aux_over_arch is not None and self.training:
                h_all = self.full_sequence_attention(gsu.scores, emb.rep_hist, emb.offsets, rep_positions)
                aux_logits = self.aux_over_arch(torch.cat([target, h_all, target * h_all], dim=1)).float()
        return ModelOutput(logits, aux_logits)


class DareTrain(nn.Module):
    """Owns the loss, in the shape TorchRec train pipelines expect.

    ``forward(batch) -> (loss, (loss, logits, labels))``, all detached but the first. The loss is binary
    cross-entropy on the main logits plus, in training with the aux head on, the same loss on the aux
    logits. In eval mode only the main term is computed, so reported logloss never includes the aux term.
    """

    def __init__(self, model: DareModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        out = self.model(batch.sparse_features)
        loss = F.binary_cross_entropy_with_logits(out.logits, batch.labels)
        if out.aux_logits is not None:
            loss = loss + F.binary_cross_entropy_with_logits(out.aux_logits, batch.labels)
        return loss, (loss.detach(), out.logits.detach(), batch.labels)


def build_model(cfg: Config, num_items: int, num_categories: int, embedding_device: torch.device,
                dense_device: torch.device) -> DareTrain:
    """The train wrapper around the model described by ``cfg`` (model, sharding precision, max_len, bf16)."""
    return DareTrain(DareModel(cfg.model, cfg.sharding, num_items, num_categories, cfg.data.max_len,
                               bf16=cfg.train.bf16, embedding_device=embedding_device, dense_device=dense_device))
