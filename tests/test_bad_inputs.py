"""Bad inputs, table-driven: every case runs a job's ``main(argv)`` in this process and must exit with status 2
and one ``error:`` line on stderr, no traceback, that names where the problem is (the file, and the line,
row group, row or column where there is one; the field for a configuration value).

The classes: configuration (YAML files and overrides), raw logs for ``dare-rec prepare`` (CSV rows, files that
are not CSV text, Tmall and event logs), ``--out`` folders prepare must not replace, datasets for ``dare-rec
train`` (meta.json, files, schema, values of every split: val and test are checked before the first step),
and checkpoints for ``dare-rec evaluate`` and resume (damaged files, refused resumes). Inputs are tiny (the
session's ``tiny_data`` and ``tiny_run``), so the whole table runs in well under two minutes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.pipelines import evaluate, prepare, train
from tests.conftest import tiny_run_args

Argv = List[str]
Expected = List[str]


@dataclass
class Context:
    tmp: Path
    request: pytest.FixtureRequest

    @property
    def data(self) -> Path:
        return self.request.getfixturevalue("tiny_data")

    @property
    def side_data(self) -> Path:
        return self.request.getfixturevalue("tiny_side_data")

    @property
    def objective_data(self) -> Path:
        return self.request.getfixturevalue("tiny_objective_data")

    @property
    def run(self) -> Path:
        return self.request.getfixturevalue("tiny_run")


@dataclass(frozen=True)
class Case:
    """A job (``prepare``, ``train`` or ``evaluate``) and a function that builds its input under a fresh folder
    and returns the job's argv and the texts its error line must contain."""

    id: str
    job: str
    make: Callable[[Context], Tuple[Argv, Expected]]


JOBS = {"prepare": prepare.main, "train": train.main, "evaluate": evaluate.main}

# ---------------------------------------------------------------------------------------------------------
# Configuration: a --config file (the synthetic prepare reads the whole config first, so nothing else runs)
# ---------------------------------------------------------------------------------------------------------


def config_file(text: str | bytes, *expected: str,
                names_file: bool = True) -> Callable[[Context], Tuple[Argv, Expected]]:
    """A --config file with ``text``; a syntax error names the file, a bad value names the field."""
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        path = ctx.tmp / "preset.yaml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        argv = ["--source", "synthetic", "--config", str(path), "--out", str(ctx.tmp / "out")]
        return argv, [str(path)] * names_file + list(expected)
    return make


def overrides(*argv: str, expected: str) -> Callable[[Context], Tuple[Argv, Expected]]:
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        return ["--source", "synthetic", "--out", str(ctx.tmp / "out"), *argv], [expected]
    return make


CONFIG_CASES = [
    Case("yaml-unclosed-bracket", "prepare", config_file("data:\n  path: [unclosed\n", "line 3, column 1",
                                                          "invalid YAML")),
    Case("yaml-bad-indentation", "prepare", config_file("model:\n  d_att: 8\n   top_k: 3\n", "line 3, column 9")),
    Case("yaml-tab-indentation", "prepare", config_file("model:\n\td_att: 8\n", "line 2, column 1")),
    Case("yaml-nested-colon", "prepare", config_file("model: d_att: 8\n", "line 1, column 13")),
    Case("yaml-unclosed-mapping", "prepare", config_file("model: {d_att: 8\n", "line 2, column 1")),
    Case("yaml-not-utf8", "prepare", config_file(b"model:\n  d_att: \xff\n", "not UTF-8")),
    Case("yaml-not-a-mapping", "prepare", config_file("- model\n- data\n", "must hold a mapping")),
    Case("yaml-unknown-section", "prepare", config_file("modle:\n  d_att: 8\n", "modle: unknown field",
                                                         names_file=False)),
    Case("yaml-wrong-type", "prepare", config_file("model:\n  d_att: lots\n", "model.d_att", names_file=False)),
    Case("config-file-missing", "prepare", lambda ctx: (
        ["--source", "synthetic", "--config", str(ctx.tmp / "nope.yaml")], [str(ctx.tmp / "nope.yaml"),
                                                                            "does not exist"])),
    Case("override-invalid-yaml", "prepare", overrides("--model.mlp_hidden", "[32,", expected="model.mlp_hidden")),
    Case("override-unknown-field", "prepare", overrides("--model.colour", "red", expected="model.colour")),
    Case("override-not-an-integer", "prepare", overrides("--model.d_att", "abc", expected="model.d_att")),
    Case("override-zero-d_att", "prepare", overrides("--model.d_att", "0", expected="model.d_att: must be > 0")),
    Case("override-top_k-over-max_len", "prepare", overrides("--model.top_k", "999", expected="model.top_k")),
    Case("override-unknown-variant", "prepare", overrides("--model.variant", "sim", expected="model.variant")),
    Case("override-missing-value", "prepare", overrides("--model.d_att", expected="model.d_att: missing value")),
    Case("override-not-dotted", "prepare", overrides("d_att", "3", expected="'d_att'")),
    Case("override-objectives-without-positions", "prepare", overrides(
        "--model.variant", "din", "--model.position_objectives", "2",
        expected="model.position_objectives: 2 needs positions")),
    Case("override-max_len-over-the-limit", "prepare", overrides("--data.max_len", "20000",
                                                                 expected="data.max_len: must be <= 10,000")),
    Case("override-logs-max_len-over-the-limit", "prepare", overrides(
        "--logs.max_len", "10001", expected="logs.max_len: must be <= 10,000")),
]

