"""The table lookups: the sharded TorchRec collections of every table group (dare_rec/modules/tables.py), the
small dense position tables and the optional projections, turned into the role vectors the search and the
heads read (:class:`SequenceEmbeddings`). Position tables are replicated, not sharded (a target-only group of
the ``four`` layout reads only its row 0).

How the sharded tables are read (``sharding.lookup``, same vectors and gradients either way):
``sequence``: EmbeddingCollections (FBGEMM's sequence, "nobag", kernels; the GPU choice).
``singleton_bags``: EmbeddingBagCollections over a KJT in which every id is its own SUM bag (FBGEMM's pooled
kernels). On CPU FBGEMM's sequence backward costs ~8 us per distinct id (hash maps, serial), the pooled one a
fraction of it, so this is the CPU choice (benchmarks/results/profile_notes.md). Each table reads one bag
feature named after the table (:class:`BagKey`) whose ``L + B`` bags are the history ids, then the target ids,
so a table serving both sides fills every bag: the pooled output is ``[L + B, sum of dims]`` with no empty rows.
"""


from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.config import SEMANTIC_SIDE_FIELDS, SINGLETON_BAGS, ModelConfig, ShardingConfig, resolve_lookup
from dare_rec.data import schema
from dare_rec.data.batch import SIDE_KEYS
# Called as kjt.<name>: torch.fx.wrap patches the names in kjt's namespace while TorchRec's pipeline traces the
# model, so a name imported into this module would run unwrapped on the tracer's proxies.
from dare_rec.modules import kjt
from dare_rec.modules.tables import (ATTENTION, FIELDS, HIST, REPRESENTATION, ROLES, SIDES, TARGET, BagKey,
                                     table_groups, serving_group)

_DATA_TYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16}


class SequenceEmbeddings(NamedTuple):
    """Role vectors of a batch (B samples, L = total history behaviors, P = max_len + 1 positions, n semantic
    fields: item, cate and the seller / brand of ``model.side_fields``).

    Attributes:
        att_hist: ``[L, n * d_a]`` [item; cate; ...] attention vectors of every behavior (keys).
        att_target: ``[B, n * d_a]`` attention vectors of the targets (queries).
        rep_hist: ``[L, n * d_r]`` [item; cate; ...] representation vectors of every behavior (values); None when
            only the selected behaviors are looked up (:meth:`SparseArch.lookup_selected`).
        rep_target: ``[B, n * d_r]`` representation vectors of the targets (None likewise).
        offsets: ``[B + 1]`` int64 row offsets of the history.
        att_positions: ``[P, d_pa]`` attention position vector of every position (None without positions); with
            O > 1 target objectives (``model.position_objectives``) ``[O, P, d_pa]``, one slice per objective.
        att_target_position: ``[d_pa]`` attention position vector of the target (position 0); ``[O, d_pa]``.
        rep_positions: ``[P, d_p]`` representation position vectors; ``[O, P, d_p]``.
        rep_target_position: ``[d_p]``; ``[O, d_p]``.
        side_ids: ``[L, S]`` int64 row of every behavior's dense side field f (``ModelConfig.dense_side_fields``,
            S of them) in the stacked side tables below (field f's id plus its first row); None without side fields.
        att_side: ``[R, d_sa]`` the attention rows of every side field, stacked (R = their rows together; d_sa =
            d_pa, or n * d_a under ``temporal_merge add``).
        att_target_side: ``[S, d_sa]`` the target's attention vector of each side field (its row 0).
        rep_side: ``[R, d_s]`` the representation rows, stacked likewise (d_s = d_p, or n * d_r under add).
        rep_target_side: ``[S, d_s]``.
        objectives: ``[B]`` int64 each sample's objective slice, 0..O-1 (``target_objective`` - 1); None when
            O = 1.

    Under ``model.temporal_merge add`` the attention side's dense side rows are already added: ``att_hist`` is
    ``e_i^A + sum_f X_f^A[x_{f,i}]`` and ``att_target`` ``v_t^A + sum_f X_f^A[0]`` (same widths), and ``att_side``,
    ``att_target_side`` are None; the positions stay apart as under concat. The representation side keeps its
    side tables apart (``d_s = n * d_r``, the semantic width): the ESU adds them after weighting.
    """

    att_hist: torch.Tensor
    att_target: torch.Tensor
    rep_hist: Optional[torch.Tensor]
    rep_target: Optional[torch.Tensor]
    offsets: torch.Tensor
    att_positions: Optional[torch.Tensor]
    att_target_position: Optional[torch.Tensor]
    rep_positions: Optional[torch.Tensor]
    rep_target_position: Optional[torch.Tensor]
    side_ids: Optional[torch.Tensor] = None
    att_side: Optional[torch.Tensor] = None
    att_target_side: Optional[torch.Tensor] = None
    rep_side: Optional[torch.Tensor] = None
    rep_target_side: Optional[torch.Tensor] = None
    objectives: Optional[torch.Tensor] = None


