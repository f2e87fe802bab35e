"""Side information end to end: `dare-rec make-raw-logs` logs prepared with every behavior in the histories
(`--logs.history_behaviors`), against the same logs under the paper's protocol and against the raw rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.side import time_gap_buckets
from dare_rec.pipelines import make_raw_logs, prepare

ALL = {"taobao": "[pv, cart, fav, buy]", "tmall": "['0', '1', '2', '3']"}


def _prepare(raw: Path, fmt: str, out: Path, *extra: str) -> Path:
    assert prepare.main(["--source", fmt, "--input", str(raw), "--out", str(out), "--quiet", "--logs.min_len", "40",
                         "--logs.max_len", "10000", "--logs.row_group_size", "512", "--logs.train_files", "1",
                         *extra]) == 0
    return out


@pytest.fixture(scope="module", params=["taobao", "tmall"])
def prepared(request, tmp_path_factory):
    """(format, raw log, dataset with every behavior in the histories, dataset under the paper's protocol)."""
    fmt = request.param
    tmp = tmp_path_factory.mktemp(f"side_{fmt}")
    raw = tmp / f"{fmt}.csv"
    assert make_raw_logs.main(["--format", fmt, "--rows", "12000", "--out", str(raw), "--mean-len", "60",
                               "--quiet"]) == 0
    return (fmt, raw, _prepare(raw, fmt, tmp / "all", "--logs.history_behaviors", ALL[fmt]),
            _prepare(raw, fmt, tmp / "clicks"))


def _split(root: Path, split: str) -> dict:
    return pq.read_table(schema.split_files(root, split)).to_pydict()


def test_histories_hold_every_behavior_type_with_one_value_each_and_no_negative_gap(prepared):
    fmt, _, everything, _ = prepared
    meta = schema.DatasetMeta.read(everything)
    assert meta.params["behavior_types"] == (["pv", "cart", "fav", "buy"] if fmt == "taobao" else ["0", "1", "2", "3"])
    for split in schema.SPLITS:
        rows = _split(everything, split)
        types = np.concatenate([np.asarray(t, dtype=np.int64) for t in rows["hist_btype"]])
        assert set(np.unique(types)) == {1, 2, 3, 4}
        side = ["hist_btype"] + (["hist_seller", "hist_brand"] if fmt == "tmall" else [])
        for column in side:
            assert [len(v) for v in rows[column]] == [len(v) for v in rows["hist_item"]]
        hist_ts = np.concatenate([np.asarray(t, dtype=np.int64) for t in rows["hist_ts"]])
        target_ts = np.repeat(rows["target_ts"], [len(t) for t in rows["hist_ts"]])
        assert (target_ts >= hist_ts).all()
        assert time_gap_buckets(hist_ts, target_ts).min() >= 1
        assert ParquetBatchReader(everything, split, 256, 10000).check_rows() == len(rows["label"])


def test_targets_and_positions_stay_clicks(prepared):
    """Val and test rows are in user order in both datasets: the same targets (by time), and each history
    filtered to its click type is the paper-protocol history (max_len is past every user's length)."""
    fmt, _, everything, clicks = prepared
    for split in ("val", "test"):
        got, paper = _split(everything, split), _split(clicks, split)
        assert got["label"] == paper["label"] and got["target_ts"] == paper["target_ts"]
        for ts, btype, paper_ts in zip(got["hist_ts"], got["hist_btype"], paper["hist_ts"]):
            assert [t for t, b in zip(ts, btype) if b == 1] == paper_ts
        assert all(set(b) == {1} for b in paper["hist_btype"])  # the paper's protocol: one type, the click
    assert json.loads((everything / "meta.json").read_text())["counts"] == \
        json.loads((clicks / "meta.json").read_text())["counts"]


def test_every_history_behavior_is_a_raw_row_of_its_type(prepared):
    """Ids map back to the raw log (every row is kept, so ids are ranks of the sorted raw ids): each history
    behavior (user, item, time, type name) is a row of the raw file."""
    fmt, raw, everything, _ = prepared
    if fmt == "tmall":  # mmdd dates and a header: the Taobao check covers the mapping; Tmall's seller/brand here
        table = pacsv.read_csv(raw, convert_options=pacsv.ConvertOptions(column_types={"brand_id": "string"}))
        brands = table["brand_id"].to_pylist()
        known = {b for b in brands if b}
        meta = schema.DatasetMeta.read(everything)
        assert "" in brands and meta.params["num_brands"] == len(known) + 2
        assert meta.params["num_sellers"] == len(set(table["seller_id"].to_pylist())) + 2
        rows = _split(everything, "train")
        assert 1 in {b for h in rows["hist_brand"] for b in h}  # the unknown brand
        return
    table = pacsv.read_csv(raw, read_options=pacsv.ReadOptions(
        column_names=["user", "item", "cate", "behavior", "ts"])).to_pydict()
    users, items = np.unique(table["user"]), np.unique(table["item"])
    rows_of_log = set(zip(table["user"], table["item"], table["ts"], table["behavior"]))
    names = schema.DatasetMeta.read(everything).params["behavior_types"]
    rows = _split(everything, "test")
    for user, hist_item, hist_ts, hist_btype in zip(rows["user_id"], rows["hist_item"], rows["hist_ts"],
                                                    rows["hist_btype"]):
        for item, ts, btype in zip(hist_item, hist_ts, hist_btype):
            assert (users[user - 1], items[item - 1], ts, names[btype - 1]) in rows_of_log
