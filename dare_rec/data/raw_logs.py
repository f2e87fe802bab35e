"""Raw event logs in the Taobao, Tmall and generic formats, for testing preprocessing at scale.

The real files (Taobao ``UserBehavior.csv``, ~100M rows; Tmall ``user_log_format1.csv``, ~55M rows) cannot be
shipped, so this writes files with the same columns and a similar shape:

* users have a log-normal number of behaviors (default mean 100, sigma 0.94: about 9% of users reach the
  paper's 210 clicks, as in Taobao) and their rows are contiguous in the file;
* item popularity is Zipf-like (``weight ~ 1 / rank ** zipf``, ranks shuffled over ids), each item has one
  category, and categories have Zipf-like sizes;
* raw ids are sparse (not 1..n), so remapping is exercised;
* Taobao: users in increasing id order, rows in time order with ~2% adjacent pairs swapped; behaviors
  pv/cart/fav/buy in the real file's proportions. Tmall: header line, users in random order, rows of a user
  in random order (the real file is not time-ordered), ``time_stamp`` as ``mmdd`` between 0511 and 1111
  (many ties), about 0.2% empty ``brand_id`` (as in the real file). Events: header
  ``user_id,item_id,category_id,timestamp,behavior`` with click/cart/fav/buy; CSV or Parquet.

Everything is vectorised per chunk of users; chunk ``k`` draws from ``SeedSequence(seed, spawn_key=(1, k))``,
so the same arguments give byte-identical files.

:func:`generate_planted_log` writes a Taobao-format log with **planted structure** instead (for accuracy
checks on a protocol-prepared dataset, where the positive is the actual next click): every user keeps a few
interest categories that drift, and each click's category is copied from a recent click (recency: the lag
is geometric), else drawn from the current interests, else explored; its item follows popularity within the
category, or re-clicks the copied click's item. A model that reads the history can therefore tell the next
click from popularity-drawn negatives, and the relevant behaviors are the recent same-category ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

RAW_FORMATS = ("taobao", "tmall", "events")
USERS_PER_CHUNK = 8192  # part of the seeding scheme: changing it changes the files
_MAX_USER_LEN = 50_000
_TAOBAO_START, _TAOBAO_END = 1511539200, 1512316800  # 2017-11-25 .. 2017-12-03 (UTC+8 midnight)
_TMALL_FIRST_DAY, _TMALL_LAST_DAY = 130, 314  # day-of-year (0-based, 2015) of 05-11 and 11-11
_BEHAVIORS: Dict[str, tuple] = {
    # values as written, probabilities (clicks first)
    "taobao": (["pv", "cart", "fav", "buy"], [0.897, 0.055, 0.029, 0.019]),
    "tmall": ([0, 1, 2, 3], [0.88, 0.002, 0.06, 0.058]),
    "events": (["click", "cart", "fav", "buy"], [0.9, 0.05, 0.03, 0.02]),
}
_MONTH_DAYS_2015 = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


@dataclass
class RawLogSpec:
    """What to generate. ``items``/``categories`` default to the real Taobao ratios (24 rows per item,
    440 items per category)."""

    fmt: str
    rows: int
    seed: int = 0
    mean_len: float = 100.0
    len_sigma: float = 0.94
    items: Optional[int] = None
    categories: Optional[int] = None
    zipf: float = 1.0

    def num_items(self) -> int:
        return self.items or max(self.rows // 24, 100)

    def num_categories(self) -> int:
        return self.categories or max(self.num_items() // 440, 5)


class _Catalog:
    """Sparse raw item/category/seller/brand ids, item popularity (cumulative) and item -> category."""

    def __init__(self, spec: RawLogSpec, rng: np.random.Generator) -> None:
        n, c = spec.num_items(), spec.num_categories()
        self.item_raw = rng.choice(10 * n, size=n, replace=False).astype(np.int64) + 1
        cate_raw = rng.choice(10 * c, size=c, replace=False).astype(np.int64) + 1
        cate_weight = 1.0 / np.arange(1, c + 1) ** 0.7
        cate_of_item = np.searchsorted(np.cumsum(cate_weight) / cate_weight.sum(), rng.random(n), side="right")
        self.item_cate = np.minimum(cate_of_item, c - 1)  # category index 0..c-1 of each item index
        self.item_cate_raw = cate_raw[self.item_cate]
        self.item_seller = rng.integers(1, max(n // 50, 2), size=n)
        self.item_brand = rng.integers(1, max(n // 200, 2), size=n)
        popularity = 1.0 / np.arange(1, n + 1) ** spec.zipf
        rng.shuffle(popularity)
        self.popularity = popularity
        self.cum = np.cumsum(popularity)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``[size]`` item indices drawn by popularity."""
        idx = np.searchsorted(self.cum, rng.random(size) * self.cum[-1], side="right")
        return np.minimum(idx, len(self.cum) - 1)


