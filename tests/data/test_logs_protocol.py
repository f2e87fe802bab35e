"""Property tests of the real-log protocol against the plain-Python reference (tests/data/log_reference.py)."""

from __future__ import annotations

import math
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dare_rec.config import LogsConfig
from dare_rec.data.logs import counter_uniform, prepare_logs
from dare_rec.data.raw_logs import RawLogSpec, generate_raw_log
from dare_rec.data.schema import DataError, DatasetMeta
from tests.data.log_reference import Row, as_tuple, read_split, reference, write_taobao, write_tmall

SMALL = dict(min_len=5, max_len=4, train_start=3, train_stride=2, train_count=3, val_position=2,
             test_position=1, negatives=2, row_group_size=16, train_files=2)
# Items only a short (dropped) user clicked: they count for the vocabulary and frequencies, and guarantee that
# every kept user has items outside its history to draw negatives from.
FILLER = [Row(999_999, 90_000 + i, 77, "pv", 5) for i in range(3)]


def _row(user: int, item: int, behavior: str, ts: int, odd_cate: bool) -> Row:
    # Sparse raw ids; an item's category is a function of the item, except for a few rows that carry
    # another one (so "last category seen" matters).
    cate = 1000 + (item % 4) * 11 + (5 if odd_cate else 0)
    return Row(user * 13 + 2, item * 7 + 3, cate, behavior, ts)


taobao_rows = st.lists(
    st.builds(_row, st.integers(0, 3), st.integers(0, 25),
              st.sampled_from(["pv", "pv", "pv", "pv", "buy", "cart", "fav"]),
              st.integers(1_511_500_000, 1_511_500_020), st.integers(0, 4).map(lambda k: k == 0)),
    min_size=30, max_size=150)


def _check(root: Path, expected, cfg: LogsConfig) -> None:
    """Every property of the output that the acceptance asks for."""
    meta = DatasetMeta.read(root)
    assert meta.num_items == len(expected.item_ids) + 1  # ids 1..n, 0 reserved
    assert meta.num_categories == expected.num_categories + 1
    for split in ("train", "val", "test"):
        rows = read_split(root, split)
        positives = [as_tuple(r) for r in rows if r["label"] == 1]
        negatives = [r for r in rows if r["label"] == 0]
        # Targets, positions and history windows: exactly the reference's positives.
        assert Counter(positives) == Counter(expected.positives[split]), split
        # 2:1 ratio, and each negative shares a positive's user, history and target timestamp.
        assert len(negatives) == cfg.negatives * len(positives)
        context = Counter(p[:1] + p[3:] for p in positives)
        neg_context = Counter(as_tuple(r)[:1] + as_tuple(r)[3:] for r in negatives)
        assert neg_context == Counter({k: v * cfg.negatives for k, v in context.items()})
        for r in negatives:
            # Never in the user's full history; its category is the item's (last seen) category.
            assert r["target_item"] not in expected.history[r["user_id"]]
            assert r["target_cate"] == expected.item_cate[r["target_item"]]
        for r in rows:
            assert r["target_item"] >= 1 and r["target_cate"] >= 1
            assert min(r["hist_item"] + r["hist_cate"], default=1) >= 1
            assert r["hist_ts"] == sorted(r["hist_ts"]) and all(t <= r["target_ts"] for t in r["hist_ts"])
        if split != "train":  # val/test: user order, each positive followed by its negatives
            labels = [r["label"] for r in rows]
            assert labels == [1, 0, 0] * (len(rows) // 3)
            users = [r["user_id"] for r in rows]
            assert users == sorted(users)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=taobao_rows, seed=st.integers(0, 3))
def test_taobao_protocol_matches_reference(rows, seed):
    cfg = LogsConfig(**SMALL, seed=seed)
    rows = rows + FILLER
    expected = reference(rows, cfg, keep=["pv"])
    with tempfile.TemporaryDirectory() as tmp:
        path = write_taobao(rows, Path(tmp) / "UserBehavior.csv")
        if not expected.history:  # no user reaches min_len: a clear error, not an empty dataset
            with pytest.raises(DataError, match="no user has >= logs.min_len"):
                prepare_logs("taobao", path, Path(tmp) / "out", cfg, progress=False)
            return
        prepare_logs("taobao", path, Path(tmp) / "out", cfg, progress=False)
        _check(Path(tmp) / "out", expected, cfg)


tmall_rows = st.lists(
    st.builds(_row, st.integers(0, 3), st.integers(0, 25), st.sampled_from(["0", "0", "0", "0", "1", "2", "3"]),
              st.sampled_from([511, 512, 601, 1010, 1111]), st.integers(0, 4).map(lambda k: k == 0)),
    min_size=30, max_size=150)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tmall_rows)
