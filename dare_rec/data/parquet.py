"""Parquet -> :class:`Batch` reader: per-rank row-group shards, equal step counts, resumable shuffles, prefetch.

Sharding: all row groups of a split, in file order, are dealt round-robin to ranks; a rank only ever opens
its own row groups. Every rank can compute every rank's row count from the file footers, so equal step
counts need no communication:

* training (``drop_last=True``): every rank takes ``min_r floor(rows_r / B)`` batches per epoch;
* evaluation (``drop_last=False``): a rank yields all its rows (last batch partial);
  :meth:`ParquetBatchReader.max_batches_any_rank` tells the caller how many steps the busiest rank takes.

Shuffling (training) is a pure function of (seed, epoch, rank): the order of the rank's row groups comes from
one seeded generator and the order of rows inside each group from a generator seeded by the group, so batch
``k`` of an epoch starts at row ``k * B`` of a stream whose layout is known from the footers alone.
:meth:`ParquetBatchReader.epoch` with ``start_batch=k`` therefore skips to batch ``k`` without reading the
skipped row groups: a resumed run sees exactly the batches an uninterrupted one would.

Every row group is checked against the contract when read (nulls, ids outside the vocabulary or 0 in a
history, labels other than 0/1, non-finite floats, history columns of different lengths, undecodable pages;
and, for the side fields the model reads, behavior types outside meta.json's list, side lists not as long as
the history, negative time gaps, and target objectives outside 1..``model.position_objectives``);
the error names the file, row group, row and column. :meth:`ParquetBatchReader.check_rows` runs the same
checks over a whole shard up front (the training job does so for the val and test splits). Conversion is vectorised: Arrow list offsets become KJT
lengths directly, histories longer than ``max_len`` keep their most recent ``max_len`` behaviors. A
background thread reads, converts and queues the next batches while the current step runs; it is stopped and
joined when its iterator is closed (and, at the latest, at interpreter exit).
"""

from __future__ import annotations

import itertools

import atexit
import queue
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data import schema
from dare_rec.data.batch import HARD_KEYS, SIDE_KEYS, SPARSE_KEYS, Batch, hard_keys, side_keys
from dare_rec.data.side import DEFAULT_TIME_GAP_BUCKETS, time_gap_buckets

# Column the reader appends to each row group: every row's sample id (its row number within the split).
_SAMPLE_ID = "__sample_id"


@dataclass(frozen=True)
class RowGroup:
    path: Path
    index: int
    num_rows: int
    first_row: int  # row number of the group's first row within its file (for error messages)
    split_row: int  # row number of the group's first row within the split (files in name order): sample ids
    split_index: int  # position of the group among all row groups of the split (seeds its row shuffle)


def list_row_groups(root: str | Path, split: str, meta: Optional[schema.DatasetMeta] = None) -> List[RowGroup]:
    """Every non-empty row group of a split, files sorted, each file checked against the contract.

    Raises DataError for an unreadable footer (truncated or corrupt file), a column set that differs from
    meta.json's, or files that disagree with meta.json (see :func:`dare_rec.data.schema.check_split`).
    """
    meta = meta or schema.DatasetMeta.read(root)
    paths = schema.split_files(root, split)
    schema.check_split(root, split, paths, meta)
    groups: List[RowGroup] = []
    split_row = 0
    for path in paths:
        md = schema.read_footer(path)
        schema.check_file_schema(path, meta.columns, md.schema.to_arrow_schema())
        first = 0
        for i in range(md.num_row_groups):
            n = md.row_group(i).num_rows
            if n:
                groups.append(RowGroup(path, i, n, first, split_row + first, len(groups)))
            first += n
        split_row += first
    schema.check_row_count(root, split, split_row, meta)
    return groups


def _rows_for_rank(groups: List[RowGroup], rank: int, world_size: int) -> int:
    return sum(g.num_rows for g in groups[rank::world_size])