class _CategorySampler:
    """Categories drawn by their popularity mass, and items by popularity within a given category."""

    def __init__(self, catalog: _Catalog, num_categories: int) -> None:
        order = np.argsort(catalog.item_cate, kind="stable")
        self._items_by_cate = order
        self._cum = np.cumsum(catalog.popularity[order])
        bounds = np.searchsorted(catalog.item_cate[order], np.arange(num_categories + 1))
        self._lo = np.concatenate([[0.0], self._cum])[bounds[:-1]]
        self._hi = np.concatenate([[0.0], self._cum])[bounds[1:]]
        # Categories without items have zero mass, so they are never drawn.
        self._cate_cum = np.cumsum(self._hi - self._lo)

    def categories(self, shape, rng: np.random.Generator) -> np.ndarray:
        """Category indices ``shape`` drawn by popularity mass."""
        idx = np.searchsorted(self._cate_cum, rng.random(shape) * self._cate_cum[-1], side="right")
        return np.minimum(idx, len(self._cate_cum) - 1)

    def items(self, cates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item index per entry of ``cates`` (category indices), drawn by popularity within it."""
        lo, hi = self._lo[cates], self._hi[cates]
        idx = np.searchsorted(self._cum, lo + rng.random(cates.shape) * (hi - lo), side="right")
        return self._items_by_cate[np.minimum(idx, len(self._cum) - 1)]


def _mmdd(day_of_year: np.ndarray) -> np.ndarray:
    """0-based day of year 2015 -> ``mmdd`` as an integer (e.g. 1111)."""
    month_start = np.concatenate([[0], np.cumsum(_MONTH_DAYS_2015)])
    month = np.searchsorted(month_start, day_of_year, side="right")
    return month * 100 + (day_of_year - month_start[month - 1] + 1)


def _chunk_table(spec: RawLogSpec, catalog: _Catalog, chunk: int, rows_left: int,
                 rng: np.random.Generator) -> pa.Table:
    """The rows of one chunk of users (at most ``rows_left``), in file order and file columns."""
    mu = np.log(spec.mean_len) - spec.len_sigma ** 2 / 2
    lengths = np.clip(np.ceil(rng.lognormal(mu, spec.len_sigma, USERS_PER_CHUNK)), 1, _MAX_USER_LEN).astype(np.int64)
    ends = np.cumsum(lengths)
    if ends[-1] > rows_left:  # the file ends inside this chunk: cut the last user short
        last = int(np.searchsorted(ends, rows_left))
        lengths = lengths[: last + 1]
        lengths[-1] -= ends[last] - rows_left
    num_users, n = len(lengths), int(lengths.sum())
    base = chunk * USERS_PER_CHUNK * 3
    user_ids = base + np.cumsum(rng.integers(1, 3, size=num_users))  # increasing, sparse
    if spec.fmt == "tmall":
        user_ids = rng.permutation(user_ids)
    row_user = np.repeat(np.arange(num_users), lengths)
    item_idx = catalog.sample(n, rng)
    values, probs = _BEHAVIORS[spec.fmt]
    behavior = rng.choice(len(values), size=n, p=probs)

    if spec.fmt == "tmall":
        ts = _mmdd(rng.integers(_TMALL_FIRST_DAY, _TMALL_LAST_DAY + 1, size=n))  # rows of a user unordered
    else:
        ts = rng.integers(_TAOBAO_START, _TAOBAO_END, size=n)
        order = np.lexsort((ts, row_user))
        ts = ts[order]
        # Swap ~2% of adjacent same-user pairs, so the file is not perfectly time-ordered.
        swap = np.nonzero((rng.random(n - 1) < 0.02) & (row_user[1:] == row_user[:-1]))[0]
        swap = swap[np.concatenate([[True], np.diff(swap) > 1])] if len(swap) else swap
        ts[swap], ts[swap + 1] = ts[swap + 1], ts[swap].copy()

    users = pa.array(user_ids[row_user])
    items = pa.array(catalog.item_raw[item_idx])
    cates = pa.array(catalog.item_cate_raw[item_idx])
    if spec.fmt == "taobao":
        return pa.table({"user_id": users, "item_id": items, "category_id": cates,
                         "behavior_type": pa.array(np.array(values)[behavior]), "timestamp": pa.array(ts)})
    if spec.fmt == "tmall":
        brand = catalog.item_brand[item_idx]
        return pa.table({"user_id": users, "item_id": items, "cat_id": cates,
                         "seller_id": pa.array(catalog.item_seller[item_idx]),
                         "brand_id": pa.array(brand, mask=rng.random(n) < 0.002),
                         "time_stamp": pa.array(ts), "action_type": pa.array(np.array(values)[behavior])})
    return pa.table({"user_id": users, "item_id": items, "category_id": cates, "timestamp": pa.array(ts),
                     "behavior": pa.array(np.array(values)[behavior])})


def generate_raw_log(spec: RawLogSpec, path: str | Path, progress: bool = True) -> Path:
    """Writes ``spec.rows`` rows of ``spec.fmt`` to ``path`` (events: Parquet if it ends in .parquet)."""
    if spec.fmt not in RAW_FORMATS:
        raise ValueError(f"unknown raw log format {spec.fmt!r}; choose one of {RAW_FORMATS}")
    catalog = _Catalog(spec, np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,))))

    def tables() -> Iterator[pa.Table]:
        written, chunk = 0, 0
        while written < spec.rows:
            rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, chunk)))
            table = _chunk_table(spec, catalog, chunk, spec.rows - written, rng)
            written += table.num_rows
            chunk += 1
            yield table

    return _write_tables(tables(), path, spec.fmt, spec.rows, progress)


def _write_tables(tables: Iterator[pa.Table], path: str | Path, fmt: str, total_rows: int,
                  progress: bool) -> Path:
    """Streams tables to ``path`` in the file layout of ``fmt``; the file appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parquet = fmt == "events" and path.suffix == ".parquet"
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    with open(tmp, "wb") as sink, tqdm(total=total_rows, desc=f"write {fmt} log", unit="row",
                                       unit_scale=True, disable=not progress) as bar:
        for table in tables:
            if writer is None:
                if parquet:
                    writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
                else:
                    if fmt != "taobao":  # written by hand: Arrow would quote the names
                        sink.write((",".join(table.schema.names) + "\n").encode())
                    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                    writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
            bar.update(table.num_rows)
        if writer is not None:
            writer.close()
    tmp.replace(path)  # rows == 0 leaves an empty file (useful for error-path tests)
    return path


@dataclass
class PlantedLogSpec:
    """A Taobao-format log whose clicks follow drifting user interests (see :func:`generate_planted_log`).

    Every user gets between ``min_len`` and ~50x ``mean_len`` clicks (``pv`` rows; ``min_len`` plus a
    log-normal excess, mean ``mean_len``), so ``dare-rec prepare --logs.min_len min_len`` keeps every user.
    """

    users: int
    seed: int = 0
    min_len: int = 60
    mean_len: float = 70.0
    len_sigma: float = 0.94
    items: int = 10_000
    categories: int = 100
    zipf: float = 0.8
    # Interest categories per user (drawn by category popularity, so two may coincide).
    interests: int = 6
    # Per click, the probability that one interest is replaced by a new category.
    interest_drift: float = 0.03
    # Per click, the probability of copying the category of a recent click (lag ~ geometric, mean
    # recency_scale clicks), and the share of those copies that re-click the same item.
    recency: float = 0.3
    recency_scale: float = 5.0
    item_repeat: float = 0.05
    # Per click, the probability of a category drawn by popularity instead (exploration).
    exploration: float = 0.3
    # Non-click rows (cart, fav, buy) per click, each on the item just clicked.
    other_behaviors: float = 0.11
    # Planted behavior-type effect (docs/side-info.md §3): per click, the probability of copying the category
    # of the user's most recent *engaged* click (one followed by a cart/fav/buy row), so those predict the
    # next click more than plain pv clicks. 0: off (today's log, byte for byte).
    intent_copy: float = 0.0

    def num_items(self) -> int:
        return self.items

    def num_categories(self) -> int:
        return self.categories

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        for name in ("users", "min_len", "items", "categories", "interests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mean_len < self.min_len:
            raise ValueError(f"mean_len must be >= min_len ({self.min_len}), got {self.mean_len}")
        if self.len_sigma < 0 or self.zipf < 0 or self.recency_scale < 1:
            raise ValueError("len_sigma and zipf must be >= 0, recency_scale >= 1")
        for name in ("interest_drift", "recency", "item_repeat", "exploration", "other_behaviors", "intent_copy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.recency + self.exploration > 1.0:
            raise ValueError(f"recency + exploration must be <= 1, got {self.recency + self.exploration}")


def _planted_clicks(spec: PlantedLogSpec, sampler: _CategorySampler, lengths: np.ndarray,
                    rng: np.random.Generator,
                    intent_rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Item indices ``[U, T]`` of a chunk of users' click sequences (user u's is valid up to ``lengths[u]``).

    One step per click, vectorised over the users: drift an interest, then pick the click's source (a recent
    click, exploration or an interest) and its item. With ``intent_rng`` (``spec.intent_copy > 0``) every click
    is also drawn engaged or not (probability ``other_behaviors``), and with probability ``intent_copy`` a
    click takes the category of the user's last engaged click instead, when there is one; those draws come
    from ``intent_rng`` only, so ``rng``'s stream is today's.

    Returns:
        items ``[U, T]``, and the engaged flags ``[U, T]`` bool (None without ``intent_rng``).
    """
    num_users, steps = len(lengths), int(lengths.max())
    rows = np.arange(num_users)
    interests = sampler.categories((num_users, spec.interests), rng)
    cum_weights = np.cumsum(rng.dirichlet(np.ones(spec.interests), size=num_users), axis=1)
    cates = np.zeros((num_users, steps), dtype=np.int64)
    items = np.zeros((num_users, steps), dtype=np.int64)
    engaged = last_engaged = None
    if intent_rng is not None:
        engaged = intent_rng.random((num_users, steps)) < spec.other_behaviors
        last_engaged = np.full(num_users, -1)  # index of the user's last engaged click, -1: none yet
    for t in range(steps):
        drift = rng.random(num_users) < spec.interest_drift
        slot = rng.integers(0, spec.interests, size=num_users)
        new_cate = sampler.categories(num_users, rng)
        interests[rows[drift], slot[drift]] = new_cate[drift]
        source = rng.random(num_users)
        lag = rng.geometric(1.0 / spec.recency_scale, size=num_users)
        copy = (source < spec.recency) & (lag <= t)
        explore = (source >= 1.0 - spec.exploration) & ~copy
        pick = (rng.random(num_users)[:, None] > cum_weights).sum(axis=1).clip(max=spec.interests - 1)
        earlier = np.maximum(t - lag, 0)
        cate = np.where(copy, cates[rows, earlier],
                        np.where(explore, sampler.categories(num_users, rng), interests[rows, pick]))
        repeat = copy & (rng.random(num_users) < spec.item_repeat)
        if intent_rng is not None:
            intent = (intent_rng.random(num_users) < spec.intent_copy) & (last_engaged >= 0)
            cate = np.where(intent, cates[rows, np.maximum(last_engaged, 0)], cate)
            repeat &= ~intent  # the item is drawn in the copied category, not repeated from the lagged click
            last_engaged = np.where(engaged[:, t], t, last_engaged)
        cates[:, t] = cate
        items[:, t] = np.where(repeat, items[rows, earlier], sampler.items(cate, rng))
    return items, engaged


def _user_lengths(min_len: int, mean_len: float, len_sigma: float, num_users: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Clicks per user: ``min_len`` plus a log-normal excess of mean ``mean_len - min_len`` (at most
    ``50 * mean_len`` clicks)."""
    excess = max(mean_len - min_len, 1e-9)
    mu = np.log(excess) - len_sigma ** 2 / 2
    return min_len + np.minimum(np.floor(rng.lognormal(mu, len_sigma, num_users)), 50 * mean_len).astype(np.int64)


def _taobao_user_rows(item_idx: np.ndarray, lengths: np.ndarray, item_raw: np.ndarray, item_cate_raw: np.ndarray,
                      other_behaviors: float, chunk: int, rng: np.random.Generator,
                      engaged: Optional[np.ndarray] = None) -> pa.Table:
    """The Taobao rows of a chunk of users' click sequences ``item_idx [U, T]`` (user u's valid up to
    ``lengths[u]``): users in increasing sparse id order, each in time order; ``other_behaviors`` cart/fav/buy
    rows per click follow the click on the same item, at the same time (prepare drops them unless
    ``logs.history_behaviors`` keeps them). ``engaged [U, T]`` bool, when given, says which clicks get one
    (drawn with the clicks, :func:`_planted_clicks`); else it is drawn here."""
    num_users = len(lengths)
    # Sorted timestamps per user: the first lengths[u] of T sorted draws with the rest pushed past the end.
    ts = rng.integers(_TAOBAO_START, _TAOBAO_END, size=item_idx.shape)
    valid = np.arange(item_idx.shape[1])[None, :] < lengths[:, None]
    ts = np.sort(np.where(valid, ts, _TAOBAO_END), axis=1)
    user_ids = chunk * USERS_PER_CHUNK * 3 + np.cumsum(rng.integers(1, 3, size=num_users))  # increasing, sparse

    row_user = np.repeat(np.arange(num_users), lengths)
    click_item, click_ts = item_idx[valid], ts[valid]
    extra = rng.random(len(click_item)) < other_behaviors if engaged is None else engaged[valid]
    row_of = np.repeat(np.arange(len(click_item)), 1 + extra)
    values, probs = _BEHAVIORS["taobao"]
    behavior = np.zeros(len(row_of), dtype=np.int64)
    follows = np.concatenate([[False], row_of[1:] == row_of[:-1]])
    other = np.asarray(probs[1:]) / sum(probs[1:])
    behavior[follows] = 1 + rng.choice(len(other), size=int(follows.sum()), p=other)
    item = click_item[row_of]
    return pa.table({"user_id": pa.array(user_ids[row_user[row_of]]),
                     "item_id": pa.array(item_raw[item]),
                     "category_id": pa.array(item_cate_raw[item]),
                     "behavior_type": pa.array(np.array(values)[behavior]),
                     "timestamp": pa.array(click_ts[row_of])})


def _planted_chunk(spec: PlantedLogSpec, catalog: _Catalog, sampler: _CategorySampler, chunk: int,
                   num_users: int, rng: np.random.Generator) -> pa.Table:
    """The Taobao rows of one chunk of users: users in increasing sparse id order, each in time order."""
    lengths = _user_lengths(spec.min_len, spec.mean_len, spec.len_sigma, num_users, rng)
    intent_rng = None
    if spec.intent_copy > 0:
        intent_rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(4, chunk)))
    item_idx, engaged = _planted_clicks(spec, sampler, lengths, rng, intent_rng)
    return _taobao_user_rows(item_idx, lengths, catalog.item_raw, catalog.item_cate_raw, spec.other_behaviors,
                             chunk, rng, engaged)