class FieldProjections(nn.Module):
    """Square linear maps without bias, one per field (each semantic field of ``fields``, position, each dense
    side field), for one (role, side)."""

    def __init__(self, fields: Tuple[str, ...], dim: int, position_dim: Optional[int], device: torch.device,
                 side_fields: Tuple[str, ...] = (), side_dim: int = 0) -> None:
        super().__init__()
        self.fields = nn.ModuleDict({f: nn.Linear(dim, dim, bias=False, device=device) for f in fields})
        self.position = nn.Linear(position_dim, position_dim, bias=False, device=device) if position_dim else None
        self.side = nn.ModuleDict({f: nn.Linear(side_dim, side_dim, bias=False, device=device)
                                   for f in side_fields}) if side_fields else None


class SparseArch(nn.Module):
    """Looks up every table group and turns the lookups into the role vectors of :class:`SequenceEmbeddings`.

    Args:
        model: spec and dims.
        sharding: per-table storage data type (fp32/fp16).
        num_items, num_categories: vocabulary sizes including padding id 0.
        max_len: longest history (N); history-side position tables have ``max_len + 1`` rows.
        embedding_device: device of the EmbeddingCollections ("meta" when DistributedModelParallel
            materialises them sharded).
        dense_device: device of the position tables and projections.
        num_behavior_types: T, the dataset's behavior types (ids 1..T); needed with side field ``btype``.
        side_vocabulary: rows of the table of each semantic side field in use (``seller``, ``brand``: meta.json
            ``num_sellers`` / ``num_brands``, counting padding id 0 and unknown id 1).
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
        num_behavior_types: Optional[int] = None,
        side_vocabulary: Optional[Mapping[str, int]] = None,
    ) -> None:
        super().__init__()
        spec = model.spec()
        self.side_fields = model.dense_side_fields
        if "btype" in self.side_fields and not num_behavior_types:
            raise ValueError("model.side_fields btype needs the dataset's number of behavior types "
                             "(meta.json params behavior_types)")
        side_vocabulary = side_vocabulary or {}
        missing = [f for f in model.semantic_side_fields if f not in side_vocabulary]
        if missing:
            raise ValueError(f"model.side_fields {missing} need the dataset's vocabulary sizes (meta.json params "
                             f"num_sellers / num_brands), got {dict(side_vocabulary)}")
        # item, cate, then the seller / brand in use: each a table per group, a block of the role vectors
        self.fields = model.semantic_fields
        self.semantic_side_fields = model.semantic_side_fields
        # rows of each side field's table: its ids 1..n and row 0, the target's (a learned query)
        self.side_rows = {"btype": (num_behavior_types or 0) + 1, "gap": model.gap_buckets + 1}
        self.layout = spec.layout
        # temporal_merge add: the attention side's dense side rows are added to the [item; cate; ...] vectors here
        self.add_temporal = model.temporal_merge == "add"
        self.groups = {group.name: group for group in table_groups(model)}
        # rows of each looked-up field's table (item, cate, seller, brand), padding row 0 included: the ids a
        # caller other than the reader passes are checked against them (DareModel.score_candidates)
        self.vocabulary = {"item": num_items, "cate": num_categories, **side_vocabulary}
        init_fn = None if model.init_std is None else partial(nn.init.normal_, mean=0.0, std=model.init_std)
        self.bags = resolve_lookup(sharding.lookup, dense_device.type) == SINGLETON_BAGS
        config_class = EmbeddingBagConfig if self.bags else EmbeddingConfig
        extra = {"pooling": PoolingType.SUM} if self.bags else {}
        tables: Dict[str, list] = {}
        bag_keys: Dict[str, Tuple[BagKey, ...]] = {}
        self._group_sides: Dict[str, Tuple[Tuple[str, str], ...]] = {}  # collection -> its (group, side) pairs
        for group in self.groups.values():
            self._group_sides[group.collection] = self._group_sides.get(group.collection, ()) + tuple(
                (group.name, side) for side in group.sides)
            bag_keys[group.collection] = bag_keys.get(group.collection, ()) + tuple(
                BagKey(f"{field}_{group.name}", field, group.sides) for field in group.fields)
            tables.setdefault(group.collection, []).extend(
                config_class(
                    name=f"{field}_{group.name}",
                    num_embeddings=self.vocabulary[field],
                    embedding_dim=group.dim,
                    feature_names=[f"{field}_{group.name}"] if self.bags else [FIELDS[field][side]
                                                                               for side in group.sides],
                    data_type=_DATA_TYPES[sharding.for_table(f"{field}_{group.name}").data_type],
                    init_fn=init_fn,
                    **extra,
                )
                for field in group.fields
            )
        self._features = {name: [f for config in configs for f in config.feature_names]
                          for name, configs in tables.items()}
        module_class = EmbeddingBagCollection if self.bags else EmbeddingCollection
        self.collections = nn.ModuleDict({
            name: module_class(tables=configs, device=embedding_device) for name, configs in tables.items()
        })
        # The pooled lookups' inputs, built from the batch by modules the train pipeline runs ahead of the step.
        # Direct children (not a ModuleDict): TorchRec's pipeline treats a sharded module's sibling without
        # sharded modules as a leaf of its trace, by name, and only a leaf can be run ahead.
        if self.bags:
            for name, keys in bag_keys.items():
                self.add_module(f"{name}_bag_inputs", kjt.SingletonBags(keys))
        self.objectives = model.position_objectives
        self.positions = nn.ModuleDict({
            group.name: PositionTable(max_len + 1, group.position_dim, dense_device, model.position_objectives)
            for group in self.groups.values()
        }) if spec.positions else None
        # Side fields: like positions, one small dense table per group and field (dim: the group's side dim)
        self.side_tables = nn.ModuleDict({
            field: nn.ModuleDict({group.name: PositionTable(self.side_rows[field], group.side_dim, dense_device)
                                  for group in self.groups.values()})
            for field in self.side_fields
        }) if self.side_fields else None
        self.projections = nn.ModuleDict({
            f"{role}_{side}": FieldProjections(
                self.fields, self.groups[serving_group(self.layout, role, side)].dim,
                self.groups[serving_group(self.layout, role, side)].position_dim if spec.positions else None,
                dense_device, self.side_fields, self.groups[serving_group(self.layout, role, side)].side_dim)
            for role in ROLES for side in SIDES
        }) if spec.projection == "linear" else None

    def table_inputs(self) -> Dict[str, List[str]]:
        """Table name -> the batch features (``hist_item``, ``target_item``, ...) whose ids it looks up."""
        return {f"{field}_{group.name}": [FIELDS[field][side] for side in group.sides]
                for group in self.groups.values() for field in group.fields}

    @property
    def selects_representation_lookups(self) -> bool:
        """Whether representation vectors can be looked up for the selected behaviors only: true when
        representation has tables of its own (a shared layout looks every behavior up for attention anyway)."""
        return self.layout != "shared"

    def forward(self, features: KeyedJaggedTensor, representation: bool = True) -> SequenceEmbeddings:
        """Looks up the batch. With ``representation=False`` (only when
        :attr:`selects_representation_lookups`) only the attention tables are read: ``rep_hist`` and
        ``rep_target`` are None and come later from :meth:`lookup_selected`, after the search."""
        names = self.collections if representation else [ATTENTION]
        # collection -> its vectors per (group, side); indexed, never iterated: the train pipeline fx-traces
        # this code and a wrapped function's result is a proxy there
        looked_up = {name: self._lookup(name, features) for name in names}
        # Without projections a group that serves two roles gives both the same vectors: build them once.
        built: Dict[Tuple[str, str], torch.Tensor] = {}

        def vectors(role: str, side: str) -> Optional[torch.Tensor]:
            group = self.groups[serving_group(self.layout, role, side)]
            if group.collection not in looked_up:
                return None
            key = (f"{role}_{side}" if self.projections is not None else group.name, side)
            if key not in built:
                built[key] = self._role_vectors(looked_up[group.collection][(group.name, side)], role, side,
                                                features)
            return built[key]

        offsets = features[schema.HIST_ITEM].offsets().long()
        side_ids = self._side_ids(features)
        att_hist, att_target = vectors(ATTENTION, HIST), vectors(ATTENTION, TARGET)
        if self.add_temporal:  # the keys carry time: one add before the search, [L, n * d_a]
            att_hist = att_hist + self._side(ATTENTION, HIST)[side_ids].sum(1)
            att_target = att_target + self._side(ATTENTION, TARGET).sum(0)
        separate = not self.add_temporal  # the attention side's side tables stay apart (concat)
        return SequenceEmbeddings(
            att_hist=att_hist,
            att_target=att_target,
            rep_hist=vectors(REPRESENTATION, HIST),
            rep_target=vectors(REPRESENTATION, TARGET),
            offsets=offsets,
            att_positions=self._positions(ATTENTION, HIST),
            att_target_position=self._positions(ATTENTION, TARGET),
            rep_positions=self._positions(REPRESENTATION, HIST),
            rep_target_position=self._positions(REPRESENTATION, TARGET),
            side_ids=side_ids,
            att_side=self._side(ATTENTION, HIST) if separate else None,
            att_target_side=self._side(ATTENTION, TARGET) if separate else None,
            rep_side=self._side(REPRESENTATION, HIST),
            rep_target_side=self._side(REPRESENTATION, TARGET),
            objectives=features[schema.TARGET_OBJECTIVE].values() - 1 if self.objectives > 1 else None,
        )

    def lookup_selected(self, features: KeyedJaggedTensor, offsets: torch.Tensor, top_indices: torch.Tensor,
                        top_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Representation vectors of the selected behaviors and of the targets, from one lookup of
        ``B * K'`` + ``B`` rows instead of ``L`` + ``B`` (the ESU reads only the selected behaviors).

        Args:
            features: the batch KJT; offsets ``[B + 1]`` of its histories.
            top_indices, top_mask: ``[B, K']`` the search's selection (slots within each history).

        Returns:
            selected ``[B, K', n * d_rep]`` (zeros where ``top_mask`` is False) and rep_target ``[B, n * d_rep]``.
        """
        hist_group = serving_group(self.layout, REPRESENTATION, HIST)
        target_group = serving_group(self.layout, REPRESENTATION, TARGET)
        picked = kjt.selected_features(features, offsets, top_indices, top_mask)
        looked_up = self._lookup(self.groups[hist_group].collection, picked)
        selected = self._role_vectors(looked_up[(hist_group, HIST)], REPRESENTATION, HIST, picked)
        return (kjt.pad_selected(selected, top_mask),
                self._role_vectors(looked_up[(target_group, TARGET)], REPRESENTATION, TARGET, picked))

    def _lookup(self, collection: str, features: KeyedJaggedTensor) -> Dict[Tuple[str, str], torch.Tensor]:
        """One collection's ``[item; cate; ...]`` vectors per (group, side) it serves: ``[L, n * d]`` for the
        history side, ``[B, n * d]`` for the targets."""
        module = self.collections[collection]
        if not self.bags:
            looked_up = module(features)  # indexed by name: the train pipeline fx-traces this code
            return kjt.sequence_set_vectors({key: looked_up[key].values() for key in self._features[collection]},
                                            self._group_sides[collection], self.fields)
        bag_inputs = getattr(self, f"{collection}_bag_inputs")
        return kjt.split_bags(module(bag_inputs(features)), features, self._group_sides[collection], self.fields)

    def _role_vectors(self, vectors: torch.Tensor, role: str, side: str,
                      features: KeyedJaggedTensor) -> torch.Tensor:
        """``[rows, n * d]`` ``[item; cate; ...]`` vectors of ``role`` on ``side``: a group's lookup of
        ``features``, each field projected when the spec has projections. With seller or brand in use, a field's
        block is zero where its id is 0 (padding; the data's ids start at 1)."""
        dim = self.groups[serving_group(self.layout, role, side)].dim
        if any(field in SEMANTIC_SIDE_FIELDS for field in self.fields):
            ids = torch.stack([features[FIELDS[field][side]].values() for field in self.fields], dim=1)
            vectors = (vectors.unflatten(1, (len(self.fields), dim)) * (ids != 0).unsqueeze(-1).to(vectors.dtype)
                       ).flatten(1)
        if self.projections is None:
            return vectors
        maps = self.projections[f"{role}_{side}"].fields
        # field i's columns by their known width (a chunk() would be a proxy under the train pipeline's trace)
        return torch.cat([maps[field](vectors.narrow(1, i * dim, dim)) for i, field in enumerate(self.fields)],
                         dim=1)

    def _positions(self, role: str, side: str) -> Optional[torch.Tensor]:
        """``[P, d]`` position vectors of ``role`` (history side), or the target's ``[d]``; with O objectives
        ``[O, P, d]`` and ``[O, d]`` (each slice's row 0)."""
        if self.positions is None:
            return None
        table = self.positions[serving_group(self.layout, role, side)].weight
        if self.projections is not None:
            table = self.projections[f"{role}_{side}"].position(table)
        return table if side == HIST else table[..., 0, :]

    def _side_ids(self, features: KeyedJaggedTensor) -> Optional[torch.Tensor]:
        """``[L, S]`` the side fields' ids of every behavior as rows of the stacked side tables (:meth:`_side`)."""
        if self.side_tables is None:
            return None
        first_rows = itertools.accumulate([0] + [self.side_rows[f] for f in self.side_fields])
        return torch.stack([features[SIDE_KEYS[f]].values() + first for f, first in zip(self.side_fields, first_rows)],
                           dim=1)

    def _side(self, role: str, side: str) -> Optional[torch.Tensor]:
        """Every side field's rows of ``role``'s group, stacked ``[R, d]`` (history side), or the target's row
        0 of each ``[S, d]``."""
        if self.side_tables is None:
            return None
        group = serving_group(self.layout, role, side)
        tables = [self.side_tables[f][group].weight for f in self.side_fields]
        if self.projections is not None:
            maps = self.projections[f"{role}_{side}"].side
            tables = [maps[f](t) for f, t in zip(self.side_fields, tables)]
        return torch.cat(tables) if side == HIST else torch.stack([t[0] for t in tables])


class PositionTable(nn.Module):
    """Dense table of target-relative position vectors, row p = p behaviors before the target (0 = target);
    also the table of a side field (row = the field's id, 0 = the target's).

    ``weight`` is ``[num_positions, dim]``, or with ``slices`` > 1 (one per target objective, docs/side-info.md
    §2.4) ``[slices, num_positions, dim]``. Tiny, so it is replicated (trained by the dense optimizer) rather
    than sharded.
    """

    def __init__(self, num_positions: int, dim: int, device: torch.device, slices: int = 1) -> None:
        super().__init__()
        shape = (num_positions, dim) if slices == 1 else (slices, num_positions, dim)
        self.weight = nn.Parameter(torch.empty(shape, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The same rule TorchRec uses for its tables (the reference code's N(0, 0.01) comes from init_std); each
        # slice is initialised as a table of its own.
        bound = math.sqrt(1.0 / self.weight.size(-2))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` of any shape -> vectors of shape ``positions.shape + [dim]``."""
        return self.weight[positions]
