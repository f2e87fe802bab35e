"""The reader's side keys (model.side_fields, model.time_gap, model.hard_levels, model.position_objectives):
added only when asked, aligned with hist_item, truncated to the most recent max_len like the history, per-key
sizes passed; a field the dataset lacks is refused naming it and the dataset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.data.batch import SPARSE_KEYS, padding_batch
from dare_rec.data.parquet import ParquetBatchReader, check_side_fields
from dare_rec.data.side import time_gap_buckets

MAX_LEN = 5


def test_side_keys_follow_the_history(tiny_side_data):
    reader = ParquetBatchReader(tiny_side_data, "val", 1_000, max_len=MAX_LEN, side_fields=("gap", "btype"),
                                gap_buckets=9)
    batch = next(iter(reader))
    kjt = batch.sparse_features
    assert kjt.keys() == list(SPARSE_KEYS) + ["hist_gap", "hist_btype"]
    assert kjt._length_per_key is not None and kjt._offset_per_key is not None  # nothing reads lengths on the host
    table = pq.read_table(schema.split_files(tiny_side_data, "val")[0])
    hist_len = kjt["hist_item"].lengths()
    assert hist_len.max() == MAX_LEN  # the tiny histories are longer: truncated
    for key in ("hist_gap", "hist_btype"):
        assert kjt[key].lengths().tolist() == hist_len.tolist()
    gaps, btypes = kjt["hist_gap"].to_dense(), kjt["hist_btype"].to_dense()
    for row, sample in enumerate(batch.sample_ids.tolist()[:50]):
        ts = np.array(table["hist_ts"][sample].as_py()[-MAX_LEN:] if hist_len[row] else [], dtype=np.int64)
        expected_gaps = time_gap_buckets(ts, np.full(len(ts), table["target_ts"][sample].as_py()), 9)
        assert gaps[row].tolist() == expected_gaps.tolist()
        assert btypes[row].tolist() == (table["hist_btype"][sample].as_py()[-MAX_LEN:] if hist_len[row] else [])
    assert padding_batch(reader.side_keys).sparse_features.keys() == kjt.keys()


def test_without_side_fields_the_keys_are_the_history_and_the_target(tiny_side_data):
    batch = next(iter(ParquetBatchReader(tiny_side_data, "val", 64, max_len=MAX_LEN)))
    assert batch.sparse_features.keys() == list(SPARSE_KEYS)


def test_a_side_field_the_dataset_lacks_is_refused(tiny_data):
    meta = schema.DatasetMeta.read(tiny_data)
    with pytest.raises(schema.DataError, match=r"model.side_fields btype needs column\(s\) \['hist_btype'\]") as e:
        ParquetBatchReader(tiny_data, "val", 64, max_len=MAX_LEN, side_fields=("btype",))
    assert str(tiny_data) in str(e.value)
    without_ts = dataclasses.replace(meta, columns=[c for c in meta.columns if c != schema.HIST_TS])
    with pytest.raises(schema.DataError, match=r"model.time_gap needs column\(s\) \['hist_ts'\]"):
        check_side_fields(without_ts, tiny_data, ("gap",))


def test_hard_level_keys_follow_the_history_and_the_target(tiny_side_data):
    """hard_levels brand and seller: jagged history keys aligned with hist_item (truncated like it), then length-1
    target keys, after the side keys; per-key sizes passed; the padding batch has the same keys."""
    reader = ParquetBatchReader(tiny_side_data, "val", 1_000, max_len=MAX_LEN, side_fields=("btype",),
                                hard_fields=("seller", "brand"))
    batch = next(iter(reader))
    kjt = batch.sparse_features
    assert kjt.keys() == list(SPARSE_KEYS) + ["hist_btype", "hist_seller", "hist_brand", "target_seller",
                                              "target_brand"]
    assert kjt._length_per_key is not None and kjt._offset_per_key is not None  # nothing reads lengths on the host
    table = pq.read_table(schema.split_files(tiny_side_data, "val")[0])
    hist_len = kjt["hist_item"].lengths()
    assert hist_len.max() == MAX_LEN
    for column in ("seller", "brand"):
        assert kjt[f"hist_{column}"].lengths().tolist() == hist_len.tolist()
        assert kjt[f"target_{column}"].lengths().tolist() == [1] * batch.batch_size
        hist, target = kjt[f"hist_{column}"].to_dense(), kjt[f"target_{column}"].values()
        for row, sample in enumerate(batch.sample_ids.tolist()[:50]):
            stored = table[f"hist_{column}"][sample].as_py()
            assert hist[row].tolist() == (stored[-MAX_LEN:] if hist_len[row] else [])
            assert target[row] == table[f"target_{column}"][sample].as_py()
    padding = padding_batch(reader.side_keys, reader.target_side_keys).sparse_features
    assert padding.keys() == kjt.keys() and padding["target_brand"].lengths().tolist() == [1]


def test_a_hard_level_the_dataset_lacks_is_refused(tiny_data):
    with pytest.raises(schema.DataError, match=r"^model.hard_levels brand needs column\(s\) \['hist_brand', "
                                               r"'target_brand'\] but the dataset") as e:
        ParquetBatchReader(tiny_data, "val", 64, max_len=MAX_LEN, hard_fields=("brand",))
    assert str(tiny_data) in str(e.value) and "\n" not in str(e.value)


def test_seller_and_brand_side_fields_read_their_history_and_target_keys(tiny_side_data):
    """side_fields seller and brand add the keys of the hard levels of the same name; a field that is both a side
    field and a hard level is read once."""
    both = ParquetBatchReader(tiny_side_data, "val", 1_000, max_len=MAX_LEN, side_fields=("btype", "brand"),
                              hard_fields=("seller", "brand"))
    kjt = next(iter(both)).sparse_features
    assert kjt.keys() == list(SPARSE_KEYS) + ["hist_btype", "hist_brand", "hist_seller", "target_brand",
                                              "target_seller"]
    levels = ParquetBatchReader(tiny_side_data, "val", 1_000, max_len=MAX_LEN, side_fields=("btype",),
                                hard_fields=("brand", "seller"))
    same = next(iter(levels)).sparse_features
    for key in ("hist_brand", "target_brand", "hist_seller", "target_seller"):
        assert kjt[key].values().tolist() == same[key].values().tolist()
        assert kjt[key].lengths().tolist() == same[key].lengths().tolist()


def test_a_seller_or_brand_side_field_the_dataset_lacks_is_refused(tiny_data):
    with pytest.raises(schema.DataError, match=r"^model.side_fields seller needs column\(s\) \['hist_seller', "
                                               r"'target_seller'\] but the dataset") as e:
        ParquetBatchReader(tiny_data, "val", 64, max_len=MAX_LEN, side_fields=("seller",))
    assert str(tiny_data) in str(e.value) and "\n" not in str(e.value)


def test_the_objective_key_is_read_only_for_several_objectives(tiny_objective_data):
    """model.position_objectives 2: target_objective as the last length-1 target key, the column's values; with
    one objective the column is not read; the padding batch has the same keys (objective 1)."""
    reader = ParquetBatchReader(tiny_objective_data, "val", 1_000, max_len=MAX_LEN, objectives=2)
    batch = next(iter(reader))
    kjt = batch.sparse_features
    assert kjt.keys() == list(SPARSE_KEYS) + [schema.TARGET_OBJECTIVE]
    assert kjt._length_per_key is not None and kjt._offset_per_key is not None
    table = pq.read_table(schema.split_files(tiny_objective_data, "val")[0])
    assert kjt[schema.TARGET_OBJECTIVE].lengths().tolist() == [1] * batch.batch_size
    assert kjt[schema.TARGET_OBJECTIVE].values().tolist() == \
        [table[schema.TARGET_OBJECTIVE][s].as_py() for s in batch.sample_ids.tolist()]
    assert set(kjt[schema.TARGET_OBJECTIVE].values().tolist()) == {1, 2}
    padding = padding_batch(reader.side_keys, reader.target_side_keys).sparse_features
    assert padding.keys() == kjt.keys() and padding[schema.TARGET_OBJECTIVE].values().tolist() == [1]
    one = next(iter(ParquetBatchReader(tiny_objective_data, "val", 64, max_len=MAX_LEN)))
    assert one.sparse_features.keys() == list(SPARSE_KEYS)


def test_several_objectives_on_a_dataset_without_them_are_refused(tiny_data):
    with pytest.raises(schema.DataError, match=r"^model.position_objectives 2 needs column\(s\) "
                                               r"\['target_objective'\] but the dataset") as e:
        ParquetBatchReader(tiny_data, "val", 64, max_len=MAX_LEN, objectives=2)
    assert str(tiny_data) in str(e.value)
