"""Parquet reader: batch contents, truncation, rank sharding, equal steps, resumable shuffles, prefetch
errors, the reader thread at exit, and one test per malformed input (each names its place)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.data.parquet import ParquetBatchReader
from tests.conftest import REPO


def rows_of(batch):
    """(user, target, history tuple) per sample of a batch, from the KJT."""
    kjt = batch.sparse_features
    hist = kjt["hist_item"]
    items = hist.values().tolist()
    offsets = hist.offsets().tolist()
    targets = kjt["target_item"].values().tolist()
    return [(u, t, tuple(items[offsets[i]:offsets[i + 1]]))
            for i, (u, t) in enumerate(zip(batch.user_ids.tolist(), targets))]


def test_batches_reproduce_the_rows_in_order(tiny_data):
    reader = ParquetBatchReader(tiny_data, "val", batch_size=50, max_len=1000)
    table = pq.read_table(schema.split_files(tiny_data, "val")[0]).to_pydict()
    got = [r for b in reader for r in rows_of(b)]
    expected = list(zip(table["user_id"], table["target_item"], map(tuple, table["hist_item"])))
    assert got == expected
    batch = next(iter(reader))
    assert batch.sparse_features.keys() == ["hist_item", "hist_cate", "target_item", "target_cate"]
    assert batch.labels.tolist() == [float(x) for x in table["label"][:50]]
    np.testing.assert_allclose(batch.click_probs.numpy(), table["click_prob"][:50])
    assert batch.sparse_features["target_cate"].values().tolist() == table["target_cate"][:50]


def test_long_histories_keep_the_most_recent_behaviors(tiny_data):
    full = [r for b in ParquetBatchReader(tiny_data, "test", 64, max_len=1000) for r in rows_of(b)]
    cut = [r for b in ParquetBatchReader(tiny_data, "test", 64, max_len=7) for r in rows_of(b)]
    assert any(len(h) > 7 for _, _, h in full)
    assert cut == [(u, t, h[-7:]) for u, t, h in full]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_mode_ranks_read_every_row_exactly_once(tiny_data, world_size):
    everything = Counter(r for b in ParquetBatchReader(tiny_data, "train", 64, 1000) for r in rows_of(b))
    seen = Counter()
    steps = set()
    for rank in range(world_size):
        reader = ParquetBatchReader(tiny_data, "train", 64, 1000, rank=rank, world_size=world_size)
        batches = list(reader)
        assert len(batches) == reader.num_batches() <= reader.max_batches_any_rank()
        steps.add(reader.max_batches_any_rank())
        seen.update(r for b in batches for r in rows_of(b))
    assert seen == everything and sum(seen.values()) == schema.DatasetMeta.read(tiny_data).counts["train"]
    assert len(steps) == 1  # every rank agrees on the step count


def test_train_mode_gives_equal_full_batches_and_reshuffles_per_epoch(tiny_data):
    readers = [ParquetBatchReader(tiny_data, "train", 64, 32, rank=r, world_size=2, shuffle=True, drop_last=True,
                                  seed=3) for r in range(2)]
    counts = [len(list(r.epoch(0))) for r in readers]
    assert counts[0] == counts[1] == readers[0].num_batches() > 0
    assert all(b.batch_size == 64 for b in readers[0].epoch(0))
    epoch0 = [rows_of(b) for b in readers[0].epoch(0)]
    assert epoch0 == [rows_of(b) for b in readers[0].epoch(0)]  # seeded: same epoch, same order
    assert epoch0 != [rows_of(b) for b in readers[0].epoch(1)]  # another epoch, another order


def test_too_few_rows_for_a_training_batch_is_a_clear_error(tiny_data):
    with pytest.raises(schema.DataError, match="fewer than data.batch_size"):
        ParquetBatchReader(tiny_data, "val", 10_000, 32, drop_last=True)


def ids_of(batches):
    return [b.sample_ids.tolist() for b in batches]


@pytest.mark.parametrize("rank", [0, 1])
def test_an_epoch_resumes_at_any_batch_without_reading_what_it_skips(tiny_data, rank, monkeypatch):
    reader = ParquetBatchReader(tiny_data, "train", 64, 32, rank=rank, world_size=2, shuffle=True, drop_last=True,
                                seed=5)
    full = ids_of(reader.epoch(1))
    n = reader.num_batches()
    assert len(full) == n and len({i for b in full for i in b}) == n * 64  # no sample twice in an epoch
    reads = []
    original = ParquetBatchReader._read
    monkeypatch.setattr(ParquetBatchReader, "_read", lambda self, f, g: reads.append(g) or original(self, f, g))
    for start in (1, 4, 5, n - 1, n):
        reads.clear()
        assert ids_of(reader.epoch(1, start_batch=start)) == full[start:]
        if start == n - 1:
            assert len(reads) < len(reader.groups) // 2  # skipped row groups are never read
    with pytest.raises(ValueError, match="start_batch"):
        reader.epoch(1, start_batch=n + 1)


def test_sample_ids_are_split_row_numbers(tiny_data):
    reader = ParquetBatchReader(tiny_data, "val", 100, 1000)
    table = pq.read_table(schema.split_files(tiny_data, "val")[0]).to_pydict()
    for batch in reader:
        ids = batch.sample_ids.tolist()
        assert batch.user_ids.tolist() == [table["user_id"][i] for i in ids]
    assert reader.locate(300).endswith("part-00000.parquet (row group 1, row 300)")


def test_a_reader_thread_busy_at_interpreter_exit_does_not_abort_the_process(tiny_data):
    # Before the thread was joined on close (and at exit), CPython ended a thread still inside a
    # GIL-releasing torch call at finalization with pthread_exit, which aborted the process
    # ("terminate called without an active exception", exit -6) every time this script ran.
    script = f"""
