"""Writes the Parquet data contract: per-split files, row groups bounded in rows and bytes, hashes, meta.json.

Every producer of data (the synthetic generator, the log preprocessors) goes through
:class:`DatasetWriter`, so all datasets share file layout, compression and determinism: the same rows in
the same order give byte-identical files.

A row group is the unit the reader decodes at once (and deals to ranks), so its size bounds the reader's
memory. A row count alone does not: 8,192 rows of 200-behavior histories are ~40 MB, of 10,000-behavior
histories ~2 GB. Groups therefore close at ``row_group_size`` rows or ``row_group_bytes`` (uncompressed),
whichever comes first; short-history datasets keep their row-count layout, since the byte bound binds only
for long histories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dare_rec.data import schema


def list_array(offsets: np.ndarray, values: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """A ``list<value_type>`` Arrow array from CSR offsets ``[R + 1]`` and flat values ``[offsets[-1]]``."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=value_type))


def row_bytes(table: pa.Table) -> np.ndarray:
    """``[R]`` uncompressed bytes of each row: fixed-width columns, plus offset and values of list columns."""
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        if pa.types.is_list(column.type):
            width = column.type.value_type.bit_width // 8
            sizes += 4 + width * pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            sizes += column.type.bit_width // 8
    return sizes


def group_bounds(sizes: np.ndarray, max_rows: int, max_bytes: int) -> List[int]:
    """Row boundaries ``[0, ..., R]`` cutting rows of byte ``sizes`` ``[R]`` into consecutive groups of at
    most ``max_rows`` rows and ``max_bytes`` bytes (at least one row each), greedily from the front."""
    ends = np.cumsum(sizes)
    bounds = [0]
    while bounds[-1] < len(sizes):
        start = bounds[-1]
        before = int(ends[start - 1]) if start else 0
        fits = int(np.searchsorted(ends, before + max_bytes, side="right"))  # rows [start, fits) fit the bytes
        bounds.append(min(start + max_rows, max(fits, start + 1)))
    return bounds


def rows_per_full_group(arrow_schema: pa.Schema, history_len: int, max_rows: int, max_bytes: int) -> int:
    """Rows of a row group when every list column holds ``history_len`` values (the longest histories):
    producers write chunks of this many rows so that chunk ends do not leave small groups behind."""
    one_row = pa.Table.from_pylist(
        [{f.name: [0] * history_len if pa.types.is_list(f.type) else 0 for f in arrow_schema}], schema=arrow_schema)
    return int(min(max_rows, max(1, max_bytes // int(row_bytes(one_row)[0]))))


class DatasetWriter:
    """Streams row batches of each split into ``<root>/<split>/part-XXXXX.parquet``.

    Args:
        root: a new dataset folder (the temporary folder of :func:`dare_rec.data.publish.publish_dataset`);
            its split folders must not exist yet. Nothing is ever deleted.
        optional_columns: optional contract columns every batch carries (see ``schema.OPTIONAL_COLUMNS``).
        files_per_split: how many files each split is spread over; ``write(..., file_index=i)`` picks one.
        row_group_size: most rows per Parquet row group (the unit the reader shards across ranks).
        row_group_bytes: most uncompressed bytes per row group (:func:`row_bytes`); a row larger than this
            gets a group of its own.
    """

    def __init__(
        self,
        root: str | Path,
        optional_columns: List[str],
        files_per_split: Mapping[str, int],
        row_group_size: int,
        row_group_bytes: int,
    ) -> None:
        self.root = Path(root)
        self.schema = schema.arrow_schema(optional_columns)
        self.row_group_size = row_group_size
        self.row_group_bytes = row_group_bytes
        self.files_per_split = dict(files_per_split)
        self.counts: Dict[str, int] = {split: 0 for split in schema.SPLITS}
        self.max_history = 0
        self._writers: Dict[str, List[Optional[pq.ParquetWriter]]] = {
            split: [None] * self.files_per_split[split] for split in schema.SPLITS
        }
        for split in schema.SPLITS:
            (self.root / split).mkdir(parents=True)

    def _path(self, split: str, index: int) -> Path:
        return self.root / split / f"part-{index:05d}.parquet"

    def write(self, split: str, columns: Mapping[str, pa.Array], file_index: int = 0) -> None:
        """Appends rows to one file of ``split``. ``columns`` must hold exactly the schema's columns."""
        table = pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)
        if table.num_rows == 0:
            return
        writers = self._writers[split]
        if writers[file_index] is None:
            writers[file_index] = pq.ParquetWriter(self._path(split, file_index), self.schema, compression="zstd")
        bounds = group_bounds(row_bytes(table), self.row_group_size, self.row_group_bytes)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            writers[file_index].write_table(table.slice(start, stop - start), row_group_size=stop - start)
        self.counts[split] += table.num_rows
        lengths = pc.list_value_length(table.column(schema.HIST_ITEM))
        self.max_history = max(self.max_history, int(pc.max(lengths).as_py() or 0))

    def close(self) -> Dict[str, Dict[str, str]]:
        """Closes all files; writes an empty file for a split that got no rows. Returns sha256 per file."""
        files: Dict[str, Dict[str, str]] = {}
        for split in schema.SPLITS:
            files[split] = {}
            for i, writer in enumerate(self._writers[split]):
                path = self._path(split, i)
                if writer is None:
                    pq.write_table(self.schema.empty_table(), path, compression="zstd")
                else:
                    writer.close()
                files[split][str(path.relative_to(self.root))] = schema.sha256_file(path)
        return files