class ParquetBatchReader:
    """Iterates one split of a dataset as Batches for one rank.

    Args:
        root: dataset folder (with meta.json).
        split: "train", "val" or "test".
        batch_size: samples per batch on this rank.
        max_len: histories keep their most recent ``max_len`` behaviors.
        rank, world_size: this rank's shard of the row groups.
        shuffle: permute row groups and rows within each group, differently every epoch (seeded).
        drop_last: train mode (equal full batches on every rank) vs eval mode (every row exactly once).
        prefetch_batches: queue depth of the background reader thread.
        seed: shuffle seed.
        pin_memory: pin batches (for asynchronous host-to-GPU copies).
        verify_hashes: compare every file of the split with its sha256 in meta.json (reads every byte).
        side_fields: side fields the model reads (``ModelConfig.read_side_fields``): ``gap`` and ``btype`` each
            added to the batches as a jagged key aligned with ``hist_item`` (``dare_rec.data.batch.SIDE_KEYS``),
            ``seller`` and ``brand`` as a jagged history key and a length-1 target key, like a hard level of the
            same name (``dare_rec.data.batch.HARD_KEYS``); a field the dataset cannot give is a DataError here.
        gap_buckets: bucket ids of the time gap (``model.gap_buckets``).
        hard_fields: hard-search levels read from side columns (``ModelConfig.hard_side_fields``: ``brand``,
            ``seller``), each added as a jagged history key aligned with ``hist_item`` and a length-1 target key
            (``dare_rec.data.batch.HARD_KEYS``); a field the dataset cannot give is a DataError here.
        objectives: O, the target objectives the model tells apart (``model.position_objectives``); above 1 the
            ``target_objective`` column is read, checked to hold ids 1..O, and added as the last length-1 target
            key; a dataset without it is a DataError here.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        batch_size: int,
        max_len: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        prefetch_batches: int = 4,
        seed: int = 0,
        pin_memory: bool = False,
        verify_hashes: bool = False,
        side_fields: Sequence[str] = (),
        gap_buckets: int = DEFAULT_TIME_GAP_BUCKETS,
        hard_fields: Sequence[str] = (),
        objectives: int = 1,
    ) -> None:
        self.meta = schema.DatasetMeta.read(root)
        check_side_fields(self.meta, root, side_fields, hard_fields, objectives)
        self.side_fields = tuple(f for f in side_fields if f in SIDE_KEYS)
        # seller / brand columns, history and target, read once for side fields and hard levels alike
        self.hard_fields = tuple(dict.fromkeys([f for f in side_fields if f in HARD_KEYS] + list(hard_fields)))
        self.objectives = objectives
        hard_hist_keys, self.target_side_keys = hard_keys(self.hard_fields)
        if objectives > 1:  # the column's name is its key
            self.target_side_keys += (schema.TARGET_OBJECTIVE,)
        # the jagged keys after SPARSE_KEYS (then the length-1 target_side_keys)
        self.side_keys = side_keys(self.side_fields) + hard_hist_keys
        self.gap_buckets = gap_buckets
        self.root = Path(root)
        self.split = split
        self.batch_size = batch_size
        self.max_len = max_len
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.prefetch_batches = prefetch_batches
        self.seed = seed
        self.pin_memory = pin_memory
        if verify_hashes:
            schema.verify_hashes(root, split, self.meta)
        self._all_groups = list_row_groups(root, split, self.meta)
        if not self._all_groups:
            raise schema.DataError(f"{self.root / split}: the {split!r} split has no rows")
        self.groups = self._all_groups[rank::world_size]
        self.num_rows = sum(g.num_rows for g in self.groups)
        self.with_click_prob = self.meta.has_click_prob
        self._columns = [schema.USER_ID, schema.TARGET_ITEM, schema.TARGET_CATE, schema.LABEL, schema.HIST_ITEM, schema.HIST_CATE]
        if self.with_click_prob:
            self._columns.append(schema.CLICK_PROB)
        # Side columns are read, and checked, only when the model reads them: a dataset prepared from a real log
        # always carries hist_btype (and hist_ts), and decoding columns nobody uses would cost every row group
        # (hist_ts alone triples a synthetic row group's decode time). meta.json's vocabularies are checked always.
        vocabulary = side_vocabulary(self.meta, self.root / "meta.json")
        self._side_vocabulary = {schema.HIST_BTYPE: vocabulary[schema.HIST_BTYPE]} if "btype" in self.side_fields \
            else {}
        self._side_vocabulary.update({column: vocabulary[column] for field in self.hard_fields
                                      for column in HARD_KEYS[field]})
        self._columns += list(self._side_vocabulary)
        if objectives > 1:
            self._columns.append(schema.TARGET_OBJECTIVE)
        self._time_gaps = "gap" in self.side_fields
        if self._time_gaps:
            self._columns += [schema.HIST_TS, schema.TARGET_TS]
        if drop_last and self.num_batches() == 0:
            raise schema.DataError(
                f"{self.root / split}: rank {rank} of {world_size} gets fewer than data.batch_size="
                f"{batch_size} rows; use a smaller batch size or fewer processes")

    def num_batches(self) -> int:
        """Batches this rank yields per epoch (identical on every rank when ``drop_last``)."""
        if self.drop_last:
            return min(_rows_for_rank(self._all_groups, r, self.world_size) for r in range(self.world_size)) \
                // self.batch_size
        return -(-self.num_rows // self.batch_size)

    def max_batches_any_rank(self) -> int:
        """The most batches any rank yields per epoch (eval steps, so that every rank runs as many)."""
        return max(-(-_rows_for_rank(self._all_groups, r, self.world_size) // self.batch_size)
                   for r in range(self.world_size))

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of one epoch from batch ``start_batch`` on, prepared by a background thread
        ``prefetch_batches`` ahead. Close the iterator (or exhaust it) to stop the thread."""
        if not 0 <= start_batch <= self.num_batches():
            raise ValueError(f"start_batch {start_batch} outside [0, {self.num_batches()}]")
        return _Prefetcher(self._produce(epoch, start_batch), self.prefetch_batches)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def locate(self, sample_id: int) -> str:
        """``file (row group g, row r)`` of a sample id of this split (for error messages)."""
        group = self._all_groups[int(np.searchsorted([g.split_row for g in self._all_groups], sample_id,
                                                     side="right")) - 1]
        return f"{group.path} (row group {group.index}, row {group.first_row + sample_id - group.split_row})"

    def check_rows(self) -> int:
        """Reads every row group of this rank's shard with the checks of an epoch (nulls, ids, labels,
        probabilities, history lengths, undecodable pages), in this thread and without building batches;
        returns the rows checked. Every rank calling it checks the whole split once."""
        files: dict = {}
        for group in self.groups:
            if group.path not in files:
                files[group.path] = schema.open_parquet(group.path)
            self._read(files[group.path], group)
        return self.num_rows

    def _epoch_order(self, epoch: int) -> Tuple[np.ndarray, Optional[List[int]]]:
        """The order of this rank's row groups in ``epoch`` and the seed entropy of each group's row shuffle."""
        if not self.shuffle:
            return np.arange(len(self.groups)), None
        order = np.random.default_rng([self.seed, epoch, self.rank]).permutation(len(self.groups))
        return order, [self.seed, epoch]

    def _produce(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        order, shuffle_key = self._epoch_order(epoch)
        limit = self.num_batches()
        produced = start_batch
        skip = start_batch * self.batch_size  # rows of the epoch's stream before the first batch wanted
        pending: List[pa.Table] = []
        pending_rows = 0
        files = {}
        for gi in order:
            group = self.groups[gi]
            if skip >= group.num_rows:  # entirely before the start: never read
                skip -= group.num_rows
                continue
            if group.path not in files:
                files[group.path] = schema.open_parquet(group.path)
            table = self._read(files[group.path], group)
            rows = np.arange(group.num_rows)
            if shuffle_key is not None:
                rows = np.random.default_rng(shuffle_key + [group.split_index]).permutation(group.num_rows)
                table = table.take(pa.array(rows))
            table = table.append_column(_SAMPLE_ID, pa.array(group.split_row + rows, pa.int64()))
            if skip:
                table, skip = table.slice(skip), 0
            pending.append(table)
            pending_rows += table.num_rows
            while pending_rows >= self.batch_size and produced < limit:
                merged = pa.concat_tables(pending)
                yield self._to_batch(merged.slice(0, self.batch_size))
                produced += 1
                rest = merged.slice(self.batch_size)
                pending, pending_rows = [rest], rest.num_rows
            if produced >= limit:
                return
        if pending_rows and not self.drop_last and produced < limit:
            yield self._to_batch(pa.concat_tables(pending))

    def _read(self, file: pq.ParquetFile, group: RowGroup) -> pa.Table:
        """One row group's columns, checked; an undecodable page names the file, row group and column."""
        try:
            table = file.read_row_group(group.index, columns=self._columns)
        except (pa.ArrowException, OSError) as e:
            column = next((c for c in self._columns if not _decodes(file, group.index, c)), None)
            what = f"column {column!r} " if column else ""
            raise schema.DataError(f"{group.path} (row group {group.index}): {what}cannot be decoded "
                              f"(corrupt or truncated file): {str(e).splitlines()[0]}") from None
        self._check(table, group)
        return table

    def _check(self, table: pa.Table, group: RowGroup) -> None:
        """Contract checks a bad file would otherwise turn into an obscure kernel error or a silent NaN."""
        last = group.first_row + group.num_rows - 1
        where = f"{group.path} (row group {group.index}, rows {group.first_row}..{last})"

        def fail(row: int, message: str) -> None:
            raise schema.DataError(f"{where}: row {group.first_row + row}: {message}")

        for column in self._columns:
            col = table.column(column)
            if col.null_count:
                fail(_first(pc.is_null(col)), f"column {column!r} is null")
            if pa.types.is_list(col.type):
                flat = pc.list_flatten(col)
                if flat.null_count:
                    fail(_row_of(col, _first(pc.is_null(flat))), f"column {column!r} holds a null behavior")
        item_len = pc.list_value_length(table.column(schema.HIST_ITEM)).to_numpy(zero_copy_only=False)
        cate_len = pc.list_value_length(table.column(schema.HIST_CATE)).to_numpy(zero_copy_only=False)
        if not np.array_equal(item_len, cate_len):
            row = int(np.nonzero(item_len != cate_len)[0][0])
            fail(row, f"{schema.HIST_ITEM} has {item_len[row]} behaviors but {schema.HIST_CATE} has {cate_len[row]}")
        for column in schema.SIDE_LISTS:
            if column in self._side_vocabulary:
                side_len = pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False)
                if not np.array_equal(item_len, side_len):
                    row = int(np.nonzero(item_len != side_len)[0][0])
                    fail(row, f"column {column!r} has {side_len[row]} values but {schema.HIST_ITEM} has "
                              f"{item_len[row]} behaviors (a side list holds one value per behavior)")
        if item_len.size and item_len.max() > self.meta.max_history:
            row = int(np.argmax(item_len > self.meta.max_history))
            fail(row, f"{schema.HIST_ITEM} has {item_len[row]:,} behaviors, more than the max_history "
                      f"{self.meta.max_history:,} of meta.json (the longest history the dataset was prepared with): "
                      f"the file does not belong to this dataset or was altered after prepare")
        for column, vocab in [(schema.TARGET_ITEM, self.meta.num_items), (schema.TARGET_CATE, self.meta.num_categories),
                              (schema.HIST_ITEM, self.meta.num_items), (schema.HIST_CATE, self.meta.num_categories)]:
            col = table.column(column)
            listed = pa.types.is_list(col.type)
            values = pc.list_flatten(col) if listed else col
            if len(values) == 0:
                continue
            lo, hi = pc.min_max(values).values()
            if lo.as_py() < 1 or hi.as_py() >= vocab:
                arr = values.to_numpy(zero_copy_only=False)
                bad = int(np.nonzero((arr < 1) | (arr >= vocab))[0][0])
                fail(_row_of(col, bad) if listed else bad,
                     f"column {column!r} holds id {arr[bad]} outside [1, {vocab - 1}] (vocabulary size {vocab} "
                     f"from meta.json; id 0 is reserved for padding)")
        for column, vocab in self._side_vocabulary.items():
            col = table.column(column)
            listed = pa.types.is_list(col.type)
            values = (pc.list_flatten(col) if listed else col).to_numpy(zero_copy_only=False)
            outside = (values < 1) | (values >= vocab)
            if outside.any():
                bad = int(np.argmax(outside))
                what = (f"an unknown behavior type (meta.json behavior_types "
                        f"{self.meta.params['behavior_types']} are ids 1..{vocab - 1})"
                        if column == schema.HIST_BTYPE else
                        f"outside [1, {vocab - 1}] (vocabulary size {vocab} from meta.json)")
                fail(_row_of(col, bad) if listed else bad, f"column {column!r} holds id {values[bad]}, {what}")
        if self.objectives > 1:
            objective = table.column(schema.TARGET_OBJECTIVE).to_numpy()
            outside = (objective < 1) | (objective > self.objectives)
            if outside.any():
                bad = int(np.argmax(outside))
                fail(bad, f"column {schema.TARGET_OBJECTIVE!r} holds objective {objective[bad]} outside [1, "
                          f"{self.objectives}] (model.position_objectives {self.objectives})")
        if self._time_gaps:
            hist_ts = table.column(schema.HIST_TS)
            ts = pc.list_flatten(hist_ts).to_numpy(zero_copy_only=False)
            target_ts = np.repeat(table.column(schema.TARGET_TS).to_numpy(), item_len)
            if len(ts) != len(target_ts):
                row = int(np.nonzero(pc.list_value_length(hist_ts).to_numpy(zero_copy_only=False) != item_len)[0][0])
                fail(row, f"column {schema.HIST_TS!r} does not hold one timestamp per behavior of {schema.HIST_ITEM}")
            negative = ts > target_ts
            if negative.any():
                bad = int(np.argmax(negative))
                fail(_row_of(hist_ts, bad), f"column {schema.HIST_TS!r} holds {ts[bad]}, after the row's "
                                            f"{schema.TARGET_TS} {target_ts[bad]}: a negative time gap of "
                                            f"{target_ts[bad] - ts[bad]} s")
        labels = table.column(schema.LABEL).to_numpy()
        if ((labels != 0) & (labels != 1)).any():
            bad = int(np.nonzero((labels != 0) & (labels != 1))[0][0])
            fail(bad, f"column {schema.LABEL!r} is {labels[bad]}, must be 0 or 1")
        if self.with_click_prob:
            probs = table.column(schema.CLICK_PROB).to_numpy()
            ok = np.isfinite(probs) & (probs >= 0) & (probs <= 1)
            if not ok.all():
                bad = int(np.nonzero(~ok)[0][0])
                fail(bad, f"column {schema.CLICK_PROB!r} is {probs[bad]}, must be a probability in [0, 1]")

    def _side_values(self, table: pa.Table, field: str, lengths: np.ndarray) -> np.ndarray:
        """``[V]`` int64 ids of one side field for every history value of ``table`` (``lengths`` per row, before
        truncation): behavior types as stored, or the time gap's bucket ids (the rows were checked when read,
        so no gap is negative)."""
        if field == "btype":
            return pc.list_flatten(table.column(schema.HIST_BTYPE)).to_numpy(zero_copy_only=False)
        hist_ts = pc.list_flatten(table.column(schema.HIST_TS)).to_numpy(zero_copy_only=False)
        return time_gap_buckets(hist_ts, np.repeat(table.column(schema.TARGET_TS).to_numpy(), lengths),
                                self.gap_buckets)

    def _to_batch(self, table: pa.Table) -> Batch:
        hist_item = table.column(schema.HIST_ITEM)
        lengths = pc.list_value_length(hist_item).to_numpy(zero_copy_only=False).astype(np.int64)
        item_values = pc.list_flatten(hist_item).to_numpy(zero_copy_only=False)
        cate_values = pc.list_flatten(table.column(schema.HIST_CATE)).to_numpy(zero_copy_only=False)
        side_values = [self._side_values(table, field, lengths) for field in self.side_fields]
        side_values += [pc.list_flatten(table.column(HARD_KEYS[field][0])).to_numpy(zero_copy_only=False)
                        for field in self.hard_fields]
        if lengths.size and lengths.max() > self.max_len:
            keep = keep_most_recent(lengths, self.max_len)
            item_values, cate_values = item_values[keep], cate_values[keep]
            side_values = [values[keep] for values in side_values]
            lengths = np.minimum(lengths, self.max_len)
        b = table.num_rows
        hist_len = torch.from_numpy(lengths.astype(np.int32))
        ones = torch.ones(b, dtype=torch.int32)
        hist_total = int(lengths.sum())
        target_side_values = [table.column(key).to_numpy() for key in self.target_side_keys]
        # per-key sizes known here, so nothing downstream reads the lengths on the host
        length_per_key = [hist_total, hist_total, b, b] + [hist_total] * len(side_values) \
            + [b] * len(target_side_values)
        kjt = KeyedJaggedTensor(
            keys=list(SPARSE_KEYS) + list(self.side_keys) + list(self.target_side_keys),
            values=torch.from_numpy(np.concatenate([
                item_values, cate_values,
                table.column(schema.TARGET_ITEM).to_numpy(), table.column(schema.TARGET_CATE).to_numpy(),
                *side_values, *target_side_values,
            ]).astype(np.int64)),
            lengths=torch.cat([hist_len, hist_len, ones, ones] + [hist_len] * len(side_values)
                              + [ones] * len(target_side_values)),
            length_per_key=length_per_key,
            offset_per_key=list(itertools.accumulate([0] + length_per_key)),
        )
        batch = Batch(
            sparse_features=kjt,
            labels=torch.from_numpy(table.column(schema.LABEL).to_numpy().astype(np.float32)),
            user_ids=torch.from_numpy(table.column(schema.USER_ID).to_numpy().astype(np.int64)),
            click_probs=torch.from_numpy(table.column(schema.CLICK_PROB).to_numpy().astype(np.float32))
            if self.with_click_prob else None,
            sample_ids=torch.from_numpy(table.column(_SAMPLE_ID).to_numpy().astype(np.int64)),
        )
        return batch.pin_memory() if self.pin_memory else batch


