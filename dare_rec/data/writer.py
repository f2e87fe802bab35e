"""Writes the Parquet data contract: per-split files, fixed row-group size, hashes and meta.json.

Every producer of data (the synthetic generator, the log preprocessors) goes through
:class:`DatasetWriter`, so all datasets share file layout, compression and determinism: the same rows in
the same order give byte-identical files.
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


class DatasetWriter:
    """Streams row batches of each split into ``<root>/<split>/part-XXXXX.parquet``.

    Args:
        root: a new dataset folder (the temporary folder of :func:`dare_rec.data.publish.publish_dataset`);
            its split folders must not exist yet. Nothing is ever deleted.
        optional_columns: optional contract columns every batch carries (see ``schema.OPTIONAL_COLUMNS``).
        files_per_split: how many files each split is spread over; ``write(..., file_index=i)`` picks one.
        row_group_size: rows per Parquet row group (the unit the reader shards across ranks).
    """

    def __init__(
        self,
        root: str | Path,
        optional_columns: List[str],
        files_per_split: Mapping[str, int],
        row_group_size: int,
    ) -> None:
        self.root = Path(root)
        self.schema = schema.arrow_schema(optional_columns)
        self.row_group_size = row_group_size
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
        writers[file_index].write_table(table, row_group_size=self.row_group_size)
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
