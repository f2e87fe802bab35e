"""KeyedJaggedTensor reshaping around the table lookups: the selected behaviors' KJT, singleton bags for pooled
lookups and their split back into per-group vectors, and the per-group vectors of sequence lookups.

The helpers that run inside the model's forward are ``torch.fx.wrap``-ped (TorchRec's train pipeline fx-traces
the model and keeps wrapped calls as leaves); the singleton bags are built by a module of their own
(:class:`SingletonBags`), which the pipeline can run ahead of the step.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from dare_rec.data import schema
from dare_rec.modules.tables import FIELDS, SIDES, TARGET, HIST, BagKey


def keyed(keys: List[str], values: torch.Tensor, lengths: torch.Tensor, length_per_key: List[int],
          stride: Optional[int] = None) -> KeyedJaggedTensor:
    """A KJT whose per-key sizes are given (``length_per_key`` from shapes, never read from ``lengths``): with
    them TorchRec's splits and input distribution never copy lengths to the host."""
    return KeyedJaggedTensor(keys=keys, values=values, lengths=lengths, stride=stride,
                             length_per_key=length_per_key,
                             offset_per_key=list(itertools.accumulate([0] + length_per_key)))


# The batch keys with one id per sample (the targets' and, with several objectives, the target objective); every
# other key is jagged like the history.
_TARGET_KEYS = frozenset([*(by_side[TARGET] for by_side in FIELDS.values()), schema.TARGET_OBJECTIVE])


@torch.fx.wrap
def selected_features(features: KeyedJaggedTensor, offsets: torch.Tensor, top_indices: torch.Tensor,
                      top_mask: torch.Tensor) -> KeyedJaggedTensor:
    """The batch KJT reduced to the selected behaviors, with fixed shapes: every history key (``hist_item``,
    ``hist_cate``, the side keys) holds the ``K'`` slots of ``top_indices`` (in selection order), a masked slot
    reading id 0 (the padding row; :func:`pad_selected` zeroes its vector), target keys unchanged. The keys keep
    the batch's order: a sharded collection maps its features to positions among the keys of its first input
    once, and reads the batch itself in training with the full aux head. No shape depends on the data, so nothing
    is read on the host.
    fx-wrapped: it depends on the search's output, so the module reading it runs without input-distribution
    overlap in TorchRec's train pipeline."""
    batch, width = top_indices.shape
    empty = features[schema.HIST_ITEM].values().numel() == 0  # every history empty (a shape, not a value)
    flat = torch.where(top_mask, offsets[:-1].unsqueeze(1) + top_indices, 0).reshape(-1)
    keep = top_mask.reshape(-1)
    targets = features[schema.TARGET_ITEM].values().numel()
    hist_lengths = torch.full((batch,), width, dtype=torch.int32, device=top_indices.device)
    ones = torch.ones(targets, dtype=torch.int32, device=top_indices.device)
    values, lengths, sizes = [], [], []
    for key in features.keys():
        ids = features[key].values()
        if key in _TARGET_KEYS:
            values.append(ids)
            lengths.append(ones)
            sizes.append(targets)
        else:
            values.append(ids.new_zeros(batch * width) if empty else torch.where(keep, ids[flat], 0))
            lengths.append(hist_lengths)
            sizes.append(batch * width)
    return keyed(features.keys(), torch.cat(values), torch.cat(lengths), sizes)


@torch.fx.wrap
def pad_selected(values: torch.Tensor, top_mask: torch.Tensor) -> torch.Tensor:
    """``[B * K', D]`` vectors of the selected slots (:func:`selected_features`) -> ``[B, K', D]``, zeros where
    nothing was selected (their gradient too)."""
    return values.view(top_mask.shape + values.shape[1:]) * top_mask.unsqueeze(-1).to(values.dtype)