def check_side_fields(meta: schema.DatasetMeta, root: str | Path, side_fields: Sequence[str],
                      hard_fields: Sequence[str] = (), objectives: int = 1) -> None:
    """Refuses side fields (``ModelConfig.read_side_fields``), hard-search levels
    (``ModelConfig.hard_side_fields``) and target objectives (``model.position_objectives`` > 1) whose columns
    the dataset at ``root`` lacks."""
    asked = [("model.time_gap" if f == "gap" else f"model.side_fields {f}", _SIDE_FIELD_COLUMNS[f])
             for f in side_fields]
    asked += [(f"model.hard_levels {f}", HARD_KEYS[f]) for f in hard_fields]
    if objectives > 1:
        asked.append((f"model.position_objectives {objectives}", (schema.TARGET_OBJECTIVE,)))
    for option, columns in asked:
        missing = [c for c in columns if c not in meta.columns]
        if missing:
            raise schema.DataError(f"{option} needs column(s) {missing} but the dataset {str(root)!r} has none "
                                   f"(its columns: {meta.columns}); switch it off or prepare the data with them")


# The dataset columns each side field is read from.
_SIDE_FIELD_COLUMNS = {"btype": (schema.HIST_BTYPE,), "gap": (schema.HIST_TS, schema.TARGET_TS), **HARD_KEYS}


