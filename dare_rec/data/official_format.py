"""Export of a Parquet dataset to the sample files the DARE paper's reference code reads (thuml/DARE).

The reference trainer (``train_pytorch.py`` with its ``dataset.py``) reads, from one folder:

* ``train_{index:04d}_{count}.npy`` (index from 1, consecutive; found by the ``train_`` prefix, so the
  folder must hold no other file with ``train_`` in its name), streamed in index order, each file in row
  order, batches never spanning two files;
* ``val.npy`` and ``test.npy`` (evaluated in whole batches: a partial last batch is dropped).

Each file is a pickled numpy object array ``[R, 6]`` whose row is ``[user_id, target_item, target_cate,
label one-hot ([1, 0] clicked, [0, 1] not), hist_item, hist_cate]``; histories hold exactly ``max_length``
ids, oldest first, left-padded with 0 (ids >= 1 are real, as in the Parquet contract).

:func:`export_official` writes a dataset folder in that format, preserving row order: the train files of
the Parquet split in sorted order, each in row order, cut into files of ``rows_per_file`` rows (the
reference preprocessing uses 102,400). Only numpy and pyarrow are needed; the reference code is not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dare_rec.data import schema

ROWS_PER_FILE = 102_400
MARKER = "official_export.json"  # written last: its presence means the export is complete
_COLUMNS = [schema.USER_ID, schema.TARGET_ITEM, schema.TARGET_CATE, schema.LABEL, schema.HIST_ITEM, schema.HIST_CATE]
# Shared one-hot labels: pickle stores each list once and references it from every row.
_CLICKED, _NOT_CLICKED = [1, 0], [0, 1]


def left_padded(column: pa.ChunkedArray | pa.ListArray, max_length: int) -> np.ndarray:
    """``[R, max_length]`` int64: each list's last ``max_length`` values, right-aligned, 0 before them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]  # a sliced array's offsets start inside its values; flatten() starts there too
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.minimum(np.diff(offsets), max_length)
    out = np.zeros((len(lengths), max_length), dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    # k-th kept value of a row (0-based), counted from its first kept value.
    k = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = np.repeat(offsets[1:] - lengths, lengths) + k
    out[rows, max_length - np.repeat(lengths, lengths) + k] = values[src]
    return out


def sample_rows(table: pa.Table, max_length: int) -> np.ndarray:
    """The reference format's object array ``[R, 6]`` of a table with the contract's columns."""
    n = table.num_rows
    out = np.empty((n, 6), dtype=object)
    out[:, 0] = table.column(schema.USER_ID).to_numpy()
    out[:, 1] = table.column(schema.TARGET_ITEM).to_numpy()
    out[:, 2] = table.column(schema.TARGET_CATE).to_numpy()
    labels = table.column(schema.LABEL).to_numpy()
    hist_item = left_padded(table.column(schema.HIST_ITEM), max_length)
    hist_cate = left_padded(table.column(schema.HIST_CATE), max_length)
    for i in range(n):  # object cells holding lists/arrays cannot be filled by broadcasting
        out[i, 3] = _CLICKED if labels[i] else _NOT_CLICKED
        out[i, 4] = hist_item[i]
        out[i, 5] = hist_cate[i]
    return out


def _train_tables(root: Path, rows: int) -> Iterator[pa.Table]:
    """The train split's rows in file and row order, in tables of ``rows`` rows (the last may be shorter)."""
    pending: List[pa.Table] = []
    pending_rows = 0
    for path in schema.split_files(root, "train"):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=_COLUMNS):
            pending.append(pa.Table.from_batches([batch]))
            pending_rows += batch.num_rows
            while pending_rows >= rows:
                merged = pa.concat_tables(pending)
                yield merged.slice(0, rows)
                rest = merged.slice(rows)
                pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending)


def export_official(data: str | Path, out_dir: str | Path, max_length: Optional[int] = None,
                    rows_per_file: int = ROWS_PER_FILE) -> Dict[str, object]:
    """Writes the dataset at ``data`` in the reference code's sample format to ``out_dir``.

    Args:
        data: a Parquet dataset folder (with meta.json).
        out_dir: created; earlier ``train_*``/``val``/``test`` ``.npy`` files and the marker are removed first.
        max_length: history width (default: the dataset's longest history, ``meta.max_history``); longer
            histories keep their most recent ``max_length`` behaviors.
        rows_per_file: rows per train file.

    Returns:
        what was written (also stored as ``official_export.json``): vocabulary sizes for ``-item_n`` /
        ``-cate_n``, ``max_length``, rows per split, the train file names, the source dataset's file hashes.
    """
    data, out_dir = Path(data), Path(out_dir)
    meta = schema.DatasetMeta.read(data)
    length = meta.max_history if max_length is None else max_length
    if length < 1:
        raise ValueError(f"max_length must be >= 1, got {length} (a dataset with only empty histories?)")
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).unlink(missing_ok=True)
    for stale in [*out_dir.glob("*train_*"), out_dir / "val.npy", out_dir / "test.npy"]:
        stale.unlink(missing_ok=True)

    counts = {"train": 0}
    train_files: List[str] = []
    for index, table in enumerate(_train_tables(data, rows_per_file), start=1):
        name = f"train_{index:04d}_{table.num_rows}.npy"
        np.save(out_dir / name, sample_rows(table, length), allow_pickle=True)
        train_files.append(name)
        counts["train"] += table.num_rows
    for split in ("val", "test"):
        table = pa.concat_tables([pq.read_table(path, columns=_COLUMNS) for path in schema.split_files(data, split)])
        np.save(out_dir / f"{split}.npy", sample_rows(table, length), allow_pickle=True)
        counts[split] = table.num_rows
    summary = {
        "source": str(data),
        "item_n": meta.num_items,
        "cate_n": meta.num_categories,
        "max_length": length,
        "counts": counts,
        "train_files": train_files,
        "rows_per_file": rows_per_file,
        "dataset_files": meta.files,
    }
    (out_dir / MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
