"""Split each training step's embedding-table gradients by the path they come from: attention or representation.

How: the step runs :meth:`DareModel.forward_from_embeddings` on *detached copies* of the role vectors, one copy per role,
even where both roles read the same tensor (a shared table without projections gives ``att_hist is
rep_hist``). After ``loss.backward()`` each copy holds the gradient of its role alone. ``torch.autograd.grad``
carries each role's gradients back through the sparse arch (projections included) to the looked-up rows, the
position tables and the side fields' tables, without updating anything; the rows are then summed per table id.
Finally the sum of both roles is back-propagated through the sparse arch, which is exactly the ordinary step: the
fused sparse optimizer sees the same table gradient (attention path + representation path) as in ``dare-rec
train``.

This is the official analysis' "two tables with identical values" trick done with autograd instead: nothing is
duplicated, and the two paths add up to the shared table's gradient by construction (tested against an
ordinary backward pass).

Works on a plain :class:`DareModel` and on the one inside a DistributedModelParallel (the lookups are captured
with forward hooks on the embedding collections, sharded or not).
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.config import ModelConfig
from dare_rec.modules.embeddings import SequenceEmbeddings
from dare_rec.modules.model import DareModel
from dare_rec.modules.tables import ATTENTION, FIELDS, REPRESENTATION, ROLES, table_groups

# SequenceEmbeddings fields that carry each role's vectors (under temporal_merge add the attention side's side
# rows are inside att_hist / att_target, and its side fields are None).
ROLE_FIELDS: Dict[str, Tuple[str, ...]] = {
    ATTENTION: ("att_hist", "att_target", "att_positions", "att_target_position", "att_side", "att_target_side"),
    REPRESENTATION: ("rep_hist", "rep_target", "rep_positions", "rep_target_position", "rep_side",
                     "rep_target_side"),
}


class RowGradients(NamedTuple):
    """The non-zero part of one table's gradient: ``ids [U]`` int64 (sorted, unique), ``rows [U, dim]``."""

    ids: torch.Tensor
    rows: torch.Tensor


# table name -> role -> its gradient from that role's path
StepGradients = Dict[str, Dict[str, RowGradients]]


def lookup_tables(model: ModelConfig) -> Dict[Tuple[str, str], List[Tuple[str, str]]]:
    """(group, side) -> its (table name, feature) per field in ``[item; cate; ...]`` column order, for every
    lookup the sparse arch makes."""
    return {(g.name, side): [(f"{field}_{g.name}", FIELDS[field][side]) for field in g.fields]
            for g in table_groups(model) for side in g.sides}


def position_table_name(group: str) -> str:
    """Name under which the position table of a table group is reported (``pos_<group>``)."""
    return f"pos_{group}"


def side_table_name(field: str, group: str) -> str:
    """Name under which a side field's table of a table group is reported (``side_<field>_<group>``)."""
    return f"side_{field}_{group}"


def step_loss(model: DareModel, emb: SequenceEmbeddings, features: KeyedJaggedTensor,
              labels: torch.Tensor) -> torch.Tensor:
    """The training loss of :class:`dare_rec.modules.model.DareTrain` computed from given role vectors."""
    out = model.forward_from_embeddings(emb, features)
    loss = F.binary_cross_entropy_with_logits(out.logits, labels)
    if out.aux_logits is not None:
        loss = loss + F.binary_cross_entropy_with_logits(out.aux_logits, labels)
    return loss