import torch
from dare_rec.data import parquet
convert = parquet.ParquetBatchReader._to_batch
def slow_convert(self, table):
    a = torch.randn(300, 300)
    for _ in range(20):
        a = (a @ a).clamp_(-1, 1)  # a long conversion, the GIL released inside torch
    return convert(self, table)
parquet.ParquetBatchReader._to_batch = slow_convert
reader = parquet.ParquetBatchReader({str(tiny_data)!r}, "train", 64, 32, shuffle=True, drop_last=True)
closed, abandoned = reader.epoch(0), reader.epoch(1)
next(closed), next(abandoned)
closed.close()  # the thread is converting the next batch; exit right away, leaving `abandoned` open
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------------------------
# Malformed inputs: every case is refused with the file (and row group, row, column where they exist) named
# ------------------------------------------------------------------------------------------------------------


def copy_with_bad_val(tiny_data, tmp_path, mutate):
    root = tmp_path / "bad"
    shutil.copytree(tiny_data, root)
    path = schema.split_files(root, "val")[0]
    table = pq.read_table(path)
    pq.write_table(mutate(table), path, row_group_size=256)
    return root, path


def replace_column(table, name, values, nullable=False):
    field = pa.field(name, table.schema.field(name).type, nullable=nullable or any(v is None for v in values))
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


def set_value(name, row, value):
    def mutate(t):
        values = t[name].to_pylist()
        values[row] = value
        return replace_column(t, name, values)
    return mutate


def set_behavior(name, row, position, value):
    def mutate(t):
        values = t[name].to_pylist()
        values[row] = list(values[row])
        values[row][position] = value
        return replace_column(t, name, values)
    return mutate


def first_long_history_row(tiny_data, start=260):
    hist = pq.read_table(schema.split_files(tiny_data, "val")[0])["hist_item"].to_pylist()
    return next(i for i in range(start, len(hist)) if len(hist[i]) >= 3)


def read_all(root):
    return list(ParquetBatchReader(root, "val", 64, 32))  # errors raised in the reader thread surface here