def test_tmall_time_order_is_stable_and_matches_reference(rows):
    """Tmall rows come in any order with day-resolution ties: per user by time, file order breaking ties."""
    cfg = LogsConfig(**SMALL)
    rows = rows + [r._replace(behavior="0", ts=1111) for r in FILLER]
    expected = reference(rows, cfg, keep=["0"], tmall=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tmall(rows, Path(tmp) / "user_log_format1.csv")
        if not expected.history:
            with pytest.raises(DataError, match="no user has"):
                prepare_logs("tmall", path, Path(tmp) / "out", cfg, progress=False)
            return
        prepare_logs("tmall", path, Path(tmp) / "out", cfg, progress=False)
        _check(Path(tmp) / "out", expected, cfg)


def test_paper_defaults_on_generated_log(tmp_path):
    """The paper's knobs (min_len 210, 19 train targets at 3, 8, ..., 93, history 200) on a generated log."""
    path = generate_raw_log(RawLogSpec("taobao", 60_000, seed=3, items=3000), tmp_path / "tb.csv", progress=False)
    cfg = LogsConfig(row_group_size=512, train_files=2)
    meta, summary = prepare_logs("taobao", path, tmp_path / "out", cfg, progress=False)
    kept = summary["users_kept"]
    assert kept > 0
    assert meta.counts == {"train": kept * 19 * 3, "val": kept * 3, "test": kept * 3}
    assert meta.max_history == 200
    test = read_split(tmp_path / "out", "test")
    assert all(len(r["hist_item"]) == 200 for r in test)  # >= 210 clicks: every test history is full


def test_negatives_are_frequency_proportional(tmp_path):
    """Chi-square of negative counts against ∝ frequency restricted to items outside the user's history."""
    path = generate_raw_log(RawLogSpec("taobao", 40_000, seed=5, items=150, categories=10), tmp_path / "tb.csv",
                            progress=False)
    cfg = LogsConfig(min_len=60, train_count=10, seed=11, row_group_size=1024, train_files=1)
    prepare_logs("taobao", path, tmp_path / "out", cfg, progress=False)
    rows = [r for s in ("train", "val", "test") for r in read_split(tmp_path / "out", s)]
    # Item frequencies and full user histories, recomputed from the raw file with the reference's id order.
    raw = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=["u", "i", "c", "b", "t"])).to_pydict()
    clicks = [(u, i) for u, i, b in zip(raw["u"], raw["i"], raw["b"]) if b == "pv"]
    item_ids = {raw_id: k + 1 for k, raw_id in enumerate(sorted({i for _, i in clicks}))}
    user_ids = {raw_id: k + 1 for k, raw_id in enumerate(sorted({u for u, _ in clicks}))}
    freq = np.bincount([item_ids[i] for _, i in clicks], minlength=len(item_ids) + 1).astype(float)
    history = defaultdict(set)
    for u, i in clicks:
        history[user_ids[u]].add(item_ids[i])
    expected = np.zeros_like(freq)
    observed = np.zeros_like(freq)
    for r in rows:
        if r["label"] == 0:
            allowed = freq.copy()
            allowed[list(history[r["user_id"]])] = 0
            expected += allowed / allowed.sum()
            observed[r["target_item"]] += 1
    big = expected >= 5
    merged_e = np.append(expected[big], expected[~big].sum())
    merged_o = np.append(observed[big], observed[~big].sum())
    chi2 = float(((merged_o - merged_e) ** 2 / merged_e).sum())
    df = len(merged_e) - 1
    # Wilson-Hilferty: chi2/df is approximately normal; z > 3.3 would be a p < 0.0005 failure.
    z = ((chi2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    assert observed.sum() > 4000 and z < 3.3, (chi2, df, z)


def test_counter_uniform_depends_only_on_key_counter_attempt():
    counters = np.arange(100_000, dtype=np.int64)
    full = counter_uniform(42, counters, 3)
    assert np.array_equal(full[7:20], counter_uniform(42, counters[7:20], 3))  # no dependence on batching
    assert not np.array_equal(full, counter_uniform(42, counters, 4))
    assert not np.array_equal(full, counter_uniform(43, counters, 3))
    assert 0.0 <= full.min() and full.max() < 1.0 and abs(full.mean() - 0.5) < 0.005
    assert np.histogram(full, bins=10, range=(0, 1))[0].min() > 9_500


@pytest.mark.parametrize("fmt", ["taobao", "tmall"])
def test_generated_log_matches_reference(tmp_path, fmt):
    """A generated file (thousands of rows, Tmall rows unordered with day ties) against the reference."""
    path = generate_raw_log(RawLogSpec(fmt, 30_000, seed=7, items=2000), tmp_path / "raw.csv", progress=False)
    cfg = LogsConfig(min_len=50, max_len=30, row_group_size=256, train_files=3, seed=1)
    table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(
        column_names=None if fmt == "tmall" else ["user_id", "item_id", "cat_id", "b", "time_stamp"]))
    cols = table.to_pydict()
    behavior = cols["action_type"] if fmt == "tmall" else cols["b"]
    rows = [Row(u, i, c, str(b), t) for u, i, c, b, t in
            zip(cols["user_id"], cols["item_id"], cols["cat_id"], behavior, cols["time_stamp"])]
    expected = reference(rows, cfg, keep=["0"] if fmt == "tmall" else ["pv"], tmall=fmt == "tmall")
    prepare_logs(fmt, path, tmp_path / "out", cfg, progress=False)
    _check(tmp_path / "out", expected, cfg)