# ---------------------------------------------------------------------------------------------------------
# Raw logs for prepare: the bad row is line 6 of an otherwise good Taobao file
# ---------------------------------------------------------------------------------------------------------

LOGS = ["--logs.min_len", "5", "--logs.max_len", "4", "--logs.train_start", "3", "--logs.train_stride", "2",
        "--logs.train_count", "2", "--logs.row_group_size", "16", "--logs.train_files", "1"]
TMALL_HEADER = b"user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"


def taobao_lines() -> List[bytes]:
    """Two users with 6 pv clicks each (kept at min_len 5) and a user with 3 (dropped)."""
    lines = [f"{11 + k // 6},{100 + k},{7 + k % 3},pv,{1_511_500_000 + k}".encode() for k in range(12)]
    return lines + [f"99,{900 + k},8,pv,5".encode() for k in range(3)]


def taobao_with(bad: bytes) -> bytes:
    lines = taobao_lines()
    lines.insert(5, bad)
    return b"\n".join(lines) + b"\n"


def raw(name: str, content: bytes | Callable[[Path], None], *expected: str, source: str = "taobao",
        extra: Tuple[str, ...] = ()) -> Callable[[Context], Tuple[Argv, Expected]]:
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        path = ctx.tmp / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        argv = ["--source", source, "--input", str(path), "--out", str(ctx.tmp / "out"), "--quiet", *LOGS, *extra]
        return argv, [str(path), *expected]
    return make


def zipped(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("UserBehavior.csv", b"\n".join(taobao_lines()) + b"\n")


def parquet_log(path: Path) -> None:
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [3, 4]}), path)


def events_parquet(path: Path) -> None:
    pq.write_table(pa.table({
        "user_id": pa.array([1] * 6 + [2] * 6 + [9], pa.int64()),
        "item_id": pa.array([str(100 + k) for k in range(12)] + ["x"], pa.string()),
        "timestamp": pa.array(list(range(10, 23)), pa.int64()),
    }), path)


EVENTS = ("--logs.event_category_col", "null", "--logs.event_behavior_col", "null")