@pytest.mark.parametrize("column,value", [
    ("user_id", None), ("target_item", None), ("target_cate", None), ("label", None), ("click_prob", None),
    ("hist_item", None), ("hist_cate", None),
])
def test_a_null_in_any_column_names_file_row_group_row_and_column(tiny_data, tmp_path, column, value):
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_value(column, 300, value))
    where = rf"^{path} \(row group 1, rows 256..511\): row 300"
    with pytest.raises(schema.DataError, match=rf"{where}: column '{column}' is null$"):
        read_all(root)


def test_a_null_behavior_inside_a_history_is_named(tiny_data, tmp_path):
    row = first_long_history_row(tiny_data)
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_behavior("hist_cate", row, 1, None))
    with pytest.raises(schema.DataError, match=rf"{path} \(row group 1, .*\): row {row}: column 'hist_cate' holds a null"):
        read_all(root)


@pytest.mark.parametrize("column,value,shown", [
    ("hist_item", 0, "id 0 outside \\[1, 500\\]"),
    ("hist_cate", -3, "id -3 outside \\[1, 20\\]"),
    ("hist_item", 501, "id 501 outside \\[1, 500\\]"),
])
def test_history_ids_of_zero_negative_or_past_the_vocabulary_are_refused(tiny_data, tmp_path, column, value, shown):
    row = first_long_history_row(tiny_data)
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_behavior(column, row, 2, value))
    with pytest.raises(schema.DataError, match=rf"{path} \(row group 1, .*\): row {row}: column '{column}' holds {shown}"):
        read_all(root)


def test_id_outside_vocabulary_names_file_row_and_column(tiny_data, tmp_path):
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_value("target_item", 300, 10**6))
    with pytest.raises(schema.DataError, match=f"{path}.*row 300: column 'target_item' holds id 1000000 outside"):
        read_all(root)
    root, path = copy_with_bad_val(tiny_data, tmp_path / "zero", set_value("target_cate", 7, 0))
    with pytest.raises(schema.DataError, match=f"{path}.*row 7: column 'target_cate' holds id 0 outside"):
        read_all(root)


@pytest.mark.parametrize("value", [2, -1])
def test_a_label_other_than_0_or_1_is_refused(tiny_data, tmp_path, value):
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_value("label", 600, value))
    with pytest.raises(schema.DataError, match=rf"{path} \(row group 2, .*\): row 600: column 'label' is {value}, must be"):
        read_all(root)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5])
def test_a_non_finite_or_impossible_float_is_refused(tiny_data, tmp_path, value):
    root, path = copy_with_bad_val(tiny_data, tmp_path, set_value("click_prob", 20, value))
    with pytest.raises(schema.DataError, match=rf"{path} \(row group 0, .*\): row 20: column 'click_prob' is"):
        read_all(root)


def test_history_columns_of_different_lengths_are_rejected(tiny_data, tmp_path):
    def mutate(t):
        cates = t["hist_cate"].to_pylist()
        cates[5] = cates[5] + [1]
        return replace_column(t, "hist_cate", cates)

    root, path = copy_with_bad_val(tiny_data, tmp_path, mutate)
    with pytest.raises(schema.DataError, match=rf"{path} \(row group 0, .*\): row 5: hist_item has .* but hist_cate has"):
        read_all(root)


