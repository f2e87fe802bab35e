"""Real event logs -> the Parquet data contract, with the paper's protocol (docs/design.md §3).

``prepare_logs`` runs four phases, each with its own progress bar:

1. **read** (dare_rec.data.log_readers): stream the file in blocks, keep the click rows (Taobao ``pv``, Tmall
   ``action_type 0``, or the configured behaviors) as numpy columns in file order; hash the file.
2. **index**: remap users, items and categories to ``1..n`` in increasing raw-id order (0 = padding), over
   every click row (as the reference code does, so the vocabulary and the negative-sampling frequencies
   cover the whole log); an item's category is the one on its last row in file order; drop users with fewer
   than ``logs.min_len`` clicks; sort the rest by (user, timestamp) with a stable sort, so rows with equal
   timestamps keep their file order (the reference uses file order for Taobao and a stable per-user sort for
   Tmall; a stable sort gives the reference result on time-ordered files and a defined one otherwise).
3. **negatives**: for every target, ``logs.negatives`` items drawn with probability proportional to their
   click count, redrawn while in the user's full click history (past and future, as the reference does).
4. **write**: each sample gathers its history (the up to ``max_len`` clicks before the target, oldest first)
   straight from the sorted columns into Arrow list arrays, through :class:`DatasetWriter`.

Targets (positions from the end, 1 = last click): test ``logs.test_position``, val ``logs.val_position``, train
``train_start + i * train_stride`` (i < ``train_count``; positions deeper than the user's length are skipped).
The positive keeps the category on its own row (as do history behaviors); a negative's category is its item's.
Val/test rows are in user order, each positive followed by its negatives; train rows are shuffled globally.

Side information: every row's behavior type becomes ``hist_btype`` (ids into the source's vocabulary,
``params["behavior_types"]``); Tmall's ``seller_id``/``brand_id`` are remapped like items (increasing raw id),
to ``2..n+1`` with 1 reserved for an empty field (unknown), into ``hist_seller``/``hist_brand`` and, like the
category, ``target_seller``/``target_brand``. With ``logs.history_behaviors`` the read keeps those behaviors
too and histories hold every kept behavior before the target, while targets, negatives and positions stay
clicks: users are kept and positions counted by clicks, item frequencies (negative sampling) count clicks,
and a negative is redrawn while in any kept behavior of the user (a carted item is no negative either);
vocabularies cover every kept row. Time gaps are derived, not stored (``target_ts - hist_ts``).

Determinism: negatives come from a counter-based generator (splitmix64 of a key derived from
``SeedSequence(logs.seed)``, the sample's index and the attempt number), so no draw depends on chunking or
threads; the train shuffle is one permutation from the same SeedSequence. Same input + config => identical
bytes. Memory: the kept columns (~17 bytes per kept row with the behavior type; Tmall ~25 with seller and
brand), then the kept users' sorted columns and ~50 bytes per output sample; histories are materialised one
chunk of samples at a time.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from dare_rec.config import LogsConfig
from dare_rec.data import schema
from dare_rec.data.log_readers import UNKNOWN_RAW, RawEvents, log_format, read_log
from dare_rec.data.publish import publish_dataset
from dare_rec.data.writer import DatasetWriter, list_array, rows_per_full_group

LOG_SOURCES = ("taobao", "tmall", "events")
# Side roles read from the log -> (history column, target column).
SIDE_COLUMNS = {"seller": (schema.HIST_SELLER, schema.TARGET_SELLER),
                "brand": (schema.HIST_BRAND, schema.TARGET_BRAND)}
# History values (per column) materialised per write chunk: bounds the write phase's memory.
_CHUNK_VALUES = 1 << 20
# Rows per step of the chunked per-row passes of the index phase.
_INDEX_CHUNK = 1 << 22
# A user whose history holds nearly all item mass could make rejection sampling spin: fail clearly instead.
_MAX_NEGATIVE_ROUNDS = 10_000
_GAMMA = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


@dataclass
class Clicks:
    """The kept users' behaviors, sorted by (user, time), plus vocabulary-wide tables.

    The behaviors are the clicks, plus the history-only ones (cart, fav, ...) with ``logs.history_behaviors``;
    under the paper's protocol every behavior is a click and ``click_row`` is None.

    Attributes:
        item, cate: ``[M]`` int32 remapped ids (>= 1) of the kept users' behaviors, sorted by (user, time).
        ts: ``[M]`` int64 (or int32) timestamps, same order.
        btype: ``[M]`` int8 behavior-type ids, same order.
        user_start: ``[K + 1]`` int64 offsets of each kept user's behaviors in ``item``/``cate``/``ts``.
        click_start: ``[K + 1]`` int64 offsets of each kept user's clicks in ``click_row``.
        click_row: ``[C]`` int64 index of every click in ``item``/... (user-major), or None: every row is one.
        user_id: ``[K]`` int64 remapped user id of each kept user.
        raw_user: ``[num_users]`` raw id of every remapped user id - 1 (for messages).
        item_cate: ``[num_items + 1]`` int64 category of each item id (0 for padding).
        item_freq: ``[num_items + 1]`` int64 click count of each item id over every click row.
        num_users, num_categories: distinct users and categories over every kept row.
        side: role ("seller", "brand") -> ``[M]`` int32 ids (1 = unknown), same order (Tmall; else empty).
        item_side: role -> ``[num_items + 1]`` int64 id of each item (its last row in file order).
        side_vocabulary: role -> vocabulary size (counting 0 = padding and 1 = unknown).
    """

    item: np.ndarray
    cate: np.ndarray
    ts: np.ndarray
    btype: np.ndarray
    user_start: np.ndarray
    click_start: np.ndarray
    click_row: Optional[np.ndarray]
    user_id: np.ndarray
    raw_user: np.ndarray
    item_cate: np.ndarray
    item_freq: np.ndarray
    num_users: int
    num_categories: int
    side: Dict[str, np.ndarray] = field(default_factory=dict)
    item_side: Dict[str, np.ndarray] = field(default_factory=dict)
    side_vocabulary: Dict[str, int] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.item_freq) - 1

    @property
    def lengths(self) -> np.ndarray:
        """``[K]`` behaviors per kept user."""
        return np.diff(self.user_start)

    @property
    def click_counts(self) -> np.ndarray:
        """``[K]`` clicks per kept user (the positions count these)."""
        return np.diff(self.click_start)

    def click_to_row(self, click: np.ndarray) -> np.ndarray:
        """Indices into ``click_row`` -> row indices into ``item``/``cate``/``ts``."""
        return click if self.click_row is None else self.click_row[click]


@dataclass
class Samples:
    """Samples of one split as descriptors (histories are gathered at write time).

    Attributes: each ``[R]``. ``target_row``: index of the target click in :class:`Clicks` (its history ends
    just before it, ``target_ts`` is its timestamp); ``hist_start``: index of the first history behavior;
    ``user_id``, ``target_item``, ``target_cate``: int64; ``label``: int8; ``target_side``: role -> int64
    seller/brand ids (Tmall; else empty).
    """

    target_row: np.ndarray
    hist_start: np.ndarray
    user_id: np.ndarray
    target_item: np.ndarray
    target_cate: np.ndarray
    label: np.ndarray
    target_side: Dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, idx: np.ndarray | slice) -> "Samples":
        return Samples(**{k: v[idx] for k, v in vars(self).items() if k != "target_side"},
                       target_side={role: v[idx] for role, v in self.target_side.items()})

    def __len__(self) -> int:
        return len(self.label)


def remap_ids(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Raw ids ``[N]`` -> (ids ``[N]`` int32 in ``1..n``, in increasing raw-id order; uniques ``[n]`` raw ids).

    Consumes ``raw``: an int32 column is overwritten with the ids (no second ``[N]`` array). A dense lookup
    table (O(N), chunked) when the raw ids span a range not much larger than N, else a sort; both give the
    same ids.
    """
    if len(raw) == 0:
        return np.zeros(0, dtype=np.int32), raw[:0]
    lo, hi = int(raw.min()), int(raw.max())
    base = min(lo, 0)  # non-negative ids (the usual case) index the table directly, without a shifted copy
    span = hi - base + 1
    if span > max(4 * len(raw), 1 << 24):
        uniques, inverse = np.unique(raw, return_inverse=True)
        return (inverse + 1).astype(np.int32), uniques
    chunks = [slice(start, start + _INDEX_CHUNK) for start in range(0, len(raw), _INDEX_CHUNK)]
    present = np.zeros(span, dtype=bool)
    for chunk in chunks:
        present[raw[chunk] if base == 0 else raw[chunk].astype(np.int64) - base] = True
    uniques = np.flatnonzero(present) + base
    table = np.cumsum(present, dtype=np.int32)
    del present
    ids = raw if raw.dtype == np.int32 else np.empty(len(raw), dtype=np.int32)
    for chunk in chunks:
        ids[chunk] = table[raw[chunk] if base == 0 else raw[chunk].astype(np.int64) - base]
    return ids, uniques


