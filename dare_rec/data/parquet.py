"""Parquet -> :class:`Batch` reader: per-rank row-group shards, equal step counts, background prefetch.

Sharding: all row groups of a split, in file order, are dealt round-robin to ranks; a rank only ever opens
its own row groups. Every rank can compute every rank's row count from the file footers, so equal step
counts need no communication:

* training (``drop_last=True``): every rank takes ``min_r floor(rows_r / B)`` batches per epoch;
* evaluation (``drop_last=False``): a rank yields all its rows (last batch partial);
  :meth:`ParquetBatchReader.max_batches_any_rank` tells the caller how many steps the busiest rank takes.

Conversion is vectorised: Arrow list offsets become KJT lengths directly, histories longer than ``max_len``
keep their most recent ``max_len`` behaviors, and no Python runs per row. A background thread reads,
converts and queues the next batches while the current step runs.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data import schema as S
from dare_rec.data.batch import SPARSE_KEYS, Batch


@dataclass(frozen=True)
class RowGroup:
    path: Path
    index: int
    num_rows: int
    first_row: int  # row number of the group's first row within its file (for error messages)


def list_row_groups(root: str | Path, split: str) -> List[RowGroup]:
    """Every non-empty row group of a split, files sorted, checked against the contract."""
    groups: List[RowGroup] = []
    for path in S.split_files(root, split):
        S.check_file_schema(path)
        md = pq.ParquetFile(path).metadata
        first = 0
        for i in range(md.num_row_groups):
            n = md.row_group(i).num_rows
            if n:
                groups.append(RowGroup(path, i, n, first))
            first += n
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
    ) -> None:
        self.meta = S.DatasetMeta.read(root)
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
        self._all_groups = list_row_groups(root, split)
        self.groups = self._all_groups[rank::world_size]
        self.num_rows = sum(g.num_rows for g in self.groups)
        self.with_click_prob = self.meta.has_click_prob
        self._columns = [S.USER_ID, S.TARGET_ITEM, S.TARGET_CATE, S.LABEL, S.HIST_ITEM, S.HIST_CATE]
        if self.with_click_prob:
            self._columns.append(S.CLICK_PROB)
        if drop_last and self.num_batches() == 0:
            raise S.DataError(
                f"{Path(root) / split}: rank {rank} of {world_size} gets fewer than data.batch_size="
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

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, prepared by a background thread ``prefetch_batches`` ahead."""
        return _Prefetcher(self._produce(epoch), self.prefetch_batches)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def _produce(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None
        order = rng.permutation(len(self.groups)) if rng is not None else range(len(self.groups))
        limit = self.num_batches()
        produced = 0
        pending: List[pa.Table] = []
        pending_rows = 0
        files = {}
        for gi in order:
            group = self.groups[gi]
            if group.path not in files:
                files[group.path] = pq.ParquetFile(group.path)
            table = files[group.path].read_row_group(group.index, columns=self._columns)
            self._check(table, group)
            if rng is not None:
                table = table.take(pa.array(rng.permutation(table.num_rows)))
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

    def _check(self, table: pa.Table, group: RowGroup) -> None:
        """Contract checks a bad file would otherwise turn into an obscure kernel error."""
        last = group.first_row + group.num_rows - 1
        where = f"{group.path} (row group {group.index}, rows {group.first_row}..{last})"
        item_len = pc.list_value_length(table.column(S.HIST_ITEM)).to_numpy(zero_copy_only=False)
        cate_len = pc.list_value_length(table.column(S.HIST_CATE)).to_numpy(zero_copy_only=False)
        if not np.array_equal(item_len, cate_len):
            row = int(np.nonzero(item_len != cate_len)[0][0])
            raise S.DataError(f"{where}: row {group.first_row + row}: {S.HIST_ITEM} has {item_len[row]} "
                              f"behaviors but {S.HIST_CATE} has {cate_len[row]}")
        bounds = [(S.TARGET_ITEM, self.meta.num_items, 1), (S.TARGET_CATE, self.meta.num_categories, 1),
                  (S.HIST_ITEM, self.meta.num_items, 0), (S.HIST_CATE, self.meta.num_categories, 0)]
        for column, vocab, low in bounds:
            col = table.column(column)
            values = pc.list_flatten(col) if pa.types.is_list(col.type) else col
            if len(values) == 0:
                continue
            lo, hi = pc.min_max(values).values()
            if lo.as_py() < low or hi.as_py() >= vocab:
                arr = values.to_numpy(zero_copy_only=False)
                bad = int(np.nonzero((arr < low) | (arr >= vocab))[0][0])
                if pa.types.is_list(col.type):
                    bad = int(np.searchsorted(np.cumsum(item_len), bad, side="right"))
                raise S.DataError(f"{where}: row {group.first_row + bad}: column {column!r} holds an id outside "
                                  f"[{low}, {vocab - 1}] (vocabulary size {vocab} from meta.json)")
        labels = table.column(S.LABEL)
        lo, hi = pc.min_max(labels).values()
        if lo.as_py() < 0 or hi.as_py() > 1:
            arr = labels.to_numpy()
            bad = int(np.nonzero((arr < 0) | (arr > 1))[0][0])
            raise S.DataError(f"{where}: row {group.first_row + bad}: column {S.LABEL!r} must be 0 or 1")

    def _to_batch(self, table: pa.Table) -> Batch:
        hist_item = table.column(S.HIST_ITEM)
        lengths = pc.list_value_length(hist_item).to_numpy(zero_copy_only=False).astype(np.int64)
        item_values = pc.list_flatten(hist_item).to_numpy(zero_copy_only=False)
        cate_values = pc.list_flatten(table.column(S.HIST_CATE)).to_numpy(zero_copy_only=False)
        if lengths.size and lengths.max() > self.max_len:
            keep = _keep_most_recent(lengths, self.max_len)
            item_values, cate_values = item_values[keep], cate_values[keep]
            lengths = np.minimum(lengths, self.max_len)
        b = table.num_rows
        hist_len = torch.from_numpy(lengths.astype(np.int32))
        ones = torch.ones(b, dtype=torch.int32)
        kjt = KeyedJaggedTensor(
            keys=list(SPARSE_KEYS),
            values=torch.from_numpy(np.concatenate([
                item_values, cate_values,
                table.column(S.TARGET_ITEM).to_numpy(), table.column(S.TARGET_CATE).to_numpy(),
            ]).astype(np.int64)),
            lengths=torch.cat([hist_len, hist_len, ones, ones]),
        )
        batch = Batch(
            sparse_features=kjt,
            labels=torch.from_numpy(table.column(S.LABEL).to_numpy().astype(np.float32)),
            user_ids=torch.from_numpy(table.column(S.USER_ID).to_numpy().astype(np.int64)),
            click_probs=torch.from_numpy(table.column(S.CLICK_PROB).to_numpy().astype(np.float32))
            if self.with_click_prob else None,
        )
        return batch.pin_memory() if self.pin_memory else batch


def _keep_most_recent(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Boolean mask over flat history values keeping each row's last ``max_len`` entries."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos_in_row = np.arange(lengths.sum()) - starts[row]
    return pos_in_row >= (lengths - max_len)[row]


class _Prefetcher(Iterator[Batch]):
    """Runs a batch generator in a daemon thread, ``depth`` batches ahead; re-raises its errors here.

    Arrow decoding and the numpy conversion release the GIL, so the thread overlaps with the training step.
    """

    _DONE = object()

    def __init__(self, source: Iterator[Batch], depth: int) -> None:
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True, name="dare-rec-reader")
        self._thread.start()

    def _run(self, source: Iterator[Batch]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as e:  # forwarded to the consumer, which re-raises it
            self._put(e)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is self._DONE:
            self._queue.put(item)  # stay exhausted on further calls
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._stop.set()

    def __del__(self) -> None:
        self.close()
