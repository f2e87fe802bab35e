"""Export to the reference code's sample format: file names, row order, ids, labels, padded histories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.data.official_format import MARKER, export_official, left_padded


def _split(root: Path, split: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in schema.split_files(root, split)])


def _unpadded(row: np.ndarray) -> list:
    return [int(v) for v in row[np.argmax(row > 0):]] if (row > 0).any() else []


def _check_rows(rows: np.ndarray, table: pa.Table, max_length: int) -> None:
    """Every exported row equals the Parquet row at the same position (histories cut to max_length)."""
    assert rows.dtype == object and rows.shape == (table.num_rows, 6)
    labels = table.column(schema.LABEL).to_numpy()
    hist_item = table.column(schema.HIST_ITEM).to_pylist()
    hist_cate = table.column(schema.HIST_CATE).to_pylist()
    assert [int(x) for x in rows[:, 0]] == table.column(schema.USER_ID).to_pylist()
    assert [int(x) for x in rows[:, 1]] == table.column(schema.TARGET_ITEM).to_pylist()
    assert [int(x) for x in rows[:, 2]] == table.column(schema.TARGET_CATE).to_pylist()
    assert [list(x) for x in rows[:, 3]] == [[1, 0] if y else [0, 1] for y in labels]
    for i in range(table.num_rows):
        assert len(rows[i, 4]) == len(rows[i, 5]) == max_length
        # ids are >= 1, so stripping the left zeros gives the history back (most recent max_length of it)
        assert _unpadded(rows[i, 4]) == hist_item[i][-max_length:]
        assert _unpadded(rows[i, 5]) == hist_cate[i][-max_length:]
        assert not rows[i, 4][: max_length - len(hist_item[i][-max_length:])].any()


def test_round_trip_preserves_rows_and_order(tiny_data, tmp_path):
    summary = export_official(tiny_data, tmp_path / "out")
    meta = schema.DatasetMeta.read(tiny_data)
    out = tmp_path / "out"
    train = _split(tiny_data, "train")
    assert summary["item_n"] == meta.num_items and summary["cate_n"] == meta.num_categories
    assert summary["max_length"] == meta.max_history
    assert summary["train_files"] == [f"train_0001_{train.num_rows}.npy"]
    assert summary["counts"] == meta.counts
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["train_files"] + ["val.npy", "test.npy", MARKER])
    assert json.loads((out / MARKER).read_text()) == summary
    _check_rows(np.load(out / summary["train_files"][0], allow_pickle=True), train, meta.max_history)
    for split in ("val", "test"):
        _check_rows(np.load(out / f"{split}.npy", allow_pickle=True), _split(tiny_data, split), meta.max_history)


def test_train_files_are_numbered_from_one_and_cut_by_rows(tiny_data, tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "train_0007_5.npy").write_bytes(b"stale")  # an earlier export's file would break the reader's index
    summary = export_official(tiny_data, out, max_length=8, rows_per_file=500)
    train = _split(tiny_data, "train")
    sizes = [500] * (train.num_rows // 500) + ([train.num_rows % 500] if train.num_rows % 500 else [])
    assert summary["train_files"] == [f"train_{i:04d}_{n}.npy" for i, n in enumerate(sizes, start=1)]
    assert sorted(p.name for p in out.glob("*train_*")) == summary["train_files"]
    rows = np.concatenate([np.load(out / name, allow_pickle=True) for name in summary["train_files"]])
    _check_rows(rows, train, 8)


def test_left_padded_handles_empty_long_and_sliced_lists():
    lists = pa.array([[1, 2, 3], [4], [], [5, 6, 7, 8, 9]], type=pa.list_(pa.int64()))
    assert left_padded(lists, 4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 4], [0, 0, 0, 0], [6, 7, 8, 9]]
    assert left_padded(lists.slice(1, 3), 3).tolist() == [[0, 0, 4], [0, 0, 0], [7, 8, 9]]
    assert left_padded(pa.chunked_array([lists.slice(2, 2)]), 2).tolist() == [[0, 0], [8, 9]]


def test_bad_arguments(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="rows_per_file"):
        export_official(tiny_data, tmp_path / "x", rows_per_file=0)
    with pytest.raises(schema.DataError, match="does not exist"):
        export_official(tmp_path / "missing", tmp_path / "x")