def _last_value(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``[size]``: for each key, ``values`` at its last occurrence in ``keys`` ``[N]`` (0 if absent)."""
    last = np.full(size, -1, dtype=np.int64)
    for start in range(0, len(keys), _INDEX_CHUNK):  # chunks: no [N] int64 row-number array in memory
        stop = min(start + _INDEX_CHUNK, len(keys))
        np.maximum.at(last, keys[start:stop], np.arange(start, stop, dtype=np.int64))
    out = np.zeros(size, dtype=np.int64)
    seen = last >= 0
    out[seen] = values[last[seen]]
    return out


def _bincount(keys: np.ndarray, size: int) -> np.ndarray:
    """``np.bincount(keys, minlength=size)`` in chunks: bincount copies int32 keys to int64 first."""
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, len(keys), _INDEX_CHUNK):
        counts += np.bincount(keys[start:start + _INDEX_CHUNK], minlength=size)
    return counts


def _compress(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` in chunks (a whole-array boolean index makes an ``[N]``-sized temporary)."""
    out = np.empty(int(np.count_nonzero(mask)), dtype=values.dtype)
    at = 0
    for start in range(0, len(values), _INDEX_CHUNK):
        part = values[start:start + _INDEX_CHUNK][mask[start:start + _INDEX_CHUNK]]
        out[at:at + len(part)] = part
        at += len(part)
    return out


def build_clicks(events: RawEvents, cfg: LogsConfig, progress: bool = True) -> Clicks:
    """Remaps ids, derives item categories and frequencies, keeps users with >= min_len clicks, sorts them.

    Consumes ``events``: each raw column is released as soon as it is remapped or filtered, and no ``[N]``
    int64 temporary is made, so this phase needs little more memory than the raw columns themselves.
    """
    bar = tqdm(total=5, desc="index", unit="step", disable=not progress)
    # The click rows among the kept ones; None when every row is a click (the paper's protocol: no copies).
    click: Optional[np.ndarray] = np.isin(events.btype, events.click_types)
    if click.all():
        click = None
    user, raw_user = remap_ids(events.user)
    events.user = None
    counts = _bincount(user if click is None else _compress(user, click), len(raw_user) + 1)  # clicks per user
    rows_per_user = counts if click is None else _bincount(user, len(raw_user) + 1)
    kept = counts >= cfg.min_len
    kept[0] = False
    keep_row = kept[user]
    # Kept users' rank 0..K-1 (ordered like their ids), per kept row.
    user_rank = (np.cumsum(kept, dtype=np.int32) - 1)[_compress(user, keep_row)]
    del user
    bar.update()

    item, _ = remap_ids(events.item)
    events.item = None
    num_items = int(item.max()) if len(item) else 0
    item_freq = _bincount(item if click is None else _compress(item, click), num_items + 1)
    cate, raw_cate = remap_ids(events.category)
    events.category = None
    item_cate = _last_value(item, cate, num_items + 1)
    side, item_side, side_vocabulary = {}, {}, {}
    for role in list(events.side):
        ids, uniques = remap_ids(events.side.pop(role))
        unknown = len(uniques) > 0 and uniques[0] == UNKNOWN_RAW  # the smallest raw value, so it got id 1
        if not unknown:
            ids += schema.UNKNOWN_SIDE_ID  # id 1 stays reserved for an unknown value
        side_vocabulary[role] = len(uniques) + (0 if unknown else 1) + 1
        item_side[role] = _last_value(item, ids, num_items + 1)
        side[role] = ids
    bar.update()
    # Only the kept users' rows from here on (one column at a time, freeing the full one).
    item = _compress(item, keep_row)
    cate = _compress(cate, keep_row)
    ts = _compress(events.timestamp, keep_row)
    events.timestamp = None
    btype = _compress(events.btype, keep_row)
    events.btype = None
    side = {role: _compress(ids, keep_row) for role, ids in side.items()}
    if click is not None:
        click = _compress(click, keep_row)
    del keep_row
    bar.update()

    # One stable sort by (user, time): a combined int64 key when it fits, else timestamps ranked first.
    order = np.zeros(0, dtype=np.int64)
    if len(ts):
        ts_lo, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
        key = user_rank.astype(np.int64)
        del user_rank
        if int(kept.sum()) * span < 2**62:
            key *= span
            key += ts
            key -= ts_lo
        else:
            key *= len(ts)
            key += np.unique(ts, return_inverse=True)[1]
        order = np.argsort(key, kind="stable")
        del key
    bar.update()
    item = item[order]
    cate = cate[order]
    ts = ts[order]
    btype = btype[order]
    side = {role: ids[order] for role, ids in side.items()}
    click_row = None if click is None else np.flatnonzero(click[order]).astype(np.int64)
    del order
    user_start = np.concatenate([[0], np.cumsum(rows_per_user[kept])]).astype(np.int64)
    click_start = user_start if click is None else np.concatenate([[0], np.cumsum(counts[kept])]).astype(np.int64)
    bar.update()
    bar.close()
    return Clicks(item=item, cate=cate, ts=ts, btype=btype, user_start=user_start, click_start=click_start,
                  click_row=click_row, user_id=np.flatnonzero(kept).astype(np.int64), raw_user=raw_user,
                  item_cate=item_cate, item_freq=item_freq, num_users=len(raw_user), num_categories=len(raw_cate),
                  side=side, item_side=item_side, side_vocabulary=side_vocabulary)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser over uint64 ``[n]`` (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniform(key: int, counters: np.ndarray, attempt: int) -> np.ndarray:
    """``[n]`` uniform floats in [0, 1) that depend only on (key, counter, attempt): chunking-independent."""
    z = _splitmix64(counters.astype(np.uint64) * np.uint64(_GAMMA) + np.uint64(key))
    z = _splitmix64(z + np.uint64(((attempt + 1) * _GAMMA) & _MASK64))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw_negatives(clicks: Clicks, slot_user: np.ndarray, key: int, progress: bool = True) -> np.ndarray:
    """One negative item per slot: drawn ∝ item frequency, redrawn while in the slot's user's history.

    Args:
        slot_user: ``[S]`` kept-user rank of each slot; slot ``i`` draws from counter ``i``.
        key: the generator key (from ``SeedSequence(logs.seed)``).

    Returns:
        ``[S]`` int64 item ids.
    """
    lengths = clicks.lengths
    stride = np.int64(clicks.num_items + 1)
    # Sorted distinct (user, item) keys of every kept user's clicks: membership test by binary search.
    # (sort + dedupe: np.unique's hash path is ~10x slower on these sizes in numpy 2.x)
    history = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths) * stride + clicks.item
    history.sort()
    history = history[np.concatenate([[True], history[1:] != history[:-1]])]
    freq = clicks.item_freq
    total = int(freq.sum())
    mass = np.bincount(history // stride, weights=freq[history % stride], minlength=len(lengths))
    full = np.flatnonzero(mass >= total)  # every kept user has slots (val/test always exist)
    if len(full):
        raw = clicks.raw_user[clicks.user_id[full[0]] - 1]
        raise schema.DataError(f"user {raw} (raw id) has clicked every item, so no negative can be drawn for it; "
                          f"use a log with more items or set logs.negatives 0")
    cumulative = np.cumsum(freq[1:])
    out = np.zeros(len(slot_user), dtype=np.int64)
    active = np.arange(len(slot_user), dtype=np.int64)
    bar = tqdm(total=len(slot_user), desc="negatives", unit="sample", unit_scale=True, disable=not progress)
    for attempt in range(_MAX_NEGATIVE_ROUNDS):
        if len(active) == 0:
            break
        point = np.minimum((counter_uniform(key, active, attempt) * total).astype(np.int64), total - 1)
        item = np.searchsorted(cumulative, point, side="right").astype(np.int64) + 1
        want = slot_user[active] * stride + item
        pos = np.minimum(np.searchsorted(history, want), len(history) - 1)
        clash = history[pos] == want
        out[active[~clash]] = item[~clash]
        bar.update(int((~clash).sum()))
        active = active[clash]
    bar.close()
    if len(active):
        user = int(slot_user[active[0]])
        raise schema.DataError(f"user {clicks.raw_user[clicks.user_id[user] - 1]} (raw id): no negative outside its "
                          f"history after {_MAX_NEGATIVE_ROUNDS} draws; its history covers almost all clicks")
    return out


def plan_samples(clicks: Clicks, cfg: LogsConfig, progress: bool = True) -> Dict[str, Samples]:
    """Every split's samples (positives and their negatives) as descriptors; train rows shuffled."""
    negative_seed, shuffle_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    positions = np.array(cfg.train_positions() + [cfg.val_position, cfg.test_position], dtype=np.int64)
    split_of = np.array([0] * cfg.train_count + [1, 2])  # index into schema.SPLITS
    lengths = clicks.click_counts
    # (user, position) pairs, user-major; a train position deeper than the user's clicks is skipped.
    valid = positions[None, :] <= lengths[:, None]
    pair_user, pair_pos = np.nonzero(valid)
    target = clicks.click_to_row(clicks.click_start[pair_user + 1] - positions[pair_pos])
    hist_start = np.maximum(clicks.user_start[pair_user], target - cfg.max_len)
    group = 1 + cfg.negatives
    # Negative slot i = the (i % negatives)-th negative of pair i // negatives: a fixed, canonical order.
    key = int(negative_seed.generate_state(1, np.uint64)[0])
    if cfg.negatives:
        slot_user = np.repeat(pair_user, cfg.negatives)
        negative = draw_negatives(clicks, slot_user, key, progress).reshape(-1, cfg.negatives)
    else:
        negative = np.zeros((len(pair_user), 0), dtype=np.int64)

    out: Dict[str, Samples] = {}
    for code, split in enumerate(schema.SPLITS):
        pairs = np.flatnonzero(split_of[pair_pos] == code)
        rows = np.repeat(pairs, group)
        item = np.empty((len(pairs), group), dtype=np.int64)
        item[:, 0] = clicks.item[target[pairs]]
        item[:, 1:] = negative[pairs]
        cate = clicks.item_cate[item]
        cate[:, 0] = clicks.cate[target[pairs]]  # a positive keeps the category on its own row
        label = np.zeros((len(pairs), group), dtype=np.int8)
        label[:, 0] = 1
        target_side = {}
        for role, ids in clicks.side.items():  # as the category: the positive's own row, a negative's item's
            values = clicks.item_side[role][item]
            values[:, 0] = ids[target[pairs]]
            target_side[role] = values.ravel()
        out[split] = Samples(target_row=target[rows], hist_start=hist_start[rows],
                             user_id=clicks.user_id[pair_user[rows]], target_item=item.ravel(),
                             target_cate=cate.ravel(), label=label.ravel(), target_side=target_side)
    out["train"] = out["train"].take(np.random.default_rng(shuffle_seed).permutation(len(out["train"])))
    return out


def sample_columns(clicks: Clicks, samples: Samples) -> Dict[str, pa.Array]:
    """The contract columns of ``samples`` (histories gathered from the sorted clicks, oldest first)."""
    lengths = samples.target_row - samples.hist_start
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.repeat(samples.hist_start - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    side = {}
    for role, (hist_column, target_column) in SIDE_COLUMNS.items():
        if role in clicks.side:
            side[hist_column] = list_array(offsets, clicks.side[role][flat].astype(np.int64), pa.int64())
            side[target_column] = pa.array(samples.target_side[role])
    return {
        schema.USER_ID: pa.array(samples.user_id),
        schema.TARGET_ITEM: pa.array(samples.target_item),
        schema.TARGET_CATE: pa.array(samples.target_cate),
        schema.LABEL: pa.array(samples.label),
        schema.HIST_ITEM: list_array(offsets, clicks.item[flat].astype(np.int64), pa.int64()),
        schema.HIST_CATE: list_array(offsets, clicks.cate[flat].astype(np.int64), pa.int64()),
        schema.HIST_TS: list_array(offsets, clicks.ts[flat].astype(np.int64), pa.int64()),
        schema.TARGET_TS: pa.array(clicks.ts[samples.target_row].astype(np.int64)),
        schema.HIST_BTYPE: list_array(offsets, clicks.btype[flat].astype(np.int64), pa.int64()),
        **side,
    }


def optional_columns(clicks: Clicks) -> List[str]:
    """The optional contract columns a prepared log carries: timestamps, behavior types, Tmall's seller/brand."""
    side = [column for role, pair in SIDE_COLUMNS.items() if role in clicks.side for column in pair]
    return [schema.HIST_TS, schema.TARGET_TS, schema.HIST_BTYPE] + side


def write_samples(clicks: Clicks, plan: Dict[str, Samples], out_dir: str | Path, cfg: LogsConfig,
                  progress: bool = True) -> DatasetWriter:
    """Writes every split through DatasetWriter in chunks of whole row groups; returns the closed writer."""
    files = {"train": cfg.train_files, "val": 1, "test": 1}
    writer = DatasetWriter(out_dir, optional_columns(clicks), files, cfg.row_group_size, cfg.row_group_mb << 20)
    group_rows = rows_per_full_group(writer.schema, cfg.max_len, cfg.row_group_size, cfg.row_group_mb << 20)
    chunk = group_rows * max(1, _CHUNK_VALUES // (cfg.max_len * group_rows))
    total = sum(len(s) for s in plan.values())
    with tqdm(total=total, desc="write", unit="sample", unit_scale=True, disable=not progress) as bar:
        for split, samples in plan.items():
            # Train files get consecutive slices of the shuffled rows; each file is a random subset.
            bounds = np.linspace(0, len(samples), files[split] + 1).astype(np.int64)
            for file_index in range(files[split]):
                for start in range(int(bounds[file_index]), int(bounds[file_index + 1]), chunk):
                    stop = min(start + chunk, int(bounds[file_index + 1]))
                    part = samples.take(slice(start, stop))
                    writer.write(split, sample_columns(clicks, part), file_index=file_index)
                    bar.update(stop - start)
    return writer


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def prepare_logs(source: str, input_path: str | Path, out_dir: str | Path, cfg: LogsConfig,
                 progress: bool = True, overwrite: bool = False) -> Tuple[schema.DatasetMeta, Dict[str, object]]:
    """Preprocesses a raw log into the Parquet contract at ``out_dir``.

    The dataset replaces ``out_dir`` atomically once complete (:func:`dare_rec.data.publish.publish_dataset`;
    ``overwrite`` lets it replace a folder that is not a dataset of ours).

    Returns:
        (meta.json contents, run summary: counts, vocabulary sizes, skipped rows, seconds and peak RSS per phase).
    """
    if source not in LOG_SOURCES:
        raise ValueError(f"unknown log source {source!r}; choose one of {LOG_SOURCES}")
    input_path = Path(input_path)
    phases: Dict[str, Dict[str, float]] = {}
    started = last = time.perf_counter()

    def phase_done(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = {"seconds": round(now - last, 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}
        last = now

    with publish_dataset(out_dir, overwrite) as tmp:
        fmt = log_format(source, input_path, cfg)
        events = read_log(input_path, fmt, cfg, progress)
        rows, kept_rows = events.rows, len(events.user)
        clicks_total = kept_rows if fmt.history is None else int(np.isin(events.btype, events.click_types).sum())
        behavior_types = list(events.behavior_types)
        skipped, examples, digest, size = events.skipped, events.examples, events.sha256, events.size_bytes
        phase_done("read")
        clicks = build_clicks(events, cfg, progress)
        del events
        if len(clicks.user_id) == 0:
            raise schema.DataError(f"{input_path}: no user has >= logs.min_len={cfg.min_len} clicks "
                              f"({clicks.num_users:,} users, {clicks_total:,} clicks); lower logs.min_len")
        phase_done("index")
        plan = plan_samples(clicks, cfg, progress)
        phase_done("negatives")
        writer = write_samples(clicks, plan, tmp, cfg, progress)
        files = writer.close()
        phase_done("write")

        resolved = asdict(cfg)
        resolved["behaviors"] = sorted(fmt.keep) if fmt.keep is not None else None
        resolved["history_behaviors"] = sorted(fmt.history) if fmt.history is not None else None
        stats = {
            "rows": rows,
            "clicks": clicks_total,
            "history_only_behaviors": kept_rows - clicks_total,
            "users": clicks.num_users,
            "users_kept": len(clicks.user_id),
            "clicks_of_kept_users": int(clicks.click_start[-1]),
            "skipped_rows": skipped,
        }
        side_params = {f"num_{role}s": size for role, size in clicks.side_vocabulary.items()}
        meta = schema.DatasetMeta(
            source=source,
            num_items=clicks.num_items + 1,
            num_categories=clicks.num_categories + 1,
            max_history=writer.max_history,
            counts=writer.counts,
            seed=cfg.seed,
            columns=[f.name for f in writer.schema],
            files=files,
            params={
                "input": str(input_path),
                "input_sha256": digest,
                "input_bytes": size,
                "logs": resolved,
                "train_positions": cfg.train_positions(),
                "behavior_types": behavior_types,
                **side_params,
                "id_order": "increasing raw id, over every click row; 0 is padding",
                "time_order": "per user by timestamp, stable (file order breaks ties)",
                "timestamps": "unix seconds" + (" (Tmall mmdd -> 00:00 UTC of that day in 2015)"
                                                if source == "tmall" else " (as in the input)"),
                **stats,
                "skipped_examples": examples,
            },
        )
        meta.write(tmp)
    phase_done("publish")  # verify, fsync, swap in
    summary = {
        **stats,
        "counts": writer.counts,
        "num_items": meta.num_items,
        "num_categories": meta.num_categories,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "phases": phases,
        "skipped_examples": examples,
    }
    return meta, summary


def format_summary(source: str, out_dir: str | Path, summary: Dict[str, object]) -> str:
    """The human-readable end-of-run summary."""
    counts = summary["counts"]
    lines = [
        f"prepared {source} -> {out_dir}",
        f"  rows read        {summary['rows']:>14,}   clicks {summary['clicks']:,}",
        f"  users kept       {summary['users_kept']:>14,}   of {summary['users']:,} "
        f"({summary['clicks_of_kept_users']:,} clicks)",
        "  samples          " + "   ".join(f"{s} {counts[s]:,}" for s in schema.SPLITS),
        f"  vocabulary       items {summary['num_items']:,}   categories {summary['num_categories']:,} "
        f"(including padding id 0)",
    ]
    skipped = summary["skipped_rows"]
    if skipped:
        lines.append("  skipped rows     " + "   ".join(f"{k} {v:,}" for k, v in skipped.items()))
        lines += [f"    first {k}: {v}" for k, v in summary["skipped_examples"].items()]
    else:
        lines.append("  skipped rows     none")
    phases = "   ".join(f"{name} {p['seconds']:.1f}s" for name, p in summary["phases"].items())
    lines.append(f"  time             {summary['seconds']:.1f}s   ({phases})")
    lines.append(f"  peak memory      {summary['peak_rss_mb']:,.0f} MB RSS")
    return "\n".join(lines)
