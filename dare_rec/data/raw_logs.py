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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

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
        self.item_cate_raw = cate_raw[np.minimum(cate_of_item, c - 1)]
        self.item_seller = rng.integers(1, max(n // 50, 2), size=n)
        self.item_brand = rng.integers(1, max(n // 200, 2), size=n)
        popularity = 1.0 / np.arange(1, n + 1) ** spec.zipf
        rng.shuffle(popularity)
        self.cum = np.cumsum(popularity)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``[size]`` item indices drawn by popularity."""
        idx = np.searchsorted(self.cum, rng.random(size) * self.cum[-1], side="right")
        return np.minimum(idx, len(self.cum) - 1)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog = _Catalog(spec, np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,))))
    parquet = spec.fmt == "events" and path.suffix == ".parquet"
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    written, chunk = 0, 0
    with open(tmp, "wb") as sink, tqdm(total=spec.rows, desc=f"write {spec.fmt} log", unit="row",
                                       unit_scale=True, disable=not progress) as bar:
        while written < spec.rows:
            rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, chunk)))
            table = _chunk_table(spec, catalog, chunk, spec.rows - written, rng)
            if writer is None:
                if parquet:
                    writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
                else:
                    if spec.fmt != "taobao":  # written by hand: Arrow would quote the names
                        sink.write((",".join(table.schema.names) + "\n").encode())
                    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                    writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
            written += table.num_rows
            chunk += 1
            bar.update(table.num_rows)
        if writer is not None:
            writer.close()
    tmp.replace(path)  # rows == 0 leaves an empty file (useful for error-path tests)
    return path
