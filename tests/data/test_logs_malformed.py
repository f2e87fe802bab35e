"""Bad input: each malformed case fails naming file, line and column, or is skipped and counted on request."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.config import ConfigError, LogsConfig
from dare_rec.data.logs import prepare_logs
from dare_rec.data.raw_logs import RawLogSpec, generate_raw_log
from dare_rec.data.schema import DataError, DatasetMeta
from dare_rec.pipelines import prepare

CFG = dict(min_len=5, max_len=4, train_start=3, train_stride=2, train_count=2, row_group_size=16, train_files=1)


def _good_lines(n: int = 12) -> list:
    """Two users with 6 pv clicks each (both kept at min_len 5) and a dropped filler user."""
    lines = [f"{11 + k // 6},{100 + k},{7 + k % 3},pv,{1_511_500_000 + k}" for k in range(n)]
    return lines + [f"99,{900 + k},8,pv,5" for k in range(3)]


def _taobao(tmp_path: Path, bad: str, at: int = 6) -> Path:
    lines = _good_lines()
    lines.insert(at - 1, bad)  # the bad row becomes line `at`
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(path: Path, tmp_path: Path, source: str = "taobao", **overrides):
    return prepare_logs(source, path, tmp_path / "out", LogsConfig(**{**CFG, **overrides}), progress=False)


@pytest.mark.parametrize("bad, column_text", [
    ("11,200,7,pv", "got 4: column 5 ('timestamp') is missing"),
    ("11,200,7,pv,1511500000,3", "got 6: column 6 is unexpected"),
    ("", "got an empty line"),
])
def test_wrong_column_count(tmp_path, bad, column_text):
    path = _taobao(tmp_path, bad)
    with pytest.raises(DataError) as e:
        _run(path, tmp_path)
    assert str(e.value).startswith(f"{path}: line 6")
    assert "expected 5 columns" in str(e.value) and column_text in str(e.value)
    assert "--logs.skip_malformed" in str(e.value)


@pytest.mark.parametrize("bad, column", [
    ("11,abc,7,pv,1511500000", "column 2 ('item_id'): expected an integer, got 'abc'"),
    ("x11,200,7,pv,1511500000", "column 1 ('user_id'): expected an integer, got 'x11'"),
    ("11,200,7,pv,15115e5", "column 5 ('timestamp'): expected an integer, got '15115e5'"),
    ("11,200,,pv,1511500000", "column 3 ('category_id'): expected an integer, got ''"),
    ("11,99999999999999999999,7,pv,1", "column 2 ('item_id'): expected an integer, got '99999999999999999999'"),
])
def test_non_integer_id(tmp_path, bad, column):
    path = _taobao(tmp_path, bad)
    with pytest.raises(DataError, match="line 6, ") as e:
        _run(path, tmp_path)
    assert str(e.value).startswith(f"{path}: line 6, {column}")


def test_unknown_behavior(tmp_path):
    path = _taobao(tmp_path, "11,200,7,click,1511500000")
    with pytest.raises(DataError) as e:
        _run(path, tmp_path)
    assert str(e.value).startswith(f"{path}: line 6, column 4 ('behavior_type'): unknown behavior value 'click'")
    assert "['buy', 'cart', 'fav', 'pv']" in str(e.value)


def test_first_bad_row_is_reported(tmp_path):
    """Several problems: the error names the earliest line, whatever its kind."""
    lines = _good_lines()
    lines[8] = "11,200,7,click,1511500000"
    lines[3] = "11,200,7"
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"^{path}: line 4: expected 5 columns"):
        _run(path, tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"^{path}: file is empty$"):
        _run(path, tmp_path)


def test_header_only(tmp_path):
    path = tmp_path / "user_log_format1.csv"
    path.write_text("user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n")
    with pytest.raises(DataError, match=f"^{path}: no data rows after the header$"):
        _run(path, tmp_path, source="tmall")


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=f"^{path}: file does not exist$"):
        _run(path, tmp_path)
    with pytest.raises(SystemExit) as e:  # the CLI names the flag
        prepare.main(["--source", "taobao", "--input", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert e.value.code == 2
    assert f"error: --input: file '{path}' does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare.main(["--source", "tmall", "--out", str(tmp_path / "out")])
    assert "--input: required for --source tmall" in capsys.readouterr().err


def test_skip_and_count(tmp_path, capsys):
    """Opt-in: every malformed row skipped, counted per reason in meta.json and in the printed summary."""
    lines = _good_lines()
    lines[1:1] = ["11,200,7,pv", "11,abc,7,pv,1511500000", "", "11,200,7,click,1511500000",
                  "11,200,7,pv,1511500000,3", "zz,200,7,click,1"]  # the last one counts once (non_integer)
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = prepare.main(["--source", "taobao", "--input", str(path), "--out", str(out), "--quiet",
                         "--logs.skip_malformed", "true", "--logs.min_len", "5", "--logs.max_len", "4",
                         "--logs.train_count", "2", "--logs.train_stride", "2"])
    assert code == 0
    params = DatasetMeta.read(out).params
    assert params["skipped_rows"] == {"non_integer": 2, "unknown_behavior": 1, "wrong_column_count": 3}
    assert params["rows"] == len(lines)
    assert params["skipped_examples"]["wrong_column_count"].startswith(f"{path}: line 2: expected 5 columns")
    assert params["skipped_examples"]["non_integer"].startswith(f"{path}: line 3, column 2 ('item_id')")
    printed = capsys.readouterr().out
    assert "skipped rows     non_integer 2   unknown_behavior 1   wrong_column_count 3" in printed
    # The good rows give exactly what a clean file gives.
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join(_good_lines()) + "\n")
    meta, _ = prepare_logs("taobao", clean, tmp_path / "clean_out", LogsConfig(**CFG), progress=False)
    assert meta.counts == DatasetMeta.read(out).counts


def test_line_numbers_across_blocks(tmp_path):
    """A bad row deep in a multi-block file (1 MiB blocks) is reported at its exact line."""
    path = generate_raw_log(RawLogSpec("taobao", 100_000, seed=2), tmp_path / "tb.csv", progress=False)
    lines = path.read_bytes().split(b"\n")
    lines[87_654] = b"1,2,3,pv,notatime"  # line 87,655
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=f"^{path}: line 87655, column 5 \\('timestamp'\\): expected an integer, "
                                        f"got 'notatime'"):
        _run(path, tmp_path, block_mb=1)
    meta, summary = _run(path, tmp_path, block_mb=1, skip_malformed=True, min_len=210)
    assert summary["skipped_rows"] == {"non_integer": 1} and summary["rows"] == 100_000


def test_tmall_bad_header_and_bad_date(tmp_path):
    path = tmp_path / "user_log_format1.csv"
    path.write_text("user,item,cat,seller,brand,time,action\n1,2,3,4,5,511,0\n")
    with pytest.raises(DataError, match="line 1: expected the Tmall header 'user_id,item_id,cat_id,"):
        _run(path, tmp_path, source="tmall")
    header = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"
    rows = [f"1,{k},3,4,,{511 + k},0" for k in range(8)]
    path.write_text(header + "\n".join(rows[:4] + ["1,9,3,4,5,1341,0"] + rows[4:]) + "\n")
    with pytest.raises(DataError, match=f"^{path}: line 6, column 6 \\('time_stamp'\\): 1341 is not a mmdd date"):
        _run(path, tmp_path, source="tmall")
    path.write_text(header + "\n".join(rows[:4] + ["1,9,3,4,5,1011,7"] + rows[4:]) + "\n")
    with pytest.raises(DataError, match=f"^{path}: line 6, column 7 \\('action_type'\\): unknown behavior value 7"):
        _run(path, tmp_path, source="tmall")


def test_events_csv_columns_and_known_behaviors(tmp_path):
    path = tmp_path / "events.csv"
    body = [f"{1 + k // 6};{100 + k};{k % 3};{10 + k};click" for k in range(12)] + ["9;999;1;5;click"]
    path.write_text("uid;iid;cid;ts;kind\n" + "\n".join(body[:7] + ["1;5;1;20;teleport"] + body[7:]) + "\n")
    events = dict(CFG, event_delimiter=";", event_user_col="uid", event_item_col="iid", event_category_col="cid",
                  event_timestamp_col="ts", event_behavior_col="kind", behaviors=["click"])
    with pytest.raises(DataError, match="line 1: no column 'user_id' \\(logs.event_user_col\\)"):
        _run(path, tmp_path, source="events", **CFG)
    meta, _ = _run(path, tmp_path, source="events", **events)  # any behavior value is legal by default
    assert meta.counts["test"] == 2 * 3
    with pytest.raises(DataError, match=f"^{path}: line 9, column 5 \\('kind'\\): unknown behavior value "
                                        f"'teleport'; expected one of \\['buy', 'click'\\]"):
        _run(path, tmp_path, source="events", **events, event_known_behaviors=["click", "buy"])
    with pytest.raises(ConfigError, match="logs.behaviors: \\['view'\\] are not taobao behavior_type values"):
        _run(path, tmp_path, source="taobao", behaviors=["view"])


def test_events_parquet_null_and_text_ids(tmp_path):
    users = [1] * 6 + [2] * 6 + [9]
    table = pa.table({
        "user_id": pa.array(users, pa.int64()),
        "item_id": pa.array([str(100 + k) for k in range(12)] + ["x"], pa.string()),
        "category_id": pa.array([1] * 13, pa.int32()),
        "timestamp": pa.array([10 + k for k in range(12)] + [None], pa.int64()),
    })
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    cfg = dict(CFG, event_behavior_col=None)
    with pytest.raises(DataError, match=f"^{path}: row 13, column 2 \\('item_id'\\): expected an integer, got 'x'"):
        _run(path, tmp_path, source="events", **cfg)
    meta, summary = _run(path, tmp_path, source="events", skip_malformed=True, **cfg)
    assert summary["skipped_rows"] == {"non_integer": 1}  # one row: the item column is reported first
    assert meta.counts["test"] == 2 * 3
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["params"]["skipped_rows"] == {"non_integer": 1}