def num_behavior_types(meta: schema.DatasetMeta, root: str | Path) -> Optional[int]:
    """T, the behavior types of a dataset with ``hist_btype`` (meta.json ``behavior_types``), else None."""
    return side_vocabulary(meta, Path(root) / "meta.json").get(schema.HIST_BTYPE, 1) - 1 or None


def semantic_vocabulary(meta: schema.DatasetMeta, root: str | Path) -> Dict[str, int]:
    """``seller`` / ``brand`` -> the rows of its table (meta.json ``num_sellers`` / ``num_brands``, counting ids 0
    and 1), for the ones the dataset carries (the side fields seller and brand)."""
    sizes = side_vocabulary(meta, Path(root) / "meta.json")
    return {field: sizes[hist] for field, (hist, _) in HARD_KEYS.items() if hist in sizes}


def side_vocabulary(meta: schema.DatasetMeta, meta_path: Path) -> Dict[str, int]:
    """Side id column the dataset carries -> its vocabulary size (counting padding id 0), from meta.json params:
    ``behavior_types`` (hist_btype: len + 1), ``num_sellers``, ``num_brands``. A missing or malformed entry is
    a DataError naming meta.json."""
    sizes: Dict[str, int] = {}
    for column in (schema.HIST_BTYPE, *schema.SIDE_VOCABULARY):
        if column not in meta.columns:
            continue
        if column == schema.HIST_BTYPE:
            types = meta.params.get("behavior_types")
            if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
                raise schema.DataError(f"{meta_path}: params 'behavior_types' must be a non-empty list of behavior "
                                       f"names when the dataset has column {column!r}, got {types!r}")
            sizes[column] = len(types) + 1
        else:
            key = schema.SIDE_VOCABULARY[column]
            size = meta.params.get(key)
            if not isinstance(size, int) or isinstance(size, bool) or size < 2:
                raise schema.DataError(f"{meta_path}: params {key!r} must be an integer >= 2 (vocabulary size "
                                       f"counting ids 0 and 1) when the dataset has column {column!r}, got {size!r}")
            sizes[column] = size
    return sizes


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    """Index of the first true entry of a boolean Arrow array."""
    return int(np.nonzero(mask.to_numpy(zero_copy_only=False))[0][0])


