"""Test helpers for the real-log preprocessing: small raw files and a plain-Python reference of the protocol.

The reference is written for clarity (loops and dicts over rows), independently of the vectorised code in
dare_rec.data.logs, so comparing the two checks remapping, ordering, positions and histories exactly.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import pyarrow.parquet as pq

from dare_rec.config import LogsConfig


class Row(NamedTuple):
    user: int
    item: int
    cate: int
    behavior: str  # as written in the file ("pv" / "0" ...)
    ts: int  # as written in the file (Tmall: mmdd)


def write_taobao(rows: Iterable[Row], path: Path) -> Path:
    path.write_text("".join(f"{r.user},{r.item},{r.cate},{r.behavior},{r.ts}\n" for r in rows))
    return path


def write_tmall(rows: Iterable[Row], path: Path) -> Path:
    lines = ["user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"]
    lines += [f"{r.user},{r.item},{r.cate},7,{'' if r.item % 5 == 0 else 3},{r.ts},{r.behavior}\n" for r in rows]
    path.write_text("".join(lines))
    return path


def tmall_unix(mmdd: int) -> int:
    day = datetime.date(2015, mmdd // 100, mmdd % 100)
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp())


class Expected(NamedTuple):
    """The reference result: positives per split and the tables negatives are checked against."""

    positives: Dict[str, List[tuple]]  # split -> (user, item, cate, hist_items, hist_cates, hist_ts, target_ts)
    item_ids: Dict[int, int]  # raw item -> id
    user_ids: Dict[int, int]
    item_cate: Dict[int, int]  # item id -> category id of its last click row in file order
    item_freq: Counter  # item id -> clicks
    history: Dict[int, set]  # user id -> every item id the user clicked
    num_categories: int


def reference(rows: Sequence[Row], cfg: LogsConfig, keep: Sequence[str], tmall: bool = False) -> Expected:
    clicks = [r for r in rows if r.behavior in keep]
    item_ids = {raw: i + 1 for i, raw in enumerate(sorted({r.item for r in clicks}))}
    cate_ids = {raw: i + 1 for i, raw in enumerate(sorted({r.cate for r in clicks}))}
    user_ids = {raw: i + 1 for i, raw in enumerate(sorted({r.user for r in clicks}))}
    item_cate: Dict[int, int] = {}
    sequences: Dict[int, List[Tuple[int, int, int, int, int]]] = defaultdict(list)
    for order, r in enumerate(clicks):
        item, cate = item_ids[r.item], cate_ids[r.cate]
        item_cate[item] = cate
        ts = tmall_unix(r.ts) if tmall else r.ts
        sequences[user_ids[r.user]].append((ts, order, item, cate))
    positives: Dict[str, List[tuple]] = {"train": [], "val": [], "test": []}
    history: Dict[int, set] = {}
    positions = [(p, "train") for p in cfg.train_positions()] + [(cfg.val_position, "val"),
                                                                   (cfg.test_position, "test")]
    for user, seq in sequences.items():
        if len(seq) < cfg.min_len:
            continue
        seq = sorted(seq)  # (ts, file order): a stable sort by time
        history[user] = {s[2] for s in seq}
        for p, split in positions:
            if p > len(seq):
                continue
            t = len(seq) - p
            hist = seq[max(0, t - cfg.max_len):t]
            positives[split].append((user, seq[t][2], seq[t][3], tuple(h[2] for h in hist),
                                     tuple(h[3] for h in hist), tuple(h[0] for h in hist), seq[t][0]))
    return Expected(positives, item_ids, user_ids, item_cate, Counter(item_ids[r.item] for r in clicks),
                    history, len(cate_ids))


def read_split(root: Path, split: str) -> List[dict]:
    return pq.read_table(Path(root) / split).to_pylist()


def as_tuple(row: dict) -> tuple:
    return (row["user_id"], row["target_item"], row["target_cate"], tuple(row["hist_item"]),
            tuple(row["hist_cate"]), tuple(row["hist_ts"]), row["target_ts"])
