"""Parquet reader: batch contents, truncation, rank sharding, equal steps, prefetch errors, bad files."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema as S
from dare_rec.data.parquet import ParquetBatchReader


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
    table = pq.read_table(S.split_files(tiny_data, "val")[0]).to_pydict()
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
    assert seen == everything and sum(seen.values()) == S.DatasetMeta.read(tiny_data).counts["train"]
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
    with pytest.raises(S.DataError, match="fewer than data.batch_size"):
        ParquetBatchReader(tiny_data, "val", 10_000, 32, drop_last=True)


def copy_with_bad_val(tiny_data, tmp_path, mutate):
    root = tmp_path / "bad"
    shutil.copytree(tiny_data, root)
    path = S.split_files(root, "val")[0]
    table = pq.read_table(path)
    pq.write_table(mutate(table), path, row_group_size=256)
    return root, path


def test_id_outside_vocabulary_names_file_row_and_column(tiny_data, tmp_path):
    def mutate(t):
        items = t["target_item"].to_numpy().copy()
        items[300] = 10**6
        return t.set_column(t.schema.get_field_index("target_item"), "target_item", pa.array(items))

    root, path = copy_with_bad_val(tiny_data, tmp_path, mutate)
    with pytest.raises(S.DataError, match=f"{path}.*row 300: column 'target_item' holds an id outside"):
        list(ParquetBatchReader(root, "val", 64, 32))  # raised in the prefetch thread, re-raised here


def test_history_columns_of_different_lengths_are_rejected(tiny_data, tmp_path):
    def mutate(t):
        cates = t["hist_cate"].to_pylist()
        cates[5] = cates[5] + [1]
        return t.set_column(t.schema.get_field_index("hist_cate"), "hist_cate", pa.array(cates, pa.list_(pa.int64())))

    root, _ = copy_with_bad_val(tiny_data, tmp_path, mutate)
    with pytest.raises(S.DataError, match="row 5: hist_item has .* but hist_cate has"):
        list(ParquetBatchReader(root, "val", 64, 32))


def test_missing_column_and_missing_dataset_are_clear(tiny_data, tmp_path):
    root, path = copy_with_bad_val(tiny_data, tmp_path, lambda t: t.drop_columns(["label"]))
    with pytest.raises(S.DataError, match=f"{path}: missing required column 'label'"):
        ParquetBatchReader(root, "val", 64, 32)
    with pytest.raises(S.DataError, match="does not exist"):
        ParquetBatchReader(tmp_path / "nowhere", "val", 64, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(S.DataError, match="meta.json"):
        ParquetBatchReader(tmp_path / "empty", "val", 64, 32)
