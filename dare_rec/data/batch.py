"""The training/evaluation batch: a TorchRec ``Pipelineable`` so the train pipelines can move and overlap it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from dare_rec.data import schema

# KJT keys, in this order. Histories are jagged (one length per sample); targets have length 1.
SPARSE_KEYS = (schema.HIST_ITEM, schema.HIST_CATE, schema.TARGET_ITEM, schema.TARGET_CATE)
# The KJT key of each side field (``model.dense_side_fields``): behavior types as stored, and the time gap's
# bucket id (dare_rec/data/side.py), computed by the reader. Jagged like the history, after the target keys.
HIST_GAP = "hist_gap"
SIDE_KEYS: Dict[str, str] = {"btype": schema.HIST_BTYPE, "gap": HIST_GAP}


# The KJT keys of each hard-search level read from side columns (``model.hard_side_fields``): the history's ids,
# jagged like the history, then the target's, length 1 per sample. After the side keys: all history keys, then all
# target keys.
HARD_KEYS: Dict[str, Tuple[str, str]] = {"brand": (schema.HIST_BRAND, schema.TARGET_BRAND),
                                         "seller": (schema.HIST_SELLER, schema.TARGET_SELLER)}


def side_keys(side_fields: Sequence[str]) -> Tuple[str, ...]:
    """The KJT keys of ``side_fields`` (in their order), after ``SPARSE_KEYS``."""
    return tuple(SIDE_KEYS[f] for f in side_fields)


def hard_keys(hard_fields: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The history keys and the target keys of ``hard_fields`` (in their order), after the side keys."""
    return tuple(HARD_KEYS[f][0] for f in hard_fields), tuple(HARD_KEYS[f][1] for f in hard_fields)


@dataclass
class Batch(Pipelineable):
    """B samples.

    Attributes:
        sparse_features: KJT with keys ``SPARSE_KEYS`` (then the side keys the model reads)::

                         sample 0        sample 1    ...
            hist_item    [i, i, i, i]    [i, i]          lengths L_b (oldest -> newest)
            hist_cate    [c, c, c, c]    [c, c]          same lengths as hist_item
            target_item  [i]             [i]             length 1
            target_cate  [c]             [c]             length 1
            hist_gap     [g, g, g, g]    [g, g]          with model.time_gap: gap bucket ids, as hist_item
            hist_btype   [t, t, t, t]    [t, t]          with side field btype: behavior types, as hist_item
            hist_brand   [r, r, r, r]    [r, r]          with hard level brand: brand ids, as hist_item
            hist_seller  [s, s, s, s]    [s, s]          with hard level seller: seller ids, as hist_item
            target_brand [r]             [r]             with hard level brand: length 1
            target_seller [s]            [s]             with hard level seller: length 1
            target_objective [o]         [o]             with model.position_objectives > 1: ids 1..O, length 1

        labels: ``[B]`` float32, 1 = clicked.
        user_ids: ``[B]`` int64 (for GAUC by user).
        click_probs: ``[B]`` float32 true click probability when the data carries it (synthetic), else None.
        sample_ids: ``[B]`` int64 row number of each sample within its split (files in name order), set by
            the Parquet reader; -1 marks padding. Used for error messages and the sample trace.
    """

    sparse_features: KeyedJaggedTensor
    labels: torch.Tensor
    user_ids: torch.Tensor
    click_probs: Optional[torch.Tensor] = None
    sample_ids: Optional[torch.Tensor] = None

    @property
    def batch_size(self) -> int:
        return self.labels.numel()

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return Batch(
            sparse_features=self.sparse_features.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            user_ids=self.user_ids.to(device=device, non_blocking=non_blocking),
            click_probs=None if self.click_probs is None
            else self.click_probs.to(device=device, non_blocking=non_blocking),
            sample_ids=None if self.sample_ids is None
            else self.sample_ids.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        # CPU runs have no streams; the pipelines only call this with a device stream.
        self.sparse_features.record_stream(stream)
        self.labels.record_stream(stream)
        self.user_ids.record_stream(stream)
        if self.click_probs is not None:
            self.click_probs.record_stream(stream)
        if self.sample_ids is not None:
            self.sample_ids.record_stream(stream)

    def pin_memory(self) -> "Batch":
        return Batch(
            sparse_features=self.sparse_features.pin_memory(),
            labels=self.labels.pin_memory(),
            user_ids=self.user_ids.pin_memory(),
            click_probs=None if self.click_probs is None else self.click_probs.pin_memory(),
            sample_ids=None if self.sample_ids is None else self.sample_ids.pin_memory(),
        )


def padding_batch(extra_keys: Sequence[str] = (), extra_target_keys: Sequence[str] = ()) -> Batch:
    """One sample with an empty history and target ids 1: what a rank feeds to a collective step after its
    own evaluation data ran out (sharded lookups need every rank in every step); its outputs are dropped.
    ``extra_keys``: the jagged side keys of the reader's batches (empty, like the history);
    ``extra_target_keys``: its length-1 target keys after them (id 1, like the target's)."""
    length_per_key = [0, 0, 1, 1] + [0] * len(extra_keys) + [1] * len(extra_target_keys)
    return Batch(
        sparse_features=KeyedJaggedTensor(
            keys=list(SPARSE_KEYS) + list(extra_keys) + list(extra_target_keys),
            values=torch.ones(sum(length_per_key), dtype=torch.int64),
            lengths=torch.tensor(length_per_key, dtype=torch.int32),
            length_per_key=length_per_key,
            offset_per_key=list(itertools.accumulate([0] + length_per_key)),
        ),
        labels=torch.zeros(1),
        user_ids=torch.zeros(1, dtype=torch.int64),
        sample_ids=torch.full((1,), -1, dtype=torch.int64),
    )
