"""The DARE-family model (one code path for every variant, chosen by ``ModelConfig.spec()``) and its train
wrapper."""

from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.config import Config, ModelConfig, ShardingConfig
from dare_rec.data import schema
from dare_rec.data.batch import HARD_KEYS, Batch, side_keys
from dare_rec.modules.tables import FIELDS, SIDES
from dare_rec.modules.embeddings import SequenceEmbeddings, SparseArch
from dare_rec.modules.over_arch import OverArch
from dare_rec.modules.search import (ExactSearchUnit, FullSequenceAttention, GeneralSearchUnit, StackedQuery,
                                     StratifiedBehaviorSample, target_vector)
from dare_rec.ops import GsuOutput, Kernel


class ModelOutput(NamedTuple):
    """``logits [B]``; ``aux_logits [B]`` from the full-sequence aux head (training only, when enabled)."""

    logits: torch.Tensor
    aux_logits: Optional[torch.Tensor]


class DareModel(nn.Module):
    """Long-sequence CTR model: embeddings -> GSU top-K -> ESU (TIN) -> over-arch.

    With the target representation ``v_t^R = [item; cate; p_0^R]`` (seller and brand after cate, row 0 of each
    dense side field's table after p_0^R, when ``model.side_fields`` / ``model.time_gap`` add them; under
    ``model.temporal_merge add`` the dense side rows are added to ``[item; cate; ...]`` instead, on both roles, and
    p_0^R follows) and the ESU output ``h``, the over-arch
    input is ``[v_t^R; h; v_t^R * h]`` (target-aware) or ``[v_t^R; h]`` (docs/design.md §4). With
    ``model.esu_layers`` 2 (stacked TIN) h is ``[h^(1); h^(2)]``, h^(2) the weighted sum of the K behaviors a second
    search selects with the query :class:`StackedQuery` builds from the target and layer 1's selection, and the
    input ``[v_t^R; h^(1); h^(2); v_t^R * h^(1); v_t^R * h^(2)]`` (or ``[v_t^R; h^(1); h^(2)]``). With H
    ``model.attention_heads`` (DI-TIN) h is likewise ``[h^(1); ...; h^(H)]``, head h's weighted sum of the K
    behaviors it selected. With ``model.position_objectives`` O > 1 every position vector (search, ESU, the
    target's p_0^R) comes from the slice of the sample's ``target_objective`` (docs/side-info.md §2.4). The aux
    head (``model.aux_loss``) applies its own over-arch to the same features built from a softmax over all
    behaviors, or over a stratified sample of ``model.aux_behaviors`` of them when N is larger; it only runs in
    training.

    Args:
        model: spec, dims, K, MLP, aux head, BatchNorm, init, GSU kernel.
        sharding: per-table storage precision.
        num_items, num_categories: vocabulary sizes including padding id 0.
        max_len: N, the longest history the model searches.
        bf16: autocast the dense part (search, aggregation, MLPs) to bfloat16.
        embedding_device: "meta" when DistributedModelParallel will shard the tables.
        dense_device: device of everything that is not sharded.
        num_behavior_types: T, the dataset's behavior types (needed with side field ``btype``).
        side_vocabulary: rows of each seller / brand table (needed with those side fields; meta.json
            ``num_sellers`` / ``num_brands``).
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
        num_behavior_types: Optional[int] = None,
        side_vocabulary: Optional[Mapping[str, int]] = None,
    ) -> None:
        super().__init__()
        spec = model.spec()
        kernel = Kernel(model.op_kernel)
        self.sparse_arch = SparseArch(model, sharding, num_items, num_categories, max_len, embedding_device,
                                      dense_device, num_behavior_types, side_vocabulary)
        num_side = len(model.dense_side_fields)
        # n semantic fields (item, cate, seller / brand): [item; cate; ...] vectors of n * dim, one dot product
        # scaled by sqrt(D_att), D_att = n * d_att (docs/side-info.md §2.0)
        att_width = model.num_semantic_fields * model.attention_dim
        self.gsu = GeneralSearchUnit(spec, att_width, model.attention_position_dim, model.top_k,
                                     max_len, kernel, dense_device, num_side, model.hard_levels, model.hard_fill,
                                     model.temporal_merge, model.attention_heads, model.semantic_fields,
                                     model.head_fields[model.num_semantic_fields:])  # the dense fields follow
        # DI-TIN's heads (model.attention_heads): each selects K, so the ESU reads H * K behaviors
        self.heads = self.gsu.num_heads
        # hard search's levels and their KJT keys, history and target (brand, seller: dare_rec.data.batch.HARD_KEYS)
        self.hard_levels = tuple(model.hard_levels) if spec.search == "hard" else ()
        level_keys = {"cate": (schema.HIST_CATE, schema.TARGET_CATE), **HARD_KEYS}
        self.hard_level_keys = tuple(level_keys[level] for level in self.hard_levels)
        # temporal_merge add: the dense side rows are added to the semantic vectors, not concatenated to them
        self.add_temporal = model.temporal_merge == "add"
        # stacked TIN: layer 2 searches the history again, with a query built from the target and layer 1's output
        self.stacked_query = StackedQuery(att_width, kernel, dense_device) if model.esu_layers == 2 else None
        self.esu = ExactSearchUnit(kernel, model.esu_layers, self.add_temporal, self.heads)
        # The aux head reads every behavior when that is at most model.aux_behaviors, else a stratified sample.
        bounded_aux = model.aux_loss and model.aux_behaviors is not None and model.aux_behaviors < max_len
        self.full_sequence_attention = FullSequenceAttention(kernel, model.esu_layers, self.add_temporal,
                                                             self.heads) \
            if model.aux_loss and not bounded_aux else None
        self.aux_sample = StratifiedBehaviorSample(model.aux_behaviors) if bounded_aux else None
        rep_width = model.num_semantic_fields * model.d_rep + (model.d_pos if spec.positions else 0) + (
            0 if self.add_temporal else num_side * model.d_pos)
        self.target_aware = spec.target_aware
        self.esu_layers = model.esu_layers
        self.blocks = model.esu_layers * self.heads  # h's blocks: one per layer or head (never both above 1)
        over_arch_width = (1 + (2 if spec.target_aware else 1) * self.blocks) * rep_width
        self.over_arch = OverArch(over_arch_width, model.mlp_hidden, model.batch_norm, dense_device)
        self.aux_over_arch = OverArch(over_arch_width, model.mlp_hidden, model.batch_norm, dense_device) \
            if model.aux_loss else None
        self.bf16 = bf16
        self.autocast_device = dense_device.type
        if model.init_std is not None:
            self._init_dense_normal(model.init_std)

    def _init_dense_normal(self, std: float) -> None:
        """N(0, std) for every dense weight (not biases); the tables get the same through their init_fn."""
        with torch.no_grad():
            for name, param in self.named_parameters():
                if not name.startswith("sparse_arch.collections.") and not name.endswith("bias"):
                    nn.init.normal_(param, mean=0.0, std=std)

    def interaction(self, target: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The over-arch input: ``[v_t; h; v_t * h]`` (target-aware) or ``[v_t; h]``, with ``target [B, W]`` and
        ``h [B, blocks * W]`` (one block per layer or attention head, each multiplied by v_t)."""
        if not self.target_aware:
            return torch.cat([target, h], dim=1)
        return torch.cat([target, h, target.repeat(1, self.blocks) * h], dim=1)

    def forward(self, features: KeyedJaggedTensor) -> ModelOutput:
        """``features``: the batch KJT (see :class:`dare_rec.data.batch.Batch`).

        TorchRec's train pipeline fx-traces this method (submodules without sharded tables are leaves), so
        it must stay free of data-dependent Python; such code belongs inside a submodule.
        """
        # Representation vectors of every behavior are needed only by the full aux head, in training; otherwise
        # (evaluation, serving, aux-free training, the sampled aux head) only the K selected (and M sampled)
        # ones are looked up, after the search.
        every_behavior = self.full_sequence_attention is not None and self.training
        representation = every_behavior or not self.sparse_arch.selects_representation_lookups
        return self.forward_from_embeddings(self.sparse_arch(features, representation=representation), features)

    def forward_from_embeddings(self, emb: SequenceEmbeddings, features: KeyedJaggedTensor) -> ModelOutput:
        """Everything after the table lookups: search, aggregation, heads (and the lookup of the selected
        behaviors' representations when ``emb`` has none). Separate from :meth:`forward` so analyses can feed
        role vectors of their own (e.g. detached copies to split the gradient paths)."""
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16, enabled=self.bf16):
            gsu = self.search(emb, features)
            second = self.layer_two_search(emb, gsu)
            aux_search = None
            if self.aux_sample is not None and self.training:
                aux_search = self.aux_sample(gsu.scores, emb.offsets, features[schema.TARGET_ITEM].values())
            selected, second_selected, aux_selected = None, None, None
            if emb.rep_hist is None:
                # one lookup for the K selected (per head), layer 2's K and the M sampled behaviors (widths
                # static: fx-traceable)
                searches = [search for search in (gsu, second, aux_search) if search is not None]
                rows, rep_target = self.sparse_arch.lookup_selected(
                    features, emb.offsets, torch.cat([search.top_indices for search in searches], dim=1),
                    torch.cat([search.top_mask for search in searches], dim=1))
                width = self.heads * self.gsu.top_k
                selected, rest = rows[:, :width], rows[:, width:]
                if second is not None:
                    second_selected, rest = rest[:, :self.gsu.top_k], rest[:, self.gsu.top_k:]
                aux_selected = rest if aux_search is not None else None
                emb = emb._replace(rep_target=rep_target)
            if aux_search is not None and self.heads > 1:  # every head weights the same M sampled behaviors
                aux_search = GsuOutput(aux_search.scores, aux_search.top_indices.repeat(1, self.heads),
                                       aux_search.top_mask.repeat(1, self.heads))
                aux_selected = None if aux_selected is None else aux_selected.repeat(1, self.heads, 1)
            target = target_vector(emb, self.add_temporal)
            h = self.esu(gsu, emb, selected, second=second, second_selected=second_selected)
            logits = self.over_arch(self.interaction(target, h))
            aux_logits = None
            if self.aux_over_arch is not None and self.training:
                # Layer 2 of the aux head weights every (or the M sampled) behaviors by layer 2's search scores, taken
                # as constants: the aux loss reaches the tables through layer 1 and the weighted representation
                # rows, not layer 2's search, whose query serves a top-K (with the aux loss training it too:
                # +0.0040 instead of +0.0071 on the pair world, 5 seeds; docs/side-info.md Status).
                second_scores = None if second is None else second.scores.detach()
                if aux_search is None:
                    h_all = self.full_sequence_attention(gsu.scores, emb, second_scores)
                else:
                    h_all = self.esu(aux_search, emb, aux_selected,
                                     second=None if second is None else GsuOutput(
                                         second_scores, aux_search.top_indices, aux_search.top_mask),
                                     second_selected=aux_selected)
                aux_logits = self.aux_over_arch(self.interaction(target, h_all))
        return ModelOutput(logits, aux_logits)

    def search(self, emb: SequenceEmbeddings, features: KeyedJaggedTensor) -> GsuOutput:
        """The GSU's search of the batch, hard search reading its levels' ids from ``features``."""
        if not self.hard_level_keys:
            return self.gsu(emb)
        # [L, H] and [B, H]: the ids hard search compares, one column per level
        hist_levels = torch.stack([features[hist].values() for hist, _ in self.hard_level_keys], dim=1)
        target_levels = torch.stack([features[target].values() for _, target in self.hard_level_keys], dim=1)
        return self.gsu(emb, hist_levels, target_levels)

    def layer_two_search(self, emb: SequenceEmbeddings, gsu: GsuOutput) -> Optional[GsuOutput]:
        """Stacked TIN's layer 2 (docs/side-info.md §2.6): a second search of the whole history with the query
        :class:`StackedQuery` builds from layer 1's search ``gsu``; None with one ESU layer."""
        return None if self.stacked_query is None else self.gsu(emb, query=self.stacked_query(gsu, emb))

    @torch.no_grad()
    def score_candidates(self, hist_item: torch.Tensor, hist_cate: torch.Tensor, cand_item: torch.Tensor,
                         cand_cate: torch.Tensor, chunk: int = 16_384,
                         hist_side: Optional[Dict[str, torch.Tensor]] = None,
                         hist_levels: Optional[Dict[str, torch.Tensor]] = None,
                         cand_levels: Optional[Dict[str, torch.Tensor]] = None,
                         cand_side: Optional[Dict[str, torch.Tensor]] = None, objective: int = 1) -> torch.Tensor:
        """Click logits of C candidate items for one user, reading the user's side once (serving).

        The history's attention keys are looked up once (not once per candidate), the candidates are scored
        against them ``chunk`` slots at a time with a merged top-K (:meth:`GeneralSearchUnit.search_one_history`),
        and the representation rows are looked up for the K behaviors each candidate selects (plus the
        candidates). Equal to :meth:`forward` in evaluation mode on C samples that each carry the whole history
        (tested), at a fraction of its lookups when n is long. With attention heads every head searches for every
        candidate, and the H * K behaviors of each are looked up together.

        Args:
            hist_item, hist_cate: ``[n]`` the history, oldest first, n <= max_len.
            cand_item, cand_cate: ``[C]`` the candidates.
            chunk: history slots scored at once (see :meth:`GeneralSearchUnit.search_one_history`).
            hist_side: with side fields, their ``[n]`` ids per field name (``gap``: bucket ids of the gaps to
                the time the candidates are scored at; ``btype``: behavior types; ``seller``, ``brand``: the
                behaviors' ids), the same for every candidate.
            cand_side: with side fields seller or brand, the candidates' ``[C]`` ids per field name.
            hist_levels, cand_levels: with hard levels beyond ``cate`` (``model.hard_levels`` brand, seller),
                their ``[n]`` ids of the history and ``[C]`` ids of the candidates per level name.
            objective: the target objective (1..O, ``model.position_objectives``) of every candidate of the call:
                all of them read its position slice (one search key column serves them all). Score candidates
                of different objectives in one call each.

        Returns:
            logits ``[C]``.
        """
        num = cand_item.numel()
        length = hist_item.numel()
        if num == 0 or length > self.gsu.max_len:
            raise ValueError(f"score_candidates: needs at least one candidate and a history of at most max_len "
                             f"({self.gsu.max_len}) behaviors; got {num} candidates and {length} behaviors")
        fields = self.sparse_arch.side_fields
        semantic = self.sparse_arch.semantic_side_fields
        hist_side, cand_side = hist_side or {}, cand_side or {}
        if sorted(hist_side) != sorted(fields + semantic) \
                or any(hist_side[f].shape != hist_item.shape for f in fields + semantic):
            raise ValueError(f"score_candidates: hist_side must give the side fields {list(fields + semantic)} one "
                             f"id per behavior, got {({f: tuple(v.shape) for f, v in hist_side.items()})}")
        if sorted(cand_side) != sorted(semantic) or any(cand_side[f].shape != cand_item.shape for f in semantic):
            raise ValueError(f"score_candidates: cand_side must give the side fields {list(semantic)} one id per "
                             f"candidate, got {({f: tuple(v.shape) for f, v in cand_side.items()})}")
        objectives = self.sparse_arch.objectives
        if not 1 <= objective <= objectives:
            raise ValueError(f"score_candidates: objective must be in [1, {objectives}] (model.position_objectives), "
                             f"got {objective}")
        extra_levels = tuple(level for level in self.hard_levels if level != "cate")
        hist_levels, cand_levels = hist_levels or {}, cand_levels or {}
        if sorted(hist_levels) != sorted(extra_levels) or sorted(cand_levels) != sorted(extra_levels) \
                or any(hist_levels[f].shape != hist_item.shape or cand_levels[f].shape != cand_item.shape
                       for f in extra_levels):
            raise ValueError(f"score_candidates: hist_levels and cand_levels must give the hard levels "
                             f"{list(extra_levels)} one id per behavior and per candidate, got "
                             f"{({f: tuple(v.shape) for f, v in hist_levels.items()})} and "
                             f"{({f: tuple(v.shape) for f, v in cand_levels.items()})}")
        # the lookups do not check ids (sharding.bounds_check off): an id past its table fails here, by name
        looked_up = [("hist_item", hist_item, "item"), ("cand_item", cand_item, "item"),
                     ("hist_cate", hist_cate, "cate"), ("cand_cate", cand_cate, "cate"),
                     *((f"hist_side[{f!r}]", hist_side[f], f) for f in semantic),
                     *((f"cand_side[{f!r}]", cand_side[f], f) for f in semantic)]
        for name, ids, field in looked_up:
            rows = self.sparse_arch.vocabulary[field]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= rows):
                raise ValueError(f"score_candidates: {name} ids must be rows of its table, 0 to {rows - 1}; got ids "
                                 f"from {int(ids.min())} to {int(ids.max())}")
        # C samples, the first holding the history and the others none: the history is looked up once
        lengths = torch.zeros(num, dtype=torch.int32, device=hist_item.device)
        lengths[0] = length
        ones = torch.ones(num, dtype=torch.int32, device=hist_item.device)
        # with O > 1 objectives, the candidates' objective as the reader's last target key
        objective_keys = [schema.TARGET_OBJECTIVE] if objectives > 1 else []
        features = KeyedJaggedTensor(
            keys=[schema.HIST_ITEM, schema.HIST_CATE, schema.TARGET_ITEM, schema.TARGET_CATE, *side_keys(fields),
                  *(FIELDS[f][side] for side in SIDES for f in semantic), *objective_keys],
            values=torch.cat([hist_item, hist_cate, cand_item, cand_cate, *(hist_side[f] for f in fields + semantic),
                              *(cand_side[f] for f in semantic),
                              *(torch.full_like(cand_item, objective) for _ in objective_keys)]).long(),
            lengths=torch.cat([lengths, lengths, ones, ones] + [lengths] * len(fields + semantic)
                              + [ones] * (len(semantic) + len(objective_keys))))
        emb = self.sparse_arch(features, representation=not self.sparse_arch.selects_representation_lookups)
        ids = {"cate": (hist_cate, cand_cate), **{f: (hist_levels[f], cand_levels[f]) for f in extra_levels}}
        top_scores, top_slots = self.gsu.search_one_history(
            emb, torch.stack([ids[f][0].long() for f in self.hard_levels], dim=1) if self.hard_levels else None,
            torch.stack([ids[f][1].long() for f in self.hard_levels], dim=1) if self.hard_levels else None, chunk)
        search = GsuOutput(None, top_slots, torch.ones_like(top_slots, dtype=torch.bool))
        slots = top_slots
        second, second_scores, second_side = None, None, None
        if self.stacked_query is not None:  # layer 2: each candidate's q^(2), then a soft search with it
            with torch.autocast(self.autocast_device, dtype=torch.bfloat16, enabled=self.bf16):
                query = self.stacked_query.query(emb.att_target, torch.softmax(top_scores, dim=1),
                                                 emb.att_hist[top_slots])
            second_scores, second_slots = self.gsu.search_one_history(emb._replace(att_target=query), None, None,
                                                                      chunk, soft=True)
            second = GsuOutput(None, second_slots, search.top_mask)
            slots = torch.cat([top_slots, second_slots], dim=1)
        # every candidate reads the one history: row offsets 0 for the selected lookup, n for the positions
        if emb.rep_hist is None:
            rows, rep_target = self.sparse_arch.lookup_selected(
                features, torch.zeros(num + 1, dtype=torch.long, device=hist_item.device), slots,
                torch.ones_like(slots, dtype=torch.bool))
            emb = emb._replace(rep_target=rep_target)
        else:
            rows = emb.rep_hist[slots]
        selected, second_selected = rows[:, :top_slots.size(1)], rows[:, top_slots.size(1):]
        emb = emb._replace(offsets=torch.arange(num + 1, device=hist_item.device) * length)
        selected_side = None if emb.side_ids is None else emb.side_ids[top_slots]
        if second is not None and emb.side_ids is not None:
            second_side = emb.side_ids[second.top_indices]
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16, enabled=self.bf16):
            h = self.esu(search, emb, selected, selected_scores=top_scores, selected_side_ids=selected_side,
                         second=second, second_selected=second_selected, second_scores=second_scores,
                         second_side_ids=second_side)
            return self.over_arch(self.interaction(target_vector(emb, self.add_temporal), h))


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
                dense_device: torch.device, num_behavior_types: Optional[int] = None,
                side_vocabulary: Optional[Mapping[str, int]] = None) -> DareTrain:
    """The train wrapper around the model described by ``cfg`` (model, sharding precision, max_len, bf16);
    ``num_behavior_types``: the dataset's T (side field ``btype``); ``side_vocabulary``: rows of each seller /
    brand table (side fields seller, brand; ``dare_rec.data.parquet.semantic_vocabulary``)."""
    return DareTrain(DareModel(cfg.model, cfg.sharding, num_items, num_categories, cfg.data.max_len,
                               bf16=cfg.train.bf16, embedding_device=embedding_device, dense_device=dense_device,
                               num_behavior_types=num_behavior_types, side_vocabulary=side_vocabulary))