def generate_planted_log(spec: PlantedLogSpec, path: str | Path, progress: bool = True) -> Path:
    """Writes a Taobao ``UserBehavior.csv``-format log of ``spec.users`` users with planted structure.

    Per click of a user (vectorised over a chunk of users; chunk ``k`` draws from
    ``SeedSequence(seed, spawn_key=(2, k))``, the catalog from ``spawn_key=(0,)``):

    1. with probability ``interest_drift`` one of the user's ``interests`` categories is replaced by a
       category drawn by popularity (interests drift);
    2. with probability ``recency`` the click copies the category of the click ``lag`` steps back, ``lag ~
       Geometric(1 / recency_scale)`` (recently clicked categories are likelier), and with probability
       ``item_repeat`` its item as well; else with probability ``exploration`` the category is drawn by
       popularity; else it is one of the current interests (Dirichlet weights per user);
    3. with ``intent_copy`` > 0 (chunk ``k``'s draws from ``spawn_key=(4, k)``): with that probability the
       category is instead that of the user's most recent click that got a cart/fav/buy row (which clicks get
       one is then drawn here, probability ``other_behaviors``), so engaged clicks predict the next one more
       than pv-only clicks (a planted behavior-type effect, visible once ``logs.history_behaviors`` keeps the
       cart/fav/buy rows);
    4. unless repeated, the item is drawn by popularity within the category.

    Rows: users in increasing sparse raw-id order, each user's rows in time order; ``other_behaviors``
    cart/fav/buy rows per click. Same spec, same bytes.
    """
    spec.validate()
    catalog = _Catalog(spec, np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,))))
    sampler = _CategorySampler(catalog, spec.num_categories())

    def tables() -> Iterator[pa.Table]:
        for chunk, start in enumerate(range(0, spec.users, USERS_PER_CHUNK)):
            rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2, chunk)))
            yield _planted_chunk(spec, catalog, sampler, chunk, min(USERS_PER_CHUNK, spec.users - start), rng)

    expected_rows = int(spec.users * spec.mean_len * (1 + spec.other_behaviors))
    return _write_tables(tables(), path, "taobao", expected_rows, progress)