class RoleGradientProbe:
    """Runs training steps of ``model`` that also return the per-role gradient of every table they touch.

    Args:
        model: the model (plain, or ``dmp.module.model`` of a DistributedModelParallel; then the caller
            averages dense gradients across ranks, since the DDP wrapper is bypassed).
        model_cfg: its config (table names).
    """

    def __init__(self, model: DareModel, model_cfg: ModelConfig) -> None:
        self.model = model
        self.tables = lookup_tables(model_cfg)
        arch = model.sparse_arch
        # the small dense tables, each reported as a whole: positions and the side fields' tables
        self.dense_tables = {} if arch.positions is None else {
            position_table_name(name): table.weight for name, table in arch.positions.items()}
        if arch.side_tables is not None:
            self.dense_tables.update({side_table_name(field, name): table.weight
                                      for field, tables in arch.side_tables.items() for name, table in tables.items()})
        self._lookups: Dict[Tuple[str, str], torch.Tensor] = {}
        # SparseArch._lookup returns each collection's [item; cate; ...] vectors per (group, side) ([L, n * d]
        # history, [B, n * d] target) whichever way the tables are read (sharding.lookup); record them for the
        # per-row gradients.
        self._arch = arch
        original = arch._lookup

        def capture(collection: str, features: KeyedJaggedTensor) -> Dict[Tuple[str, str], torch.Tensor]:
            looked_up = original(collection, features)
            self._lookups.update(looked_up)
            return looked_up

        arch._lookup = capture

    def close(self) -> None:
        """Restores the lookups."""
        del self._arch._lookup  # the instance attribute shadowed the method

    def step(self, features: KeyedJaggedTensor, labels: torch.Tensor) -> Tuple[torch.Tensor, StepGradients]:
        """Forward and backward of one batch, split by role.

        Leaves ``.grad`` of every dense parameter as ``loss.backward()`` would, and has applied the fused
        sparse optimizer to the tables (as the ordinary step does). Returns the detached loss and, per table
        touched by the batch, the gradient of each role that reads it.
        """
        self._lookups.clear()
        emb = self.model.sparse_arch(features)
        leaves = {name: None if t is None else t.detach().requires_grad_(t.requires_grad)
                  for name, t in emb._asdict().items() if name != "offsets"}
        leaf_emb = SequenceEmbeddings(offsets=emb.offsets, **leaves)
        loss = step_loss(self.model, leaf_emb, features, labels)
        loss.backward()

        # (tables with their ids, or a position table with None; the tensor whose gradient they share)
        inputs: List[Tuple[List[Tuple[str, Optional[torch.Tensor]]], torch.Tensor]] = []
        for set_side, fields in self.tables.items():
            inputs.append(([(table, features[feature].values()) for table, feature in fields],
                           self._lookups[set_side]))
        inputs += [([(name, None)], weight) for name, weight in self.dense_tables.items()]

        grads: StepGradients = {}
        total: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}  # id(output) -> (output, summed grad)
        for role in ROLES:
            pairs = [(getattr(emb, f), leaves[f].grad) for f in ROLE_FIELDS[role]
                     if leaves[f] is not None and leaves[f].grad is not None and getattr(emb, f).requires_grad]
            for out, g in pairs:
                prev = total.get(id(out))
                total[id(out)] = (out, g if prev is None else prev[1] + g)
            if not pairs:
                continue
            per_input = torch.autograd.grad([o for o, _ in pairs], [t for _, t in inputs], [g for _, g in pairs],
                                            retain_graph=True, allow_unused=True)
            by_table: Dict[str, List[Tuple[Optional[torch.Tensor], torch.Tensor]]] = {}
            for (tables, _), g in zip(inputs, per_input):
                if g is None:
                    continue
                for (table, ids), part in zip(tables, g.chunk(len(tables), dim=1)):  # equal dims per group
                    by_table.setdefault(table, []).append((ids, part))
            for table, parts in by_table.items():
                grads.setdefault(table, {})[role] = _rows(parts)
        outputs = list(total.values())
        torch.autograd.backward([o for o, _ in outputs], [g for _, g in outputs])
        return loss.detach(), grads


def _rows(parts: List[Tuple[Optional[torch.Tensor], torch.Tensor]]) -> RowGradients:
    """Sums per-lookup gradients into table rows; ``ids`` None means the gradient is already the whole table."""
    if parts[0][0] is None:
        dense = sum(g for _, g in parts)
        ids = torch.nonzero(dense.abs().sum(1) > 0).squeeze(1)
        return RowGradients(ids, dense[ids].float())
    ids = torch.cat([i for i, _ in parts])
    values = torch.cat([g for _, g in parts]).float()
    unique, inverse = torch.unique(ids, return_inverse=True)
    return RowGradients(unique, values.new_zeros(unique.numel(), values.size(1)).index_add_(0, inverse, values))