def test_missing_column_and_missing_dataset_are_clear(tiny_data, tmp_path):
    root, path = copy_with_bad_val(tiny_data, tmp_path, lambda t: t.drop_columns(["label"]))
    with pytest.raises(schema.DataError, match=f"{path}: missing required column 'label'"):
        ParquetBatchReader(root, "val", 64, 32)
    with pytest.raises(schema.DataError, match="does not exist"):
        ParquetBatchReader(tmp_path / "nowhere", "val", 64, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(schema.DataError, match="meta.json"):
        ParquetBatchReader(tmp_path / "empty", "val", 64, 32)


def test_a_schema_mismatch_between_files_names_file_and_column(tiny_data, tmp_path):
    root, path = copy_with_bad_val(tiny_data, tmp_path, lambda t: t.drop_columns(["hist_ts"]))
    with pytest.raises(schema.DataError, match=f"{path}: missing column 'hist_ts' that meta.json lists"):
        ParquetBatchReader(root, "val", 64, 32)
    root, path = copy_with_bad_val(tiny_data, tmp_path / "extra",
                                   lambda t: t.append_column("weight", pa.array([1.0] * t.num_rows)))
    with pytest.raises(schema.DataError, match=f"{path}: column 'weight' is not among meta.json's columns"):
        ParquetBatchReader(root, "val", 64, 32)


def copy_val_bytes(tiny_data, tmp_path, edit):
    root = tmp_path / "bad"
    shutil.copytree(tiny_data, root)
    path = schema.split_files(root, "val")[0]
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data, pq.ParquetFile(path).metadata)))
    return root, path


def test_a_truncated_file_is_named(tiny_data, tmp_path):
    root, path = copy_val_bytes(tiny_data, tmp_path, lambda data, md: data[:len(data) // 2])
    with pytest.raises(schema.DataError, match=rf"^{path}: not a readable Parquet file \(truncated, or a corrupt footer\)"):
        ParquetBatchReader(root, "val", 64, 32)


def test_a_corrupt_footer_is_named(tiny_data, tmp_path):
    def garble_footer(data, md):
        data[-200:-8] = b"\xff" * 192
        return data

    root, path = copy_val_bytes(tiny_data, tmp_path, garble_footer)
    with pytest.raises(schema.DataError, match=rf"^{path}: not a readable Parquet file"):
        ParquetBatchReader(root, "val", 64, 32)


def corrupt_page(data, md, group=1, column="hist_item"):
    """Overwrites the header of ``column``'s first data page in row group ``group``."""
    names = [md.schema.column(i).path.split(".")[0] for i in range(md.num_columns)]
    offset = md.row_group(group).column(names.index(column)).data_page_offset
    data[offset:offset + 48] = b"\xfe" * 48
    return data


def test_a_corrupt_page_names_file_row_group_and_column(tiny_data, tmp_path):
    root, path = copy_val_bytes(tiny_data, tmp_path, corrupt_page)
    with pytest.raises(schema.DataError, match=rf"^{path} \(row group 1\): column 'hist_item' cannot be decoded"):
        read_all(root)


def test_an_empty_split_is_refused(tiny_data, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(tiny_data, root)
    path = schema.split_files(root, "val")[0]
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    meta = json.loads((root / "meta.json").read_text())
    meta["counts"]["val"] = 0
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(schema.DataError, match=f"^{root / 'val'}: the 'val' split has no rows$"):
        ParquetBatchReader(root, "val", 64, 32)


def test_files_that_disagree_with_meta_json_are_refused(tiny_data, tmp_path):
    # cheap checks, always on: the file list and the row count
    root, path = copy_with_bad_val(tiny_data, tmp_path, lambda t: t.slice(0, 800))
    with pytest.raises(schema.DataError, match=f"{root / 'val'}: the files hold 800 rows but meta.json counts 900"):
        ParquetBatchReader(root, "val", 64, 32)
    shutil.copy(schema.split_files(tiny_data, "val")[0], root / "val" / "part-00001.parquet")
    with pytest.raises(schema.DataError, match=f"{root / 'val' / 'part-00001.parquet'}: not listed in meta.json"):
        ParquetBatchReader(root, "val", 64, 32)
    # same rows, other content: only the hashes tell (data.verify_hashes)
    root, path = copy_with_bad_val(tiny_data, tmp_path / "hash", set_value("label", 3, 1))
    ParquetBatchReader(root, "val", 64, 32)
    with pytest.raises(schema.DataError, match=f"^{path}: sha256 .* differs from meta.json's"):
        ParquetBatchReader(root, "val", 64, 32, verify_hashes=True)
    ParquetBatchReader(tiny_data, "val", 64, 32, verify_hashes=True)
