"""Reading a split's columns straight from Parquet for the analyses (numpy + pyarrow, no torch).

Rows come in the order the batch reader serves them to a world of ``world_size`` ranks and rank 0 gathers
them: every non-empty row group in file order, dealt round-robin to ranks, rank 0's groups first
(``dare_rec.data.parquet``). The analyses check the order against what the model saw (labels, target
categories, users, history lengths) and stop with an error if it ever differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dare_rec.data import schema


@dataclass
class SplitRows:
    """Columns of some rows of a split. ``columns`` holds flat values; list columns (histories) share
    ``offsets`` ``[B + 1]`` and keep only each row's most recent ``max_len`` behaviors, as the batch reader
    does."""

    columns: Dict[str, np.ndarray]
    offsets: np.ndarray

    @property
    def num_rows(self) -> int:
        return self.offsets.size - 1


def _row_groups(root: str | Path, split: str) -> List[Tuple[Path, int]]:
    groups = []
    for path in schema.split_files(root, split):
        md = pq.ParquetFile(path).metadata
        groups += [(path, i) for i in range(md.num_row_groups) if md.row_group(i).num_rows]
    return groups


def iter_split(root: str | Path, split: str, columns: Sequence[str], max_len: int,
               world_size: int = 1) -> Iterator[SplitRows]:
    """The split's row groups as :class:`SplitRows`, in rank-0-gathers order for ``world_size`` ranks."""
    groups = _row_groups(root, split)
    files: Dict[Path, pq.ParquetFile] = {}
    for rank in range(world_size):
        for path, index in groups[rank::world_size]:
            if path not in files:
                files[path] = pq.ParquetFile(path)
            yield _to_rows(files[path].read_row_group(index, columns=list(columns)), columns, max_len)


def read_split(root: str | Path, split: str, columns: Sequence[str], max_len: int,
               world_size: int = 1) -> SplitRows:
    """All rows of :func:`iter_split` concatenated."""
    parts = list(iter_split(root, split, columns, max_len, world_size))
    if not parts:
        return SplitRows({c: np.zeros(0) for c in columns}, np.zeros(1, dtype=np.int64))
    lengths = np.concatenate([np.diff(p.offsets) for p in parts])
    return SplitRows({c: np.concatenate([p.columns[c] for p in parts]) for c in columns},
                     np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def _to_rows(table, columns: Sequence[str], max_len: int) -> SplitRows:
    out: Dict[str, np.ndarray] = {}
    offsets = None
    for name in columns:
        col = table.column(name)
        if name.startswith("hist_"):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
            values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            keep_from = np.repeat(np.maximum(lengths - max_len, 0), lengths)
            starts = np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            values = values[np.arange(values.size) - starts >= keep_from]
            kept = np.minimum(lengths, max_len)
            row_offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
            if offsets is not None and not np.array_equal(offsets, row_offsets):
                raise schema.DataError(f"{name}: history lengths differ from the other history columns")
            offsets = row_offsets
            out[name] = values
        else:
            out[name] = col.to_numpy()
    if offsets is None:
        offsets = np.zeros(table.num_rows + 1, dtype=np.int64)
    return SplitRows(out, offsets)
