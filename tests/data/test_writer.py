"""Row groups bounded in rows and bytes (dare_rec/data/writer.py), in the generator and in prepare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dare_rec.config import LogsConfig, SyntheticConfig
from dare_rec.data import schema
from dare_rec.data.logs import prepare_logs
from dare_rec.data.raw_logs import RawLogSpec, generate_raw_log
from dare_rec.data.synthetic import generate
from dare_rec.data.writer import group_bounds, row_bytes, rows_per_full_group


def test_group_bounds_close_a_group_at_the_row_cap_or_the_byte_cap_whichever_comes_first():
    assert group_bounds(np.full(10, 5), max_rows=4, max_bytes=1000) == [0, 4, 8, 10]
    assert group_bounds(np.full(10, 5), max_rows=100, max_bytes=12) == [0, 2, 4, 6, 8, 10]
    # A row over the byte cap gets a group of its own; the rows around it still fill theirs.
    assert group_bounds(np.array([3, 3, 50, 3, 3, 3]), max_rows=100, max_bytes=6) == [0, 2, 3, 5, 6]
    assert group_bounds(np.zeros(0, dtype=np.int64), 4, 10) == [0]


def test_row_bytes_counts_fixed_columns_and_the_values_and_offsets_of_list_columns():
    table = pa.table({"a": pa.array([1, 2], pa.int64()), "b": pa.array([0, 1], pa.int8()),
                      "h": pa.array([[1, 2, 3], []], pa.list_(pa.int64())),
                      "r": pa.array([[0.5], [1.0, 2.0]], pa.list_(pa.float32()))})
    assert row_bytes(table).tolist() == [8 + 1 + (4 + 24) + (4 + 4), 8 + 1 + 4 + (4 + 8)]


def test_short_histories_keep_the_row_count_layout_and_long_ones_get_groups_within_the_byte_cap():
    contract = schema.arrow_schema([schema.HIST_TS, schema.TARGET_TS])
    assert rows_per_full_group(contract, 200, 8192, 64 << 20) == 8192
    long_rows = rows_per_full_group(contract, 10_000, 8192, 64 << 20)
    assert 200 < long_rows < 300  # ~235 KB per 10,000-behavior row


def _groups(root: Path):
    for path in sorted(root.rglob("*.parquet")):
        footer = pq.ParquetFile(path).metadata
        for i in range(footer.num_row_groups):
            table = pq.ParquetFile(path).read_row_group(i)
            yield table.num_rows, int(row_bytes(table).sum())


def test_generator_groups_hold_at_most_row_group_mb_and_the_same_rows_as_without_a_cap(tmp_path):
    cfg = SyntheticConfig(num_users=40, num_items=300, num_categories=10, min_history=400, max_history=500,
                          train_slots=3, candidates_per_slot=2, users_per_chunk=16, row_group_mb=1, train_files=1)
    capped = generate(cfg, tmp_path / "capped", progress=False)
    groups = list(_groups(tmp_path / "capped"))
    assert all(size <= 1 << 20 for rows, size in groups if rows > 1)
    assert max(rows for rows, _ in groups) < 8192 and len(groups) > 3  # the byte cap did the cutting
    uncapped = generate(SyntheticConfig(**{**cfg.__dict__, "row_group_mb": 1024}), tmp_path / "uncapped",
                        progress=False)
    assert capped.counts == uncapped.counts
    for split in schema.SPLITS:
        a = pq.read_table(tmp_path / "capped" / split)
        b = pq.read_table(tmp_path / "uncapped" / split)
        assert a.equals(b)


def test_prepare_of_long_histories_writes_groups_within_the_byte_cap(tmp_path):
    raw = tmp_path / "log.csv"
    generate_raw_log(RawLogSpec(fmt="taobao", rows=12_000, mean_len=1500, len_sigma=0.1, seed=3), raw,
                     progress=False)
    cfg = LogsConfig(min_len=1100, max_len=1000, train_count=3, row_group_mb=1, train_files=1)
    meta, _ = prepare_logs("taobao", raw, tmp_path / "out", cfg, progress=False)
    assert meta.max_history == 1000
    groups = list(_groups(tmp_path / "out"))
    assert all(size <= 1 << 20 for _, size in groups)
    assert sum(rows for rows, _ in groups) == sum(meta.counts.values())
    written = pq.read_schema(next((tmp_path / "out" / "train").glob("*.parquet")))
    assert max(rows for rows, _ in groups) == rows_per_full_group(written, 1000, cfg.row_group_size, 1 << 20)
