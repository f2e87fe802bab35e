"""The planted-structure Taobao log (make-raw-logs --planted): format, determinism, and that the paper's
protocol turns it into a dataset where reading the history pays (positives share categories with the
recent history, negatives do not)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dare_rec.data import schema
from dare_rec.data.raw_logs import PlantedLogSpec, generate_planted_log
from dare_rec.metrics.offline import auc
from dare_rec.pipelines import make_raw_logs, prepare

SPEC = PlantedLogSpec(users=300, seed=3, items=3000, categories=60)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return generate_planted_log(SPEC, tmp_path_factory.mktemp("planted") / "UserBehavior.csv", progress=False)


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("planted_prepared")
    argv = ["--source", "taobao", "--input", str(raw), "--out", str(out), "--quiet", "--logs.min_len", "60",
            "--logs.max_len", "50", "--logs.train_count", "8"]
    assert prepare.main(argv) == 0
    return out


def _rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_same_spec_same_bytes_other_seed_other_bytes(raw, tmp_path):
    again = generate_planted_log(SPEC, tmp_path / "again.csv", progress=False)
    assert again.read_bytes() == raw.read_bytes()
    other = generate_planted_log(PlantedLogSpec(users=300, seed=4, items=3000, categories=60),
                                 tmp_path / "other.csv", progress=False)
    assert other.read_bytes() != raw.read_bytes()


def test_taobao_format_sparse_ids_time_order_and_lengths(raw):
    rows = _rows(raw)
    assert all(len(r) == 5 for r in rows)
    user = np.array([int(r[0]) for r in rows])
    item = np.array([int(r[1]) for r in rows])
    ts = np.array([int(r[4]) for r in rows])
    behavior = np.array([r[3] for r in rows])
    assert set(behavior) == {"pv", "cart", "fav", "buy"}
    assert 0.85 < np.mean(behavior == "pv") < 0.95
    # Users are contiguous in increasing raw-id order, each user's rows in time order.
    assert np.all(np.diff(user) >= 0)
    same_user = user[1:] == user[:-1]
    assert np.all(np.diff(ts)[same_user] >= 0)
    users, clicks = np.unique(user[behavior == "pv"], return_counts=True)
    assert len(users) == SPEC.users and clicks.min() >= SPEC.min_len
    assert 0.9 * SPEC.mean_len < clicks.mean() < 1.1 * SPEC.mean_len
    # Raw ids are sparse (not 1..n), so preparing them exercises the remapping.
    assert users.max() > len(users) and item.max() > len(np.unique(item))
    # A non-click row repeats the item of the click just before it.
    other = np.flatnonzero(behavior != "pv")
    assert np.array_equal(item[other], item[other - 1])


def test_protocol_keeps_every_user_and_splits_in_whole_batches(prepared):
    meta = schema.DatasetMeta.read(prepared)
    assert meta.params["users_kept"] == SPEC.users
    assert meta.counts == {"train": SPEC.users * 8 * 3, "val": SPEC.users * 3, "test": SPEC.users * 3}
    assert meta.max_history == 50


def _split(root: Path, split: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in schema.split_files(root, split)])


def test_prepared_data_carries_the_planted_signal(prepared):
    """Positives' categories sit in the recent history, negatives' rarely do; a history-reading score (recency-
    weighted same-category count) ranks far better than a history-blind one (item popularity)."""
    table = _split(prepared, "train")
    label = table.column(schema.LABEL).to_numpy()
    target_cate = table.column(schema.TARGET_CATE).to_numpy()
    target_item = table.column(schema.TARGET_ITEM).to_numpy()
    hist_cate = table.column(schema.HIST_CATE).to_pylist()
    in_last_10 = np.array([c in h[-10:] for c, h in zip(target_cate, hist_cate)])
    positives, negatives = in_last_10[label == 1].mean(), in_last_10[label == 0].mean()
    assert positives > 0.5 and negatives < 0.2 and positives - negatives > 0.4, (positives, negatives)

    recency_score = np.array([np.exp(-(len(h) - 1 - np.flatnonzero(np.array(h) == c)) / 5.0).sum()
                              for c, h in zip(target_cate, hist_cate)])
    clicks = np.bincount(np.concatenate(table.column(schema.HIST_ITEM).to_pylist()), minlength=target_item.max() + 1)
    history_auc = auc(label.astype(float), recency_score)
    blind_auc = auc(label.astype(float), clicks[target_item].astype(float))
    assert history_auc > 0.75 and blind_auc < 0.6 and history_auc - blind_auc > 0.2, (history_auc, blind_auc)


def test_cli_writes_the_planted_log(tmp_path, raw, capsys):
    out = tmp_path / "cli.csv"
    assert make_raw_logs.main(["--format", "taobao", "--planted", "--users", "300", "--seed", "3", "--items",
                               "3000", "--categories", "60", "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes() == raw.read_bytes()
    assert "300 planted-structure users" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--format", "tmall", "--planted", "--users", "10"], "taobao format only"),
    (["--format", "taobao", "--planted", "--rows", "10"], "not --rows"),
    (["--format", "taobao", "--rows", "10", "--recency", "0.5"], "--recency only applies with --planted"),
    (["--format", "taobao"], "--rows is required"),
    (["--format", "taobao", "--planted", "--users", "10", "--recency", "0.8", "--exploration", "0.5"],
     "--recency + exploration must be <= 1"),
])
def test_cli_refuses_mixed_modes(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        make_raw_logs.main([*argv, "--out", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_invalid_planted_spec_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="recency \\+ exploration"):
        generate_planted_log(PlantedLogSpec(users=5, recency=0.8, exploration=0.5), tmp_path / "x.csv")
    with pytest.raises(ValueError, match="mean_len"):
        generate_planted_log(PlantedLogSpec(users=5, min_len=60, mean_len=30), tmp_path / "x.csv")


def _follows_last_engaged(path: Path) -> float:
    """Share of clicks (pv rows) whose category is that of the user's last earlier click followed by a
    cart/fav/buy row, over the clicks that have one."""
    rows = _rows(path)
    user = np.array([int(r[0]) for r in rows])
    cate = np.array([int(r[2]) for r in rows])
    click = np.array([r[3] == "pv" for r in rows])
    engaged_row = np.concatenate([~click[1:], [False]]) & click  # a click followed by a non-click row
    user, cate, engaged = user[click], cate[click], engaged_row[click]
    index = np.arange(len(user))
    last = np.maximum.accumulate(np.where(engaged, index, -1))  # last engaged click at or before each click
    previous = np.concatenate([[-1], last[:-1]])  # ... strictly before it
    has = (previous >= 0) & (user[np.maximum(previous, 0)] == user)
    return float(np.mean(cate[has] == cate[previous[has]]))


def test_intent_copy_makes_engaged_clicks_predict_the_next(raw, tmp_path):
    """intent_copy plants a behavior-type effect: the category of the last click with a cart/fav/buy row
    comes back far more often; the other rows keep the log's format and shares."""
    spec = PlantedLogSpec(users=300, seed=3, items=3000, categories=60, intent_copy=0.5)
    planted = generate_planted_log(spec, tmp_path / "intent.csv", progress=False)
    behavior = np.array([r[3] for r in _rows(planted)])
    assert 0.85 < np.mean(behavior == "pv") < 0.95
    off, on = _follows_last_engaged(raw), _follows_last_engaged(planted)
    assert off < 0.3 and on > off + 0.3, (off, on)
    with pytest.raises(ValueError, match="intent_copy"):
        generate_planted_log(PlantedLogSpec(users=5, intent_copy=1.5), tmp_path / "x.csv")
