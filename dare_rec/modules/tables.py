"""The model's embedding tables: which table groups a layout has, their names and dims, and which group serves
each (role, side).

The spec's ``layout`` decides which *table groups* exist (dare_rec/modules/variants.py) and which group serves
each (role, side) pair, role = attention (``att``) or representation (``rep``), side = history behaviors
(``hist``) or the target (``target``):

==========  ====================================================  =============================
layout      groups (each: one table per semantic field)           group of (role, side)
==========  ====================================================  =============================
shared      ``shared`` (d_rep)                                     always ``shared``
decoupled   ``att`` (attention dims), ``rep`` (d_rep)              ``role``
four        ``att_hist``, ``att_target`` (attention dims),         ``role_side``
            ``rep_hist``, ``rep_target`` (d_rep)
==========  ====================================================  =============================

The semantic fields are item and category, then the seller and brand of ``model.side_fields`` (their tables
``seller_<group>``, ``brand_<group>``: ``ModelConfig.semantic_fields``). A group that serves both sides has each
table shared by the history feature and the target feature
(``item_att`` serves ``hist_item`` and ``target_item``). The groups of each role live in one collection per
role (one EmbeddingCollection requires one embedding dim; ``shared`` in one). Every group also has a dense
position table (row p = p behaviors before the target; row 0 = the target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Tuple

from dare_rec.config import ModelConfig
from dare_rec.data import schema

ATTENTION = "att"
REPRESENTATION = "rep"
HIST = "hist"
TARGET = "target"
ROLES = (ATTENTION, REPRESENTATION)
SIDES = (HIST, TARGET)

# semantic field -> its feature on each side (a model has item, cate and the seller / brand it uses)
FIELDS: Dict[str, Dict[str, str]] = {
    "item": {HIST: schema.HIST_ITEM, TARGET: schema.TARGET_ITEM},
    "cate": {HIST: schema.HIST_CATE, TARGET: schema.TARGET_CATE},
    "seller": {HIST: schema.HIST_SELLER, TARGET: schema.TARGET_SELLER},
    "brand": {HIST: schema.HIST_BRAND, TARGET: schema.TARGET_BRAND},
}


class BagKey(NamedTuple):
    """The bag feature of one table under ``singleton_bags``: ``name`` (= the table's name), the ``field``
    (item, cate, seller, brand) whose ids it reads, and the ``sides`` whose ids fill its bags (the others stay
    empty)."""

    name: str
    field: str
    sides: Tuple[str, ...]


@dataclass(frozen=True)
class TableGroup:
    """One table per semantic field (``item_<name>``, ``cate_<name>``, ...) plus a position table.

    Attributes:
        name: group name (table-name suffix).
        collection: the EmbeddingCollection holding its tables.
        dim: embedding dim of its tables.
        position_dim: dim of its position table.
        side_dim: dim of its dense side fields' tables (time gap, btype): position_dim, or under
            ``temporal_merge add`` n * dim, the width of the group's [item; cate; ...] vector, to which their rows
            are added.
        sides: the sides it serves (its tables' features).
        fields: its tables' fields (``ModelConfig.semantic_fields``), in the order of their vector blocks.
    """

    name: str
    collection: str
    dim: int
    position_dim: int
    side_dim: int
    sides: Tuple[str, ...]
    fields: Tuple[str, ...]


def table_groups(model: ModelConfig) -> List[TableGroup]:
    """The table groups of ``model``'s layout (see the module docstring)."""
    layout = model.spec().layout
    fields = model.semantic_fields
    att = dict(dim=model.attention_dim, position_dim=model.attention_position_dim,
               side_dim=model.attention_side_dim, fields=fields)
    rep = dict(dim=model.d_rep, position_dim=model.d_pos, side_dim=model.representation_side_dim, fields=fields)
    if layout == "shared":
        return [TableGroup("shared", "shared", sides=SIDES, **rep)]
    if layout == "decoupled":
        return [TableGroup(ATTENTION, ATTENTION, sides=SIDES, **att), TableGroup(REPRESENTATION, REPRESENTATION,
                                                                              sides=SIDES, **rep)]
    return [TableGroup(f"{role}_{side}", role, sides=(side,), **(att if role == ATTENTION else rep))
            for role in ROLES for side in SIDES]


def serving_group(layout: str, role: str, side: str) -> str:
    """The name of the group that serves ``role`` on ``side`` in ``layout``."""
    if layout == "shared":
        return "shared"
    return role if layout == "decoupled" else f"{role}_{side}"


def table_names(model: ModelConfig) -> List[str]:
    """Sharded table names of ``model``, e.g. ``['item_att', 'cate_att', 'item_rep', 'cate_rep']``."""
    return [f"{field}_{s.name}" for s in table_groups(model) for field in s.fields]