@dataclass
class DenseCatalogLogSpec:
    """A Taobao-format log over a small, dense catalog whose clicks follow latent item similarity (see
    :func:`generate_dense_catalog_log`): the regime of a real click log cut to a few categories, where every
    item is seen by hundreds of users and what predicts the next click is which items resemble the recent
    ones, something only the item embeddings can learn (the categories are a coarse partition of it)."""

    users: int
    seed: int = 0
    min_len: int = 60
    mean_len: float = 100.0
    len_sigma: float = 0.94
    items: int = 1700
    categories: int = 19
    zipf: float = 1.0
    # Dimension of the latent item vectors (random unit vectors).
    latent_dim: int = 32
    # Weight of the user's interest in the click logits: log popularity + affinity * <u, z_i>. At 4 about half
    # of the clicks return to an item among the user's last five (re-views are common in real click logs).
    affinity: float = 4.0
    # After each click the interest moves this far towards the clicked item's vector (plus a little noise).
    interest_step: float = 0.5
    interest_noise: float = 0.02
    # Non-click rows (cart, fav, buy) per click, each on the item just clicked.
    other_behaviors: float = 0.11

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        for name in ("users", "min_len", "items", "categories", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mean_len < self.min_len:
            raise ValueError(f"mean_len must be >= min_len ({self.min_len}), got {self.mean_len}")
        if self.len_sigma < 0 or self.zipf < 0 or self.affinity < 0 or self.interest_noise < 0:
            raise ValueError("len_sigma, zipf, affinity and interest_noise must be >= 0")
        for name in ("interest_step", "other_behaviors"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def generate_dense_catalog_log(spec: DenseCatalogLogSpec, path: str | Path, progress: bool = True) -> Path:
    """Writes a Taobao ``UserBehavior.csv``-format log of ``spec.users`` users over a small, dense catalog.

    The catalog (``SeedSequence(seed, spawn_key=(0,))``): ``items`` items with Zipf-like popularity (exponent
    ``zipf``, ranks shuffled over ids) and random unit latent vectors ``z_i`` (unit norm: every item pulls a user
    back to itself equally, which keeps the re-view rate from depending on the draw); category c of item i is
    ``argmax_c <z_i, w_c>`` over ``categories`` random directions, so a category is a coarse region of the
    latent space. Per user (chunks of users drawn from ``spawn_key=(3, k)``): an interest ``u ~ N(0, I /
    latent_dim)``; each click draws item i with probability proportional to ``popularity_i * exp(affinity *
    <u, z_i>)`` (Gumbel-max), then ``u <- (1 - interest_step) u + interest_step z_i + noise``. A recent click
    makes similar items likelier next (and itself, since ``<z_i, z_i>`` is large), while popularity-drawn
    negatives are not, so the signal sits in the item vectors and in recency. Rows as in
    :func:`generate_planted_log`. Same spec, same bytes.
    """
    spec.validate()
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,)))
    n, c, k = spec.items, spec.categories, spec.latent_dim
    item_raw = rng.choice(10 * n, size=n, replace=False).astype(np.int64) + 1
    cate_raw = rng.choice(10 * c, size=c, replace=False).astype(np.int64) + 1
    popularity = 1.0 / np.arange(1, n + 1) ** spec.zipf
    rng.shuffle(popularity)
    log_popularity = np.log(popularity / popularity.sum())
    latent = rng.standard_normal((n, k))
    latent /= np.linalg.norm(latent, axis=1, keepdims=True)
    item_cate_raw = cate_raw[np.argmax(latent @ rng.standard_normal((c, k)).T, axis=1)]

    def clicks(lengths: np.ndarray, chunk_rng: np.random.Generator) -> np.ndarray:
        # users longest first, so the ones still clicking at step t are a prefix (and only they are drawn)
        order = np.argsort(-lengths, kind="stable")
        interest = chunk_rng.standard_normal((len(lengths), k)) / np.sqrt(k)
        items = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)
        active = len(lengths)
        for t in range(items.shape[1]):
            while lengths[order[active - 1]] <= t:
                active -= 1
            logits = log_popularity + spec.affinity * (interest[:active] @ latent.T)
            picked = np.argmax(logits + chunk_rng.gumbel(size=logits.shape), axis=1)
            items[order[:active], t] = picked
            interest[:active] = ((1 - spec.interest_step) * interest[:active] + spec.interest_step * latent[picked]
                                 + spec.interest_noise * chunk_rng.standard_normal((active, k)))
        return items

    def tables() -> Iterator[pa.Table]:
        for chunk, start in enumerate(range(0, spec.users, USERS_PER_CHUNK)):
            chunk_rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(3, chunk)))
            lengths = _user_lengths(spec.min_len, spec.mean_len, spec.len_sigma,
                                    min(USERS_PER_CHUNK, spec.users - start), chunk_rng)
            yield _taobao_user_rows(clicks(lengths, chunk_rng), lengths, item_raw, item_cate_raw,
                                    spec.other_behaviors, chunk, chunk_rng)

    expected_rows = int(spec.users * spec.mean_len * (1 + spec.other_behaviors))
    return _write_tables(tables(), path, "taobao", expected_rows, progress)