def _row_of(list_column: pa.ChunkedArray, flat_index: int) -> int:
    """The row of a list column that holds its ``flat_index``-th flattened value."""
    lengths = pc.list_value_length(list_column).to_numpy(zero_copy_only=False)
    return int(np.searchsorted(np.cumsum(lengths), flat_index, side="right"))


def _decodes(file: pq.ParquetFile, group: int, column: str) -> bool:
    try:
        file.read_row_group(group, columns=[column])
        return True
    except (pa.ArrowException, OSError):
        return False


def keep_most_recent(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Boolean mask over flat history values keeping each row's last ``max_len`` entries."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos_in_row = np.arange(lengths.sum()) - starts[row]
    return pos_in_row >= (lengths - max_len)[row]


_DONE = object()
_live_prefetchers: "weakref.WeakSet[_Prefetcher]" = weakref.WeakSet()


def _put(q: "queue.Queue[object]", stop: threading.Event, item: object) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _fill(source: Iterator[Batch], q: "queue.Queue[object]", stop: threading.Event) -> None:
    """Thread body. It holds no reference to its _Prefetcher, so an abandoned iterator is collected (and
    its ``__del__`` stops the thread)."""
    try:
        for item in source:
            if not _put(q, stop, item):
                return
        _put(q, stop, _DONE)
    except BaseException as e:  # forwarded to the consumer, which re-raises it
        _put(q, stop, e)


class _Prefetcher(Iterator[Batch]):
    """Runs a batch generator in a thread, ``depth`` batches ahead; re-raises its errors in the consumer.

    Arrow decoding and the numpy conversion release the GIL, so the thread overlaps with the training step.
    :meth:`close` stops the thread *and joins it*: a thread still inside a GIL-releasing Arrow or torch call
    when the interpreter finalizes is ended by CPython with ``pthread_exit``, whose unwinding through
    pybind11's GIL guard calls ``std::terminate`` (``terminate called without an active exception``,
    SIGABRT) — the abort that followed runs stopped short of an epoch. Threads left open by their user are
    closed by an ``atexit`` hook, which runs before the interpreter starts finalizing.
    """

    def __init__(self, source: Iterator[Batch], depth: int) -> None:
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=_fill, args=(source, self._queue, self._stop), daemon=True,
                                        name="dare-rec-reader")
        _live_prefetchers.add(self)
        self._thread.start()

    def __next__(self) -> Batch:
        if self._closed:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stops the thread and waits for it (at most the batch it is preparing). Idempotent."""
        self._closed = True
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        _live_prefetchers.discard(self)

    def __del__(self) -> None:
        self.close()


@atexit.register
def _close_live_prefetchers() -> None:
    for prefetcher in list(_live_prefetchers):
        prefetcher.close()
