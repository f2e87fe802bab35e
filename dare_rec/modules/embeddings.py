"""Embedding tables of the model: TorchRec EmbeddingCollections (sharded), small position tables, projections.

The spec's ``layout`` decides which *table sets* exist (dare_rec/modules/variants.py) and which set serves
each (role, side) pair, role = attention (``att``) or representation (``rep``), side = history behaviors
(``hist``) or the target (``target``):

==========  ====================================================  =============================
layout      sets (each: one item table, one category table)       set of (role, side)
==========  ====================================================  =============================
shared      ``shared`` (d_rep)                                     always ``shared``
decoupled   ``att`` (d_att), ``rep`` (d_rep)                       ``role``
four        ``att_hist``, ``att_target`` (d_att), ``rep_hist``,    ``role_side``
            ``rep_target`` (d_rep)
==========  ====================================================  =============================

A set that serves both sides has each table shared by the history feature and the target feature
(``item_att`` serves ``hist_item`` and ``target_item``). One EmbeddingCollection requires one embedding dim,
so the sets of each role live in one collection per role (``shared`` in one). Every set also has a dense
position table (row p = p behaviors before the target; row 0 = the target), replicated, not sharded (a
target-only set of the ``four`` layout reads only its row 0).

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
from dataclasses import dataclass
from functools import partial
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from dare_rec.config import SINGLETON_BAGS, ModelConfig, ShardingConfig, resolve_lookup
from dare_rec.data import schema as S

ATTENTION = "att"
REPRESENTATION = "rep"
HIST = "hist"
TARGET = "target"
ROLES = (ATTENTION, REPRESENTATION)
SIDES = (HIST, TARGET)

# field -> its feature on each side
_FIELDS: Dict[str, Dict[str, str]] = {
    "item": {HIST: S.HIST_ITEM, TARGET: S.TARGET_ITEM},
    "cate": {HIST: S.HIST_CATE, TARGET: S.TARGET_CATE},
}
_DATA_TYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16}


class BagKey(NamedTuple):
    """The bag feature of one table under ``singleton_bags``: ``name`` (= the table's name), the ``field``
    (item / cate) whose ids it reads, and the ``sides`` whose ids fill its bags (the others stay empty)."""

    name: str
    field: str
    sides: Tuple[str, ...]


@dataclass(frozen=True)
class TableSet:
    """One item and one category table (``item_<name>``, ``cate_<name>``) plus a position table.

    Attributes:
        name: set name (table-name suffix).
        collection: the EmbeddingCollection holding its tables.
        dim: embedding dim of its tables.
        position_dim: dim of its position table.
        sides: the sides it serves (its tables' features).
    """

    name: str
    collection: str
    dim: int
    position_dim: int
    sides: Tuple[str, ...]


def table_sets(model: ModelConfig) -> List[TableSet]:
    """The table sets of ``model``'s layout (see the module docstring)."""
    layout = model.spec().layout
    att = dict(dim=model.attention_dim, position_dim=model.attention_position_dim)
    rep = dict(dim=model.d_rep, position_dim=model.d_pos)
    if layout == "shared":
        return [TableSet("shared", "shared", sides=SIDES, **rep)]
    if layout == "decoupled":
        return [TableSet(ATTENTION, ATTENTION, sides=SIDES, **att), TableSet(REPRESENTATION, REPRESENTATION,
                                                                              sides=SIDES, **rep)]
    return [TableSet(f"{role}_{side}", role, sides=(side,), **(att if role == ATTENTION else rep))
            for role in ROLES for side in SIDES]


def set_name(layout: str, role: str, side: str) -> str:
    """The set that serves ``role`` on ``side`` in ``layout``."""
    if layout == "shared":
        return "shared"
    return role if layout == "decoupled" else f"{role}_{side}"


def table_names(model: ModelConfig) -> List[str]:
    """Sharded table names of ``model``, e.g. ``['item_att', 'cate_att', 'item_rep', 'cate_rep']``."""
    return [f"{field}_{s.name}" for s in table_sets(model) for field in _FIELDS]


class SequenceEmbeddings(NamedTuple):
    """Role vectors of a batch (B samples, L = total history behaviors, P = max_len + 1 positions).

    Attributes:
        att_hist: ``[L, 2 * d_a]`` [item; cate] attention vectors of every behavior (keys).
        att_target: ``[B, 2 * d_a]`` attention vectors of the targets (queries).
        rep_hist: ``[L, 2 * d_r]`` [item; cate] representation vectors of every behavior (values); None when
            only the selected behaviors are looked up (:meth:`SparseArch.lookup_selected`).
        rep_target: ``[B, 2 * d_r]`` representation vectors of the targets (None likewise).
        offsets: ``[B + 1]`` int64 row offsets of the history.
        att_positions: ``[P, d_pa]`` attention position vector of every position (None without positions).
        att_target_position: ``[d_pa]`` attention position vector of the target (position 0).
        rep_positions: ``[P, d_p]`` representation position vectors.
        rep_target_position: ``[d_p]``.
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


class FieldProjections(nn.Module):
    """Square linear maps without bias, one per field (item, category, position), for one (role, side)."""

    def __init__(self, dim: int, position_dim: Optional[int], device: torch.device) -> None:
        super().__init__()
        self.fields = nn.ModuleDict({f: nn.Linear(dim, dim, bias=False, device=device) for f in _FIELDS})
        self.position = nn.Linear(position_dim, position_dim, bias=False, device=device) if position_dim else None


class SparseArch(nn.Module):
    """Looks up every table set and turns the lookups into the role vectors of :class:`SequenceEmbeddings`.

    Args:
        model: spec and dims.
        sharding: per-table storage data type (fp32/fp16).
        num_items, num_categories: vocabulary sizes including padding id 0.
        max_len: longest history (N); history-side position tables have ``max_len + 1`` rows.
        embedding_device: device of the EmbeddingCollections ("meta" when DistributedModelParallel
            materialises them sharded).
        dense_device: device of the position tables and projections.
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
        spec = model.spec()
        self.layout = spec.layout
        self.sets = {s.name: s for s in table_sets(model)}
        vocab = {"item": num_items, "cate": num_categories}
        init_fn = None if model.init_std is None else partial(nn.init.normal_, mean=0.0, std=model.init_std)
        self.bags = resolve_lookup(sharding.lookup, dense_device.type) == SINGLETON_BAGS
        config_class = EmbeddingBagConfig if self.bags else EmbeddingConfig
        extra = {"pooling": PoolingType.SUM} if self.bags else {}
        tables: Dict[str, list] = {}
        self._bag_keys: Dict[str, Tuple[BagKey, ...]] = {}
        self._set_sides: Dict[str, Tuple[Tuple[str, str], ...]] = {}  # collection -> its (set, side) pairs
        for s in self.sets.values():
            self._set_sides[s.collection] = self._set_sides.get(s.collection, ()) + tuple(
                (s.name, side) for side in s.sides)
            self._bag_keys[s.collection] = self._bag_keys.get(s.collection, ()) + tuple(
                BagKey(f"{field}_{s.name}", field, s.sides) for field in _FIELDS)
            tables.setdefault(s.collection, []).extend(
                config_class(
                    name=f"{field}_{s.name}",
                    num_embeddings=vocab[field],
                    embedding_dim=s.dim,
                    feature_names=[f"{field}_{s.name}"] if self.bags else [features[side] for side in s.sides],
                    data_type=_DATA_TYPES[sharding.for_table(f"{field}_{s.name}").data_type],
                    init_fn=init_fn,
                    **extra,
                )
                for field, features in _FIELDS.items()
            )
        self._features = {name: [f for config in configs for f in config.feature_names]
                          for name, configs in tables.items()}
        module_class = EmbeddingBagCollection if self.bags else EmbeddingCollection
        self.collections = nn.ModuleDict({
            name: module_class(tables=configs, device=embedding_device) for name, configs in tables.items()
        })
        self.positions = nn.ModuleDict({
            s.name: PositionTable(max_len + 1, s.position_dim, dense_device)
            for s in self.sets.values()
        }) if spec.positions else None
        self.projections = nn.ModuleDict({
            f"{role}_{side}": FieldProjections(
                self.sets[set_name(self.layout, role, side)].dim,
                self.sets[set_name(self.layout, role, side)].position_dim if spec.positions else None,
                dense_device)
            for role in ROLES for side in SIDES
        }) if spec.projection == "linear" else None

    def table_inputs(self) -> Dict[str, List[str]]:
        """Table name -> the batch features (``hist_item``, ``target_item``, ...) whose ids it looks up."""
        return {f"{field}_{s.name}": [features[side] for side in s.sides]
                for s in self.sets.values() for field, features in _FIELDS.items()}

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
        # collection -> its vectors per (set, side); indexed, never iterated: the train pipeline fx-traces
        # this code and a wrapped function's result is a proxy there
        looked_up = {name: self._lookup(name, features) for name in names}
        # Without projections a set that serves two roles gives both the same vectors: build them once.
        built: Dict[Tuple[str, str], torch.Tensor] = {}

        def vectors(role: str, side: str) -> Optional[torch.Tensor]:
            s = self.sets[set_name(self.layout, role, side)]
            if s.collection not in looked_up:
                return None
            key = (f"{role}_{side}" if self.projections is not None else s.name, side)
            if key not in built:
                built[key] = self._role_vectors(looked_up[s.collection][(s.name, side)], role, side)
            return built[key]

        return SequenceEmbeddings(
            att_hist=vectors(ATTENTION, HIST),
            att_target=vectors(ATTENTION, TARGET),
            rep_hist=vectors(REPRESENTATION, HIST),
            rep_target=vectors(REPRESENTATION, TARGET),
            offsets=features[S.HIST_ITEM].offsets().long(),
            att_positions=self._positions(ATTENTION, HIST),
            att_target_position=self._positions(ATTENTION, TARGET),
            rep_positions=self._positions(REPRESENTATION, HIST),
            rep_target_position=self._positions(REPRESENTATION, TARGET),
        )

    def lookup_selected(self, features: KeyedJaggedTensor, offsets: torch.Tensor, top_indices: torch.Tensor,
                        top_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Representation vectors of the selected behaviors and of the targets, from one lookup of
        ``B * K'`` + ``B`` rows instead of ``L`` + ``B`` (the ESU reads only the selected behaviors).

        Args:
            features: the batch KJT; offsets ``[B + 1]`` of its histories.
            top_indices, top_mask: ``[B, K']`` the search's selection (slots within each history).

        Returns:
            selected ``[B, K', 2 * d_rep]`` (zeros where ``top_mask`` is False) and rep_target ``[B, 2 * d_rep]``.
        """
        hist_set = set_name(self.layout, REPRESENTATION, HIST)
        target_set = set_name(self.layout, REPRESENTATION, TARGET)
        looked_up = self._lookup(self.sets[hist_set].collection,
                                 selected_features(features, offsets, top_indices, top_mask))
        selected = self._role_vectors(looked_up[(hist_set, HIST)], REPRESENTATION, HIST)
        return (pad_selected(selected, top_mask),
                self._role_vectors(looked_up[(target_set, TARGET)], REPRESENTATION, TARGET))

    def _lookup(self, collection: str, features: KeyedJaggedTensor) -> Dict[Tuple[str, str], torch.Tensor]:
        """One collection's ``[item; cate]`` vectors per (set, side) it serves: ``[L, 2 * d]`` for the
        history side, ``[B, 2 * d]`` for the targets."""
        module = self.collections[collection]
        if not self.bags:
            looked_up = module(features)  # indexed by name: the train pipeline fx-traces this code
            return sequence_set_vectors({key: looked_up[key].values() for key in self._features[collection]},
                                        self._set_sides[collection])
        keys = self._bag_keys[collection]
        return split_bags(module(singleton_bags(features, keys)), features, self._set_sides[collection])

    def _role_vectors(self, vectors: torch.Tensor, role: str, side: str) -> torch.Tensor:
        """``[rows, 2 * d]`` ``[item; cate]`` vectors of ``role`` on ``side``: a set's lookup, each field
        projected when the spec has projections."""
        if self.projections is None:
            return vectors
        maps = self.projections[f"{role}_{side}"].fields
        return torch.cat([maps[field](part) for field, part in zip(_FIELDS, vectors.chunk(len(_FIELDS), dim=1))],
                         dim=1)

    def _positions(self, role: str, side: str) -> Optional[torch.Tensor]:
        """``[P, d]`` position vectors of ``role`` (history side), or the target's ``[d]``."""
        if self.positions is None:
            return None
        table = self.positions[set_name(self.layout, role, side)].weight
        if self.projections is not None:
            table = self.projections[f"{role}_{side}"].position(table)
        return table if side == HIST else table[0]


@torch.fx.wrap
def selected_features(features: KeyedJaggedTensor, offsets: torch.Tensor, top_indices: torch.Tensor,
                      top_mask: torch.Tensor) -> KeyedJaggedTensor:
    """The batch KJT reduced to the selected behaviors: histories of ``top_mask.sum(1)`` ids (in selection
    order), targets unchanged. Data-dependent shapes, so fx-wrapped (TorchRec's train pipeline traces the
    model; the module reading this KJT then runs without input-distribution overlap)."""
    flat = (offsets[:-1].unsqueeze(1) + top_indices)[top_mask]
    lengths = top_mask.sum(1).to(torch.int32)
    ones = torch.ones_like(lengths)
    return KeyedJaggedTensor(
        keys=[S.HIST_ITEM, S.HIST_CATE, S.TARGET_ITEM, S.TARGET_CATE],
        values=torch.cat([features[S.HIST_ITEM].values()[flat], features[S.HIST_CATE].values()[flat],
                          features[S.TARGET_ITEM].values(), features[S.TARGET_CATE].values()]),
        lengths=torch.cat([lengths, lengths, ones, ones]),
    )


@torch.fx.wrap
def pad_selected(values: torch.Tensor, top_mask: torch.Tensor) -> torch.Tensor:
    """``[S, D]`` vectors of the selected behaviors (row-major over ``top_mask``) -> ``[B, K', D]``, zeros
    where nothing was selected."""
    out = values.new_zeros(top_mask.shape + values.shape[1:])
    return out.index_put((top_mask,), values)


@torch.fx.wrap
def singleton_bags(features: KeyedJaggedTensor, keys: Tuple[BagKey, ...]) -> KeyedJaggedTensor:
    """The batch KJT as one bag feature per table (``keys``), every id its own bag, for EmbeddingBagCollection
    lookups (SUM of one id = its row).

    Every key has stride ``L + B``: bags 0..L-1 are the history ids, bags L..L+B-1 the target ids; a key
    whose table serves one side only leaves the other side's bags empty (a zero vector, no gradient). Ranks
    may have different strides (TorchRec's pooled sharding exchanges each rank's own batch size; tested with
    uneven batches on 2 ranks).
    """
    hist_count, target_count = features[S.HIST_ITEM].values().numel(), features[S.TARGET_ITEM].values().numel()
    device = features.values().device
    ones = {side: torch.ones(count, dtype=torch.int32, device=device)
            for side, count in ((HIST, hist_count), (TARGET, target_count))}
    values, lengths = [], []
    for key in keys:
        values.extend(features[_FIELDS[key.field][side]].values() for side in key.sides)
        lengths.extend(ones[side] if side in key.sides else torch.zeros_like(ones[side]) for side in SIDES)
    return KeyedJaggedTensor(keys=[key.name for key in keys], values=torch.cat(values),
                             lengths=torch.cat(lengths),
                             stride=hist_count + target_count)


@torch.fx.wrap
def split_bags(pooled: KeyedTensor, features: KeyedJaggedTensor,
               set_sides: Tuple[Tuple[str, str], ...]) -> Dict[Tuple[str, str], torch.Tensor]:
    """An EmbeddingBagCollection's output over :func:`singleton_bags` -> the ``[item; cate]`` vectors of each
    (set, side) in ``set_sides``: the set's columns of rows 0..L-1 for the history, of the last B rows for
    the targets.

    The pooled values are ``[L + B, sum of dims]``, each key's columns in the order of ``pooled.keys()``. When a
    set's item and category keys are adjacent in that order, its vectors are a view: no copy forward, and the
    backward assembles the values' gradient with one concatenation (per-feature splits and ``[item; cate]``
    concatenations cost three copies of the lookups each way). A sharded collection may order its keys
    otherwise (table-wise sharding lists them rank by rank); then the set's columns are concatenated.
    """
    hist_count, target_count = features[S.HIST_ITEM].values().numel(), features[S.TARGET_ITEM].values().numel()
    rows = dict(zip(SIDES, pooled.values().split([hist_count, target_count])))
    keys, dims = pooled.keys(), pooled.length_per_key()
    starts = list(itertools.accumulate([0] + dims))
    out: Dict[Tuple[str, str], torch.Tensor] = {}
    for name, side in set_sides:
        positions = [keys.index(f"{field}_{name}") for field in _FIELDS]
        block = rows[side]
        if positions == list(range(positions[0], positions[0] + len(positions))):
            first, width = starts[positions[0]], starts[positions[-1] + 1] - starts[positions[0]]
            # a set that fills the whole output (every layout but ``four``, keys in order) takes the rows as
            # they are: a narrow view would add a zero-filled full-size gradient and a copy to the backward
            out[(name, side)] = block if width == block.size(1) else block.narrow(1, first, width)
        else:
            out[(name, side)] = torch.cat([block.narrow(1, starts[i], dims[i]) for i in positions], dim=1)
    return out


def sequence_set_vectors(per_feature: Dict[str, torch.Tensor],
                         set_sides: Tuple[Tuple[str, str], ...]) -> Dict[Tuple[str, str], torch.Tensor]:
    """An EmbeddingCollection's per-feature values -> the ``[item; cate]`` vectors of each (set, side)."""
    return {(name, side): torch.cat([per_feature[by_side[side]] for by_side in _FIELDS.values()], dim=1)
            for name, side in set_sides}


class PositionTable(nn.Module):
    """Dense table of target-relative position vectors, row p = p behaviors before the target (0 = target).

    Tiny, so it is replicated (trained by the dense optimizer) rather than sharded.
    """

    def __init__(self, num_positions: int, dim: int, device: torch.device) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_positions, dim, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The same rule TorchRec uses for its tables (the reference code's N(0, 0.01) comes from init_std).
        bound = math.sqrt(1.0 / self.weight.size(0))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` of any shape -> vectors of shape ``positions.shape + [dim]``."""
        return self.weight[positions]