RAW_LOG_CASES = [
    Case("csv-too-few-columns", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,7,pv"),
                                               "line 6: expected 5 columns", "column 5 ('timestamp') is missing")),
    Case("csv-too-many-columns", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,7,pv,1511500000,3"),
                                                "line 6: expected 5 columns", "column 6 is unexpected")),
    Case("csv-empty-line", "prepare", raw("UserBehavior.csv", taobao_with(b""), "line 6", "an empty line")),
    Case("csv-text-item-id", "prepare", raw("UserBehavior.csv", taobao_with(b"11,abc,7,pv,1511500000"),
                                            "line 6, column 2 ('item_id')")),
    Case("csv-text-user-id", "prepare", raw("UserBehavior.csv", taobao_with(b"x11,200,7,pv,1511500000"),
                                            "line 6, column 1 ('user_id')")),
    Case("csv-float-timestamp", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,7,pv,15115e5"),
                                               "line 6, column 5 ('timestamp')")),
    Case("csv-empty-category", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,,pv,1511500000"),
                                              "line 6, column 3 ('category_id')")),
    Case("csv-int64-overflow", "prepare", raw("UserBehavior.csv", taobao_with(b"11,99999999999999999999,7,pv,1"),
                                              "line 6, column 2 ('item_id')")),
    Case("csv-unknown-behavior", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,7,click,1511500000"),
                                                "line 6, column 4 ('behavior_type')")),
    Case("csv-not-utf8-id", "prepare", raw("UserBehavior.csv", taobao_with(b"11,2\xff0,7,pv,1511500000"),
                                           "line 6, column 2 ('item_id')", "not UTF-8")),
    Case("csv-not-utf8-behavior", "prepare", raw("UserBehavior.csv", taobao_with(b"11,200,7,p\xe9v,1511500000"),
                                                 "line 6, column 4 ('behavior_type')", "not UTF-8")),
    Case("csv-is-a-zip", "prepare", raw("UserBehavior.csv.zip", zipped, "a zip archive")),
    Case("csv-is-gzip", "prepare", raw("UserBehavior.csv.gz", gzip.compress(b"\n".join(taobao_lines())),
                                       "gzip")),
    Case("csv-is-parquet", "prepare", raw("UserBehavior.parquet", parquet_log, "a Parquet file")),
    Case("csv-random-bytes", "prepare", raw("UserBehavior.csv", bytes(range(256)) * 64, "line 1", "binary data")),
    Case("csv-empty-file", "prepare", raw("UserBehavior.csv", b"", "file is empty")),
    Case("csv-no-user-reaches-min-len", "prepare", raw("UserBehavior.csv", b"\n".join(taobao_lines()[:4]) + b"\n",
                                                       "logs.min_len")),
    Case("input-missing", "prepare", lambda ctx: (
        ["--source", "taobao", "--input", str(ctx.tmp / "nope.csv"), "--out", str(ctx.tmp / "out")],
        [str(ctx.tmp / "nope.csv"), "does not exist"])),
    Case("input-is-a-folder", "prepare", lambda ctx: (
        ["--source", "taobao", "--input", str(ctx.tmp), "--out", str(ctx.tmp / "out")], [str(ctx.tmp),
                                                                                          "is not a file"])),
    Case("input-missing-flag", "prepare", lambda ctx: (["--source", "tmall", "--out", str(ctx.tmp / "o")],
                                                       ["--input: required for --source tmall"])),
    Case("tmall-bad-header", "prepare", raw("user_log_format1.csv", b"user,item,cat,seller,brand,time,action\n1,2\n",
                                            "line 1", "Tmall header", source="tmall")),
    Case("tmall-header-only", "prepare", raw("user_log_format1.csv", TMALL_HEADER, "no data rows", source="tmall")),
    Case("tmall-bad-date", "prepare", raw("user_log_format1.csv", TMALL_HEADER + b"1,2,3,4,5,511,0\n1,9,3,4,5,1341,0\n",
                                          "line 3, column 6 ('time_stamp')", source="tmall")),
    Case("tmall-unknown-action", "prepare", raw("user_log_format1.csv", TMALL_HEADER + b"1,2,3,4,5,511,7\n",
                                                "line 2, column 7 ('action_type')", source="tmall")),
    Case("events-missing-column", "prepare", raw("events.csv", b"uid,iid,ts\n1,2,3\n", "line 1",
                                                 "no column 'user_id'", source="events")),
    Case("events-parquet-text-id", "prepare", raw("events.parquet", events_parquet,
                                                  "row 13, column 2 ('item_id')", source="events", extra=EVENTS)),
    Case("events-unreadable-parquet", "prepare", raw("events.parquet", b"PAR1 not really", "not a readable Parquet",
                                                     source="events")),
    Case("logs-unknown-behavior-kept", "prepare", lambda ctx: (
        raw("UserBehavior.csv", taobao_with(b""), extra=("--logs.behaviors", "[view]"))(ctx)[0],
        ["logs.behaviors: ['view']"])),
    Case("logs-history-behaviors-without-the-clicks", "prepare", lambda ctx: (
        raw("UserBehavior.csv", taobao_with(b""), extra=("--logs.history_behaviors", "[cart, fav]"))(ctx)[0],
        ["logs.history_behaviors: must include the click behaviors ['pv']"])),
    Case("logs-history-behaviors-missing-a-listed-click", "prepare", lambda ctx: (
        raw("UserBehavior.csv", taobao_with(b""), extra=("--logs.behaviors", "[pv, buy]", "--logs.history_behaviors",
                                                         "[pv, cart]"))(ctx)[0],
        ["logs.history_behaviors: must include the click behaviors logs.behaviors; ['buy'] missing"])),
    Case("logs-history-behaviors-unknown-value", "prepare", lambda ctx: (
        raw("UserBehavior.csv", taobao_with(b""), extra=("--logs.history_behaviors", "[pv, click]"))(ctx)[0],
        ["logs.history_behaviors: ['click'] are not taobao behavior_type values"])),
    Case("synthetic-with-input", "prepare", lambda ctx: (
        ["--source", "synthetic", "--input", str(ctx.tmp), "--out", str(ctx.tmp / "out")], ["--input"])),
]