def singleton_bags(features: KeyedJaggedTensor, keys: Tuple[BagKey, ...]) -> KeyedJaggedTensor:
    """The batch KJT as one bag feature per table (``keys``), every id its own bag, for EmbeddingBagCollection
    lookups (SUM of one id = its row).

    Every key has stride ``L + B``: bags 0..L-1 are the history ids, bags L..L+B-1 the target ids; a key
    whose table serves one side only leaves the other side's bags empty (a zero vector, no gradient). Ranks
    may have different strides (TorchRec's pooled sharding exchanges each rank's own batch size; tested with
    uneven batches on 2 ranks).
    """
    hist_count, target_count = features[schema.HIST_ITEM].values().numel(), features[schema.TARGET_ITEM].values().numel()
    device = features.values().device
    ones = {side: torch.ones(count, dtype=torch.int32, device=device)
            for side, count in ((HIST, hist_count), (TARGET, target_count))}
    counts = {HIST: hist_count, TARGET: target_count}
    values, lengths, length_per_key = [], [], []
    for key in keys:
        values.extend(features[FIELDS[key.field][side]].values() for side in key.sides)
        lengths.extend(ones[side] if side in key.sides else torch.zeros_like(ones[side]) for side in SIDES)
        length_per_key.append(sum(counts[side] for side in key.sides))
    return keyed([key.name for key in keys], torch.cat(values), torch.cat(lengths), length_per_key,
                 stride=hist_count + target_count)


class SingletonBags(nn.Module):
    """:func:`singleton_bags` for one collection, as a module without parameters: TorchRec's train pipeline
    (``pipeline_postproc``) runs such a module on the batch ahead of the step, with the collection's input
    distribution, so the pooled lookups it feeds are pipelined like a lookup of the batch itself.

    Args:
        keys: the collection's bag features (:class:`BagKey`).
    """

    def __init__(self, keys: Tuple[BagKey, ...]) -> None:
        super().__init__()
        self.keys = keys

    def forward(self, features: KeyedJaggedTensor) -> KeyedJaggedTensor:
        return singleton_bags(features, self.keys)


@torch.fx.wrap
def split_bags(pooled: KeyedTensor, features: KeyedJaggedTensor, group_sides: Tuple[Tuple[str, str], ...],
               fields: Tuple[str, ...]) -> Dict[Tuple[str, str], torch.Tensor]:
    """An EmbeddingBagCollection's output over :func:`singleton_bags` -> the ``[item; cate; ...]`` vectors (one
    block per field of ``fields``) of each (group, side) in ``group_sides``: the set's columns of rows 0..L-1 for
    the history, of the last B rows for the targets.

    The pooled values are ``[L + B, sum of dims]``, each key's columns in the order of ``pooled.keys()``. When a
    set's item and category keys are adjacent in that order, its vectors are a view: no copy forward, and the
    backward assembles the values' gradient with one concatenation (per-feature splits and ``[item; cate]``
    concatenations cost three copies of the lookups each way). A sharded collection may order its keys
    otherwise (table-wise sharding lists them rank by rank); then the set's columns are concatenated.
    """
    hist_count, target_count = features[schema.HIST_ITEM].values().numel(), features[schema.TARGET_ITEM].values().numel()
    rows = dict(zip(SIDES, pooled.values().split([hist_count, target_count])))
    keys, dims = pooled.keys(), pooled.length_per_key()
    starts = list(itertools.accumulate([0] + dims))
    out: Dict[Tuple[str, str], torch.Tensor] = {}
    for name, side in group_sides:
        positions = [keys.index(f"{field}_{name}") for field in fields]
        block = rows[side]
        if positions == list(range(positions[0], positions[0] + len(positions))):
            first, width = starts[positions[0]], starts[positions[-1] + 1] - starts[positions[0]]
            # a set that fills the whole output (every layout but ``four``, keys in order) takes the rows as
            # they are: a narrow view would add a zero-filled full-size gradient and a copy to the backward
            out[(name, side)] = block if width == block.size(1) else block.narrow(1, first, width)
        else:
            out[(name, side)] = torch.cat([block.narrow(1, starts[i], dims[i]) for i in positions], dim=1)
    return out


def sequence_set_vectors(per_feature: Dict[str, torch.Tensor], group_sides: Tuple[Tuple[str, str], ...],
                         fields: Tuple[str, ...]) -> Dict[Tuple[str, str], torch.Tensor]:
    """An EmbeddingCollection's per-feature values -> the ``[item; cate; ...]`` vectors (one block per field of
    ``fields``) of each (group, side)."""
    return {(name, side): torch.cat([per_feature[FIELDS[field][side]] for field in fields], dim=1)
            for name, side in group_sides}