# ---------------------------------------------------------------------------------------------------------
# --out folders prepare must not replace
# ---------------------------------------------------------------------------------------------------------


def out_folder(setup: Callable[[Context, Path], Path]) -> Callable[[Context], Tuple[Argv, Expected]]:
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        log = ctx.tmp / "UserBehavior.csv"
        log.write_bytes(b"\n".join(taobao_lines()) + b"\n")
        out = ctx.tmp / "out"
        named = setup(ctx, out)
        return ["--source", "taobao", "--input", str(log), "--out", str(out), "--quiet", *LOGS], [str(named)]
    return make


def a_file(ctx: Context, out: Path) -> Path:
    out.write_text("notes")
    return out


def a_foreign_folder(ctx: Context, out: Path) -> Path:
    (out / "photos").mkdir(parents=True)
    return out


def dataset_with(name: str) -> Callable[[Context, Path], Path]:
    def setup(ctx: Context, out: Path) -> Path:
        shutil.copytree(ctx.data, out)
        (out / name).write_bytes(b"mine")
        return out / name
    return setup


OUT_CASES = [
    Case("out-is-a-file", "prepare", out_folder(a_file)),
    Case("out-is-a-foreign-folder", "prepare", out_folder(a_foreign_folder)),
    Case("out-dataset-with-a-user-file", "prepare", out_folder(dataset_with("train/mine.txt"))),
    Case("out-dataset-with-an-unlisted-part", "prepare", out_folder(dataset_with("train/old-part.parquet"))),
]

# ---------------------------------------------------------------------------------------------------------
# Datasets for train: a copy of the tiny dataset with one thing changed
# ---------------------------------------------------------------------------------------------------------


def dataset(change: Callable[[Path], List[str]], *extra: str,
            source: str = "data") -> Callable[[Context], Tuple[Argv, Expected]]:
    """A copy of the tiny dataset (``source``: the Context attribute holding it) changed by ``change``."""
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        root = ctx.tmp / "data"
        shutil.copytree(getattr(ctx, source), root)
        expected = change(root)
        return tiny_run_args(root, ctx.tmp / "run", *extra), expected
    return make


def side_dataset(change: Callable[[Path], List[str]], *extra: str) -> Callable[[Context], Tuple[Argv, Expected]]:
    """Like :func:`dataset`, on the tiny dataset with side columns (val row 300 has 30 behaviors)."""
    return dataset(change, *extra, source="side_data")


# The reader checks the side columns the model reads (dare_rec/data/parquet.py).
BTYPE = ("--model.side_fields", "[btype]")
GAP = ("--model.time_gap", "true")
OBJECTIVES = ("--model.position_objectives", "2")


def drop_param(name: str) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        meta = json.loads((root / "meta.json").read_text())
        del meta["params"][name]
        (root / "meta.json").write_text(json.dumps(meta))
        return [str(root / "meta.json"), f"params {name!r}"]
    return change


def edit_meta(**fields) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        meta = json.loads((root / "meta.json").read_text())
        meta.update(fields)
        (root / "meta.json").write_text(json.dumps(meta))
        return [str(root / "meta.json"), next(iter(fields))]
    return change


def write_meta(content: bytes, *expected: str) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        (root / "meta.json").write_bytes(content)
        return [str(root / "meta.json"), *expected]
    return change


def split_file(root: Path, split: str) -> Path:
    return schema.split_files(root, split)[0]


def rewrite(split: str, mutate: Callable[[pa.Table], pa.Table], *expected: str) -> Callable[[Path], List[str]]:
    """Rewrites the split's first file with ``mutate``'s table (row groups of 256 rows, as written)."""
    def change(root: Path) -> List[str]:
        path = split_file(root, split)
        pq.write_table(mutate(pq.read_table(path)), path, row_group_size=256)
        return [str(path), *expected]
    return change


def set_value(column: str, row: int, value) -> Callable[[pa.Table], pa.Table]:
    def mutate(table: pa.Table) -> pa.Table:
        values = table[column].to_pylist()
        values[row] = value
        field = pa.field(column, table.schema.field(column).type, nullable=value is None)
        return table.set_column(table.schema.get_field_index(column), field, pa.array(values, field.type))
    return mutate


def every_label(value: int) -> Callable[[pa.Table], pa.Table]:
    def mutate(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index(schema.LABEL)
        return table.set_column(index, table.schema.field(index), pa.array([value] * table.num_rows, pa.int8()))
    return mutate


def set_behavior(column: str, position: int, value, at_least: int = 3) -> Callable[[pa.Table], pa.Table]:
    """Changes behavior ``position`` of the history of row 300's first successor with a long enough history."""
    def mutate(table: pa.Table) -> pa.Table:
        values = table[column].to_pylist()
        row = next(i for i in range(300, len(values)) if len(values[i]) >= at_least)
        values[row] = values[row][:position] + [value] + values[row][position + 1:]
        field = pa.field(column, table.schema.field(column).type, nullable=False)
        return table.set_column(table.schema.get_field_index(column), field, pa.array(values, field.type))
    return mutate


def set_in_list(column: str, row: int, position: int, value) -> Callable[[pa.Table], pa.Table]:
    """Changes value ``position`` of ``row``'s list in ``column``."""
    def mutate(table: pa.Table) -> pa.Table:
        values = table[column].to_pylist()
        values[row][position] = value
        index = table.schema.get_field_index(column)
        return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    return mutate


def drop_last_in_list(column: str, row: int) -> Callable[[pa.Table], pa.Table]:
    """Drops the last value of ``row``'s list in ``column`` (one side value fewer than behaviors)."""
    def mutate(table: pa.Table) -> pa.Table:
        values = table[column].to_pylist()
        values[row] = values[row][:-1]
        index = table.schema.get_field_index(column)
        return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    return mutate


def longer_history(row: int, length: int) -> Callable[[pa.Table], pa.Table]:
    """Gives ``row`` a history of ``length`` behaviors in every history column (their lengths stay equal)."""
    def mutate(table: pa.Table) -> pa.Table:
        for column in [c for c in table.column_names if c.startswith("hist_")]:
            values = table[column].to_pylist()
            values[row] = [values[row][0] if values[row] else 1] * length
            index = table.schema.get_field_index(column)
            table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
        return table
    return mutate


def edit_bytes(split: str, edit: Callable[[bytearray, pq.FileMetaData], bytearray],
               *expected: str) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        path = split_file(root, split)
        footer = pq.ParquetFile(path).metadata
        path.write_bytes(bytes(edit(bytearray(path.read_bytes()), footer)))
        return [str(path), *expected]
    return change


def corrupt_page(data: bytearray, footer: pq.FileMetaData) -> bytearray:
    """Overwrites the header of hist_item's first data page in row group 1."""
    names = [footer.schema.column(i).path.split(".")[0] for i in range(footer.num_columns)]
    offset = footer.row_group(1).column(names.index("hist_item")).data_page_offset
    data[offset:offset + 48] = b"\xfe" * 48
    return data


def garble_footer(data: bytearray, footer: pq.FileMetaData) -> bytearray:
    data[-200:-8] = b"\xff" * 192
    return data


def add_file(split: str) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        extra = root / split / "part-00009.parquet"
        shutil.copy(split_file(root, split), extra)
        return [str(extra), "not listed in meta.json"]
    return change


def remove_split_file(split: str) -> Callable[[Path], List[str]]:
    def change(root: Path) -> List[str]:
        split_file(root, split).unlink()
        return [str(root / split)]
    return change


def empty_val(root: Path) -> List[str]:
    path = split_file(root, "val")
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    meta = json.loads((root / "meta.json").read_text())
    meta["counts"]["val"] = 0
    (root / "meta.json").write_text(json.dumps(meta))
    return [str(root / "val"), "no rows"]


def fewer_rows(root: Path) -> List[str]:
    path = split_file(root, "test")
    pq.write_table(pq.read_table(path).slice(0, 800), path, row_group_size=256)
    return [str(root / "test"), "800 rows but meta.json counts 900"]


def no_meta(root: Path) -> List[str]:
    (root / "meta.json").unlink()
    return [str(root / "meta.json"), "missing"]


def small_vocabulary(root: Path) -> List[str]:
    """meta.json says 10 items: the first val row's target is past it (found before training starts)."""
    edit_meta(num_items=10)(root)
    return [str(split_file(root, "val")), "row 0", "column 'target_item' holds id", "[1, 9]"]


def no_dataset(root: Path) -> List[str]:
    shutil.rmtree(root)
    return [str(root), "does not exist"]


def drop_column(name: str) -> Callable[[pa.Table], pa.Table]:
    return lambda table: table.drop_columns([name])


VALUE_AT_300 = ("row group 1", "row 300")
DATASET_CASES = [
    Case("dataset-missing", "train", dataset(no_dataset)),
    Case("meta-missing", "train", dataset(no_meta)),
    Case("meta-not-json", "train", dataset(write_meta(b"{\"source\": ", "not a valid meta.json"))),
    Case("meta-not-utf8", "train", dataset(write_meta(b"{\"source\": \"\xff\"}", "not a valid meta.json"))),
    Case("meta-a-list", "train", dataset(write_meta(b"[1, 2]", "not a valid meta.json"))),
    Case("meta-unknown-field", "train", dataset(edit_meta(colour="red"))),
    Case("meta-num-items-text", "train", dataset(edit_meta(num_items="lots"))),
    Case("meta-num-categories-negative", "train", dataset(edit_meta(num_categories=-1))),
    Case("meta-counts-a-list", "train", dataset(edit_meta(counts=[1, 2, 3]))),
    Case("meta-columns-a-string", "train", dataset(edit_meta(columns="user_id"))),
    Case("meta-files-wrong-shape", "train", dataset(edit_meta(files={"train": ["part-00000.parquet"]}))),
    Case("meta-schema-version", "train", dataset(edit_meta(schema_version=99))),
    Case("meta-vocabulary-too-small", "train", dataset(small_vocabulary)),
    Case("val-null-user", "train", dataset(rewrite("val", set_value("user_id", 300, None), *VALUE_AT_300,
                                                   "column 'user_id' is null"))),
    Case("val-null-label", "train", dataset(rewrite("val", set_value("label", 300, None), *VALUE_AT_300,
                                                    "column 'label'"))),
    Case("val-null-in-history", "train", dataset(rewrite("val", set_behavior("hist_cate", 1, None),
                                                         "row group 1", "column 'hist_cate' holds a null"))),
    Case("val-history-id-0", "train", dataset(rewrite("val", set_behavior("hist_item", 2, 0), "row group 1",
                                                      "column 'hist_item' holds id 0"))),
    Case("val-history-id-negative", "train", dataset(rewrite("val", set_behavior("hist_cate", 2, -3), "row group 1",
                                                             "column 'hist_cate' holds id -3"))),
    Case("val-history-id-past-vocabulary", "train", dataset(rewrite("val", set_behavior("hist_item", 2, 501),
                                                                    "row group 1", "holds id 501"))),
    Case("val-target-past-vocabulary", "train", dataset(rewrite("val", set_value("target_item", 300, 10**6),
                                                                *VALUE_AT_300, "column 'target_item'"))),
    Case("val-target-category-0", "train", dataset(rewrite("val", set_value("target_cate", 7, 0), "row group 0",
                                                           "row 7", "column 'target_cate'"))),
    Case("val-label-2", "train", dataset(rewrite("val", set_value("label", 600, 2), "row group 2", "row 600",
                                                 "column 'label' is 2"))),
    Case("val-label-negative", "train", dataset(rewrite("val", set_value("label", 600, -1), "row 600",
                                                        "column 'label' is -1"))),
    Case("val-click-prob-nan", "train", dataset(rewrite("val", set_value("click_prob", 20, float("nan")), "row 20",
                                                        "column 'click_prob'"))),
    Case("val-click-prob-inf", "train", dataset(rewrite("val", set_value("click_prob", 20, float("inf")), "row 20",
                                                        "column 'click_prob'"))),
    Case("val-click-prob-above-1", "train", dataset(rewrite("val", set_value("click_prob", 20, 1.5), "row 20",
                                                            "column 'click_prob' is 1.5"))),
    Case("val-history-lengths-differ", "train", dataset(rewrite("val", set_behavior("hist_cate", 99, 1, at_least=0),
                                                                "row group 1", "but hist_cate has"))),
    Case("val-history-longer-than-max_history", "train", dataset(rewrite("val", longer_history(300, 41),
                                                                         *VALUE_AT_300, "41 behaviors",
                                                                         "max_history 40"))),
    Case("val-missing-required-column", "train", dataset(rewrite("val", drop_column("label"),
                                                                 "missing required column 'label'"))),
    Case("val-missing-listed-column", "train", dataset(rewrite("val", drop_column("hist_ts"),
                                                               "missing column 'hist_ts'"))),
    Case("val-extra-column", "train", dataset(rewrite("val", lambda t: t.append_column(
        "weight", pa.array([1.0] * t.num_rows)), "column 'weight'"))),
    Case("val-truncated", "train", dataset(edit_bytes("val", lambda data, md: data[:len(data) // 2],
                                                      "not a readable Parquet file"))),
    Case("val-corrupt-footer", "train", dataset(edit_bytes("val", garble_footer, "not a readable Parquet file"))),
    Case("val-corrupt-page", "train", dataset(edit_bytes("val", corrupt_page, "row group 1",
                                                         "column 'hist_item' cannot be decoded"))),
    Case("val-unlisted-file", "train", dataset(add_file("val"))),
    Case("val-empty", "train", dataset(empty_val)),
    Case("val-changed-content-with-hash-check", "train", dataset(
        rewrite("val", set_value("label", 3, 1), "sha256"), "--data.verify_hashes", "true")),
    Case("val-unknown-behavior-type", "train", side_dataset(rewrite(
        "val", set_in_list("hist_btype", 300, 2, 9), *VALUE_AT_300, "column 'hist_btype' holds id 9",
        "an unknown behavior type"), *BTYPE)),
    Case("val-negative-time-gap", "train", side_dataset(rewrite(
        "val", set_in_list("hist_ts", 300, 29, 10**12), *VALUE_AT_300, "column 'hist_ts' holds 1000000000000",
        "negative time gap"), *GAP)),
    Case("val-side-list-shorter-than-history", "train", side_dataset(rewrite(
        "val", drop_last_in_list("hist_btype", 300), *VALUE_AT_300,
        "column 'hist_btype' has 29 values but hist_item has 30 behaviors"), *BTYPE)),
    Case("meta-behavior-types-missing", "train", side_dataset(drop_param("behavior_types"))),
    Case("val-objective-past-position-objectives", "train", dataset(rewrite(
        "val", set_value("target_objective", 300, 3), *VALUE_AT_300,
        "column 'target_objective' holds objective 3 outside [1, 2] (model.position_objectives 2)"),
        *OBJECTIVES, source="objective_data")),
    Case("val-objective-0", "train", dataset(rewrite(
        "val", set_value("target_objective", 7, 0), "row group 0", "row 7",
        "column 'target_objective' holds objective 0"), *OBJECTIVES, source="objective_data")),
    Case("val-null-objective", "train", dataset(rewrite(
        "val", set_value("target_objective", 300, None), *VALUE_AT_300, "column 'target_objective' is null"),
        *OBJECTIVES, source="objective_data")),
    Case("objectives-on-a-dataset-without-them", "train", dataset(
        lambda root: [str(root), "model.position_objectives 2 needs column(s) ['target_objective']"],
        *OBJECTIVES)),
    Case("test-label-2", "train", dataset(rewrite("test", set_value("label", 600, 2), "row group 2", "row 600",
                                                  "column 'label' is 2"))),
    Case("test-target-past-vocabulary", "train", dataset(rewrite("test", set_value("target_item", 5, 10**6),
                                                                 "row group 0", "row 5", "column 'target_item'"))),
    Case("test-null-click-prob", "train", dataset(rewrite("test", set_value("click_prob", 300, None),
                                                          *VALUE_AT_300, "column 'click_prob' is null"))),
    Case("test-corrupt-page", "train", dataset(edit_bytes("test", corrupt_page, "row group 1",
                                                          "column 'hist_item' cannot be decoded"))),
    Case("test-truncated", "train", dataset(edit_bytes("test", lambda data, md: data[:100],
                                                       "not a readable Parquet file"))),
    Case("test-file-missing", "train", dataset(remove_split_file("test"))),
    Case("test-fewer-rows-than-counted", "train", dataset(fewer_rows)),
    Case("train-truncated", "train", dataset(edit_bytes("train", lambda data, md: data[:len(data) // 3],
                                                        "not a readable Parquet file"))),
    Case("train-unlisted-file", "train", dataset(add_file("train"))),
    # the one case that trains: the train split's values are checked as its batches are read
    Case("train-labels-2", "train", dataset(rewrite("train", every_label(2), "row group", "column 'label' is 2"))),
]

# ---------------------------------------------------------------------------------------------------------
# Checkpoints: a copy of the tiny run (step-00000001, step-00000002 = latest = best) with damage
# ---------------------------------------------------------------------------------------------------------

LAST = "checkpoints/step-00000002"


def overwrite(name: str, content: bytes | None = None) -> Callable[[Path], None]:
    """Replaces a checkpoint file with garbage of its own size (or ``content``)."""
    def damage(checkpoint: Path) -> None:
        path = checkpoint / name
        path.write_bytes(os.urandom(path.stat().st_size) if content is None else content)
    return damage


def truncate(name: str) -> Callable[[Path], None]:
    def damage(checkpoint: Path) -> None:
        path = checkpoint / name
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return damage


def delete(name: str) -> Callable[[Path], None]:
    return lambda checkpoint: (checkpoint / name).unlink()


def damaged(damage: Callable[[Path], None], name: str, *expected: str) -> Callable[[Context], Tuple[Argv, Expected]]:
    """``dare-rec evaluate`` of the run whose best checkpoint is damaged."""
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        run = ctx.tmp / "run"
        shutil.copytree(ctx.run, run)
        damage(run / LAST)
        return ["--checkpoint", str(run), "--output", str(ctx.tmp / "eval.json")], [str(run / LAST / name), *expected]
    return make


def resume(change: Callable[[Path], None], expected: Callable[[Path], List[str]],
           *extra: str) -> Callable[[Context], Tuple[Argv, Expected]]:
    """``dare-rec train`` continuing a copy of the tiny run after ``change``."""
    def make(ctx: Context) -> Tuple[Argv, Expected]:
        run = ctx.tmp / "run"
        shutil.copytree(ctx.run, run)
        change(run)
        return tiny_run_args(ctx.data, run, *extra), expected(run)
    return make


def latest_removed(ctx: Context) -> Tuple[Argv, Expected]:
    """``--pick latest`` of a run whose latest checkpoint folder was deleted."""
    run = ctx.tmp / "run"
    shutil.copytree(ctx.run, run)
    shutil.rmtree(run / LAST)
    return ["--checkpoint", str(run), "--pick", "latest"], [str(run / "checkpoints" / "latest"), "step-00000002"]


def damage_all(run: Path) -> None:
    for checkpoint in (run / "checkpoints").glob("step-*"):
        overwrite("__0_0.distcp")(checkpoint)


CHECKPOINT_CASES = [
    Case("checkpoint-shard-garbage", "evaluate", damaged(overwrite("__0_0.distcp"), "__0_0.distcp", "sha256")),
    Case("checkpoint-shard-truncated", "evaluate", damaged(truncate("__0_0.distcp"), "__0_0.distcp", "bytes")),
    Case("checkpoint-shard-deleted", "evaluate", damaged(delete("__0_0.distcp"), "__0_0.distcp", "missing")),
    Case("checkpoint-metadata-garbage", "evaluate", damaged(overwrite(".metadata", b"garbage"), ".metadata")),
    Case("checkpoint-metadata-same-size-garbage", "evaluate", damaged(overwrite(".metadata"), ".metadata", "sha256")),
    Case("checkpoint-state-not-json", "evaluate", damaged(overwrite("train_state.json", b"{\"step\": "),
                                                          "train_state.json")),
    Case("checkpoint-config-not-yaml", "evaluate", damaged(overwrite("config.yaml", b"model: [\n"), "config.yaml")),
    Case("checkpoint-rank-file-garbage", "evaluate", damaged(truncate("rank-00000.json"), "rank-00000.json")),
    Case("checkpoint-manifest-missing", "evaluate", damaged(delete("manifest.json"), "manifest.json", "missing")),
    Case("checkpoint-manifest-garbage", "evaluate", damaged(overwrite("manifest.json", b"\x00\x01"), "manifest.json",
                                                            "not a valid checkpoint manifest")),
    Case("checkpoint-not-a-checkpoint", "evaluate", lambda ctx: (["--checkpoint", str(ctx.tmp)],
                                                                 [str(ctx.tmp), "is not a checkpoint"])),
    Case("checkpoint-latest-names-a-missing-folder", "evaluate", latest_removed),
    Case("evaluate-batch-size-0", "evaluate", lambda ctx: (["--checkpoint", str(ctx.run), "--batch-size", "0"],
                                                           ["--batch-size"])),
    Case("resume-every-checkpoint-damaged", "train", resume(damage_all, lambda run: [
        str(run / "checkpoints"), "no intact checkpoint", str(run / LAST / "__0_0.distcp")])),
    Case("resume-with-another-model", "train", resume(lambda run: None, lambda run: [
        "model.d_att", str(run / LAST)], "--model.d_att", "4")),
    Case("resume-never-on-a-used-folder", "train", resume(lambda run: None, lambda run: [
        "train.output_dir", str(run)], "--train.resume", "never")),
]

CASES = CONFIG_CASES + RAW_LOG_CASES + OUT_CASES + DATASET_CASES + CHECKPOINT_CASES


def test_the_table_has_at_least_60_distinct_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_place(case, tmp_path, request, capsys):
    argv, expected = case.make(Context(tmp_path, request))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        JOBS[case.job](argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def test_a_bad_row_in_the_test_split_stops_training_before_the_first_step(tmp_path, request, capsys):
    argv, _ = dataset(rewrite("test", set_value("label", 899, 3)))(Context(tmp_path, request))
    with pytest.raises(SystemExit):
        train.main(argv)
    assert "row 899: column 'label' is 3" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()
