"""Streaming readers of raw event logs (Taobao, Tmall, generic CSV/Parquet) into numpy columns.

A file is read in blocks (``logs.block_mb`` of CSV text, or Parquet record batches), so memory holds one block
plus the columns kept so far, never a Python object per row. Each block is parsed by Arrow with explicit
column types; rows whose behavior is not kept are dropped at once, and the remaining ids and timestamps are
appended to one int32 array per column (int64 once a value needs it).

Malformed rows are found without per-row Python: a block that Arrow cannot parse with the expected types is
parsed again as text, and vectorised checks find every bad row (wrong column count, a value that is not an
integer, an unknown behavior value, a Tmall ``time_stamp`` that is not a ``mmdd`` date, bytes in a read column
that are not UTF-8 text). A file that is not text at all (a zip or gzip archive, Parquet, or binary data with
NUL bytes) is refused before parsing, naming what it is. By default the first
one (lowest line) raises :class:`DataError` naming the file, line and column; with ``logs.skip_malformed``
bad rows are dropped and counted per reason (the first example of each reason is kept for the summary).
Arrow reports wrong column counts through a callback, which runs once per such row only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from dare_rec.config import ConfigError, LogsConfig
from dare_rec.data.schema import DataError, sha256_file

ROLES = ("user", "item", "category", "timestamp")
REASONS = ("wrong_column_count", "not_utf8", "non_integer", "unknown_behavior", "bad_date")
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")
# Behavior-type vocabularies (hist_btype id = index + 1), fixed per source so ids do not depend on the config.
TAOBAO_TYPES = ("pv", "cart", "fav", "buy")
TMALL_COLUMNS = ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type")
TMALL_BEHAVIORS = ("0", "1", "2", "3")  # click, add-to-cart, purchase, add-to-favourite
# Tmall side columns (role -> column), read as ids; an empty field is an unknown value (UNKNOWN_RAW).
TMALL_SIDE = {"seller": "seller_id", "brand": "brand_id"}
# The one type of a log read without a behavior filter (every row is a click).
ANY_BEHAVIOR = "*"
# Raw value of an empty side field: below every legal (non-negative) raw id, so it remaps to the first id.
UNKNOWN_RAW = -1
# Tmall time_stamp is mmdd without a year; the logs cover 2015-05..11, so dates become 2015 unix seconds.
TMALL_YEAR_EPOCH_DAY = 16436  # days from 1970-01-01 to 2015-01-01
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MONTH_START = np.concatenate([[0], np.cumsum(_MONTH_DAYS)[:-1]])
_INT_PATTERN = r"^\s*-?[0-9]+\s*$"
_INT64_MAX_DIGITS = "9223372036854775807"
_PARQUET_BATCH_ROWS = 1 << 20
# Leading bytes of files that are not CSV text, and what to do about them.
_NOT_TEXT = (
    (b"PK\x03\x04", "a zip archive", "unzip it and pass the CSV file inside"),
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip)"),
    (b"BZh", "a bzip2-compressed file", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "decompress it first (unzstd)"),
    (b"PAR1", "a Parquet file", "Parquet logs are read by --source events (logs.event_format parquet)"),
)
_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class LogFormat:
    """How to read one raw-log format.

    Attributes:
        source: "taobao", "tmall" or "events".
        columns: names of every CSV column in order (from the header for headed files).
        header: whether the first line names the columns.
        role_columns: role ("user", "item", "category", "timestamp") -> column name; "category" may be absent.
        behavior: the behavior column, or None (every row is a click).
        behavior_is_int: behavior values are integers (Tmall action_type).
        known: legal behavior values as text, or None (any value is legal).
        keep: behavior values kept as clicks, as text, or None (every row).
        history: behavior values kept in histories (a superset of ``keep``), or None (``keep``).
        behavior_types: the behavior-type vocabulary (hist_btype id = index + 1).
        side_columns: role ("seller", "brand") -> column of side ids read with the row (Tmall).
        mmdd_dates: the timestamp column holds ``mmdd`` dates (Tmall).
        delimiter, quoting: CSV dialect (quoting off for Taobao/Tmall, whose fields are plain integers).
        parquet: the file is Parquet (events only).
    """

    source: str
    columns: Tuple[str, ...]
    header: bool
    role_columns: Dict[str, str]
    behavior: Optional[str]
    behavior_is_int: bool = False
    known: Optional[frozenset] = None
    keep: Optional[frozenset] = None
    history: Optional[frozenset] = None
    behavior_types: Tuple[str, ...] = (ANY_BEHAVIOR,)
    side_columns: Dict[str, str] = field(default_factory=dict)
    mmdd_dates: bool = False
    delimiter: str = ","
    quoting: bool = False
    parquet: bool = False

    def position(self, column: str) -> int:
        """1-based position of a column in the file."""
        return self.columns.index(column) + 1

    @property
    def kept(self) -> Optional[frozenset]:
        """Behavior values of the rows kept (clicks and history-only behaviors), or None (every row)."""
        return self.history if self.history is not None else self.keep

    def click_types(self) -> Tuple[int, ...]:
        """The hist_btype ids of the click values."""
        if self.keep is None:
            return tuple(range(1, len(self.behavior_types) + 1))
        return tuple(i + 1 for i, v in enumerate(self.behavior_types) if v in self.keep)


def log_format(source: str, path: str | Path, cfg: LogsConfig) -> LogFormat:
    """The format of ``path`` for ``source``; the header (Tmall, CSV events) is read and checked here."""
    path = Path(path)
    if source == "taobao":
        keep = frozenset(cfg.behaviors or ["pv"])
        _check_values(keep, TAOBAO_BEHAVIORS, "taobao behavior_type")
        return LogFormat("taobao", TAOBAO_COLUMNS, False,
                         dict(zip(ROLES, ("user_id", "item_id", "category_id", "timestamp"))),
                         "behavior_type", known=frozenset(TAOBAO_BEHAVIORS), keep=keep,
                         history=_history(cfg, keep, TAOBAO_BEHAVIORS, "taobao behavior_type"),
                         behavior_types=TAOBAO_TYPES)
    if source == "tmall":
        keep = frozenset(cfg.behaviors or ["0"])
        _check_values(keep, TMALL_BEHAVIORS, "tmall action_type")
        history = _history(cfg, keep, TMALL_BEHAVIORS, "tmall action_type")
        header = _read_header(path, ",")
        if tuple(header) != TMALL_COLUMNS:
            raise DataError(f"{path}: line 1: expected the Tmall header {','.join(TMALL_COLUMNS)!r}, "
                            f"got {','.join(header)!r}")
        return LogFormat("tmall", TMALL_COLUMNS, True,
                         dict(zip(ROLES, ("user_id", "item_id", "cat_id", "time_stamp"))), "action_type",
                         behavior_is_int=True, known=frozenset(TMALL_BEHAVIORS), keep=keep, history=history,
                         behavior_types=TMALL_BEHAVIORS, side_columns=dict(TMALL_SIDE), mmdd_dates=True)
    if source != "events":
        raise ValueError(f"unknown log source {source!r}")
    fmt = cfg.event_format if cfg.event_format != "auto" else ("parquet" if path.suffix == ".parquet" else "csv")
    roles = {"user": cfg.event_user_col, "item": cfg.event_item_col, "timestamp": cfg.event_timestamp_col}
    if cfg.event_category_col is not None:
        roles["category"] = cfg.event_category_col
    behavior = cfg.event_behavior_col
    if fmt == "parquet":
        try:
            columns = tuple(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file: {e}") from e
    else:
        columns = tuple(_read_header(path, cfg.event_delimiter))
    fields = {f"event_{r}_col": c for r, c in roles.items()}
    if behavior is not None:
        fields["event_behavior_col"] = behavior
    for name, column in fields.items():
        if column not in columns:
            where = f"{path}: line 1" if fmt == "csv" else f"{path}"
            raise DataError(f"{where}: no column {column!r} (logs.{name}); the file has columns {list(columns)}")
    known = frozenset(cfg.event_known_behaviors) if cfg.event_known_behaviors else None
    keep = frozenset(cfg.behaviors) if (cfg.behaviors and behavior is not None) else None
    if cfg.behaviors and behavior is None:
        raise ConfigError("logs.behaviors: a behavior filter needs logs.event_behavior_col")
    if known is not None and keep is not None:
        _check_values(keep, tuple(sorted(known)), "logs.event_known_behaviors")
    if cfg.history_behaviors is not None and keep is None:
        raise ConfigError("logs.history_behaviors: --source events needs the click values in logs.behaviors "
                          "(and logs.event_behavior_col) to tell clicks from other behaviors")
    history = None
    types: Tuple[str, ...] = (ANY_BEHAVIOR,)
    if keep is not None:
        history = _history(cfg, keep, tuple(sorted(known)) if known is not None else None,
                           "logs.event_known_behaviors")
        # The kept values in config order, clicks first: the events vocabulary is whatever the log calls them.
        types = tuple(dict.fromkeys(list(cfg.behaviors) + list(cfg.history_behaviors or [])))
    return LogFormat("events", columns, fmt == "csv", roles, behavior, known=known, keep=keep, history=history,
                     behavior_types=types, delimiter=cfg.event_delimiter, quoting=True, parquet=fmt == "parquet")


def _check_values(keep: frozenset, legal: Tuple[str, ...], what: str, field_name: str = "logs.behaviors") -> None:
    unknown = sorted(keep - set(legal))
    if unknown:
        raise ConfigError(f"{field_name}: {unknown} are not {what} values; legal values: {list(legal)}")


def _history(cfg: LogsConfig, keep: frozenset, legal: Optional[Tuple[str, ...]], what: str) -> Optional[frozenset]:
    """The values of ``logs.history_behaviors`` (None when unset), checked: legal, and holding every click
    value (the source's default clicks when ``logs.behaviors`` is null, which LogsConfig cannot check)."""
    if cfg.history_behaviors is None:
        return None
    history = frozenset(cfg.history_behaviors)
    if legal is not None:
        _check_values(history, legal, what, "logs.history_behaviors")
    missing = sorted(keep - history)
    if missing:
        raise ConfigError(f"logs.history_behaviors: must include the click behaviors {sorted(keep)} "
                          f"(logs.behaviors); {missing} missing")
    return history


def _read_header(path: Path, delimiter: str) -> List[str]:
    _check_file(path)
    _check_text(path)
    with open(path, "rb") as f:
        line = f.readline()
    text = line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if not text.strip():
        raise DataError(f"{path}: line 1: expected a header line naming the columns, got an empty line")
    return [name.strip().strip('"') for name in text.split(delimiter)]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def _check_text(path: Path) -> None:
    """Refuses a file that is not CSV text (an archive, a compressed or Parquet file, binary data), naming it."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    for magic, what, hint in _NOT_TEXT:
        if head.startswith(magic):
            raise DataError(f"{path}: {what}, not a CSV text file; {hint}")
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise DataError(f"{path}: line {line}: binary data (a NUL byte at byte {nul}), not a CSV text file; is it "
                        f"the right file?")


@dataclass
class RawEvents:
    """The kept rows of a log in file order (clicks, and history-only behaviors with
    ``logs.history_behaviors``), malformed rows removed.

    Attributes:
        user, item, category, timestamp: ``[N]`` raw values (int32 or int64); ``category`` is all 1 when the
            format has no category column; Tmall timestamps are unix seconds (day resolution).
        btype: ``[N]`` int8 behavior-type id (index into ``behavior_types`` + 1).
        side: role ("seller", "brand") -> ``[N]`` raw ids, ``UNKNOWN_RAW`` for an empty field (Tmall).
        behavior_types: the behavior-type vocabulary; click_types: the ids of the click types.
        rows: data rows in the file (excluding the header), malformed ones included.
        skipped: malformed rows skipped, per reason (only with ``logs.skip_malformed``).
        examples: the first malformed row of each skipped reason, as an error message.
        sha256, size_bytes: of the input file.
    """

    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    timestamp: np.ndarray
    btype: np.ndarray
    rows: int
    side: Dict[str, np.ndarray] = field(default_factory=dict)
    behavior_types: Tuple[str, ...] = (ANY_BEHAVIOR,)
    click_types: Tuple[int, ...] = (1,)
    skipped: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    size_bytes: int = 0


class _Issues:
    """Malformed rows found in one block: the earliest message overall, and per row the first reason."""

    def __init__(self, num_rows: int) -> None:
        self.row_reason = np.zeros(num_rows, dtype=np.int8)  # 0: fine, else 1 + index into REASONS
        self.extra: Dict[str, int] = {}  # rows Arrow already dropped (wrong column count)
        self.first: Dict[str, Tuple[int, str]] = {}  # reason -> (line, message) of its earliest row

    def note(self, reason: str, line: int, message: str) -> None:
        if reason not in self.first or line < self.first[reason][0]:
            self.first[reason] = (line, message)

    def mark(self, bad: np.ndarray, reason: str, lines: np.ndarray, message_of_row) -> None:
        """Records the rows of ``bad`` ``[n]`` (bool) under ``reason``, except rows that already have one
        (a row is counted once, under the problem of its leftmost checked column)."""
        new = bad & (self.row_reason == 0)
        if not new.any():
            return
        self.row_reason[new] = REASONS.index(reason) + 1
        row = int(np.argmax(new))
        self.note(reason, int(lines[row]), message_of_row(row))

    def any(self) -> bool:
        return bool(self.first)

    def earliest(self) -> str:
        return min(self.first.values())[1]

    def counts(self) -> Dict[str, int]:
        counts = dict(self.extra)
        per_reason = np.bincount(self.row_reason, minlength=len(REASONS) + 1)
        for i, reason in enumerate(REASONS):
            if per_reason[i + 1]:
                counts[reason] = counts.get(reason, 0) + int(per_reason[i + 1])
        return counts


class _Column:
    """An integer column appended block by block into one array: int32 while every value fits, else int64
    (or a fixed ``dtype`` whose range the caller guarantees, e.g. int8 behavior types).

    The array is allocated for an estimated capacity up front; pages never written are never committed by
    the OS, so over-estimating is free, while joining per-block parts at the end would hold the column twice.
    """

    def __init__(self, capacity: int, dtype=np.int32) -> None:
        self.data = np.empty(max(capacity, 1), dtype=dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        """Appends ``[n]`` int64 values."""
        n = len(values)
        if n == 0:
            return
        if self.data.dtype == np.int32 and (values.min() < np.iinfo(np.int32).min
                                            or values.max() > np.iinfo(np.int32).max):
            self._reallocate(len(self.data), np.int64)
        if self.size + n > len(self.data):
            self._reallocate(max(self.size + n, len(self.data) * 3 // 2), self.data.dtype)
        self.data[self.size:self.size + n] = values
        self.size += n

    def _reallocate(self, capacity: int, dtype) -> None:
        data = np.empty(capacity, dtype=dtype)
        data[:self.size] = self.data[:self.size]  # copy the used part only: the rest stays uncommitted
        self.data = data

    def result(self) -> np.ndarray:
        data, self.data = self.data, np.empty(0, dtype=self.data.dtype)
        return data[:self.size]


def _parse_int_text(text: pa.Array) -> Tuple[np.ndarray, np.ndarray]:
    """Integers from text ``[n]``: (values int64 with 0 where bad, bad bool). Null and out-of-range are bad."""
    ok = pc.fill_null(pc.match_substring_regex(text, _INT_PATTERN), False).to_numpy(zero_copy_only=False)
    trimmed = pc.utf8_trim_whitespace(text)
    magnitude = pc.utf8_ltrim(pc.utf8_ltrim(trimmed, "-"), "0")
    length = pc.fill_null(pc.utf8_length(magnitude), 0).to_numpy(zero_copy_only=False)
    too_big = (length > 19) | ((length == 19) & pc.fill_null(
        pc.greater(magnitude, _INT64_MAX_DIGITS), False).to_numpy(zero_copy_only=False))
    ok &= ~too_big
    values = np.zeros(len(text), dtype=np.int64)
    if ok.any():
        values[ok] = pc.cast(pc.filter(trimmed, pa.array(ok)), pa.int64()).to_numpy()
    return values, ~ok


def _parse_side_text(text: pa.Array) -> Tuple[np.ndarray, np.ndarray]:
    """Side ids from text ``[n]`` (Tmall seller_id, brand_id): (values int64, ``UNKNOWN_RAW`` where the field
    is empty and 0 where bad, bad bool). A negative or non-integer value is bad."""
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
    try:  # the usual block: plain integers and a few empty fields, one cast
        values = pc.cast(pc.if_else(empty, pa.scalar(str(UNKNOWN_RAW)), text), pa.int64()).to_numpy().copy()
        bad = np.zeros(len(text), dtype=bool)
    except pa.ArrowInvalid:
        values, bad = _parse_int_text(text)
    empty = empty.to_numpy(zero_copy_only=False)
    bad = (bad | (values < 0)) & ~empty
    values[empty] = UNKNOWN_RAW
    values[bad] = 0
    return values, bad


def _text_in(values: pa.ChunkedArray | pa.Array, allowed: frozenset) -> np.ndarray:
    """``[n]`` bool: whether each value's text is in ``allowed`` (dictionary, string or integer columns)."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 0:
            return np.zeros(0, dtype=bool)
        return np.concatenate([_text_in(chunk, allowed) for chunk in values.chunks])
    if pa.types.is_dictionary(values.type):
        in_dict = _text_in(values.dictionary, allowed)
        return in_dict[values.indices.to_numpy(zero_copy_only=False)] if len(in_dict) else \
            np.zeros(len(values), dtype=bool)
    if pa.types.is_integer(values.type):  # compare numbers, not their text ("00" is 0)
        numbers = [int(v) for v in allowed if v.strip().lstrip("-").isdigit()]
        return np.isin(pc.fill_null(values, 0).to_numpy(), numbers) & \
            ~pc.is_null(values).to_numpy(zero_copy_only=False)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    return pc.fill_null(pc.is_in(values, value_set=pa.array(sorted(allowed), pa.string())),
                        False).to_numpy(zero_copy_only=False)


def _mmdd_to_unix(mmdd: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Tmall ``mmdd`` dates ``[n]`` -> (unix seconds at 00:00 UTC of that day in 2015, bad bool)."""
    month, day = mmdd // 100, mmdd % 100
    bad = (month < 1) | (month > 12)
    month_idx = np.clip(month - 1, 0, 11)
    bad |= (day < 1) | (day > _MONTH_DAYS[month_idx])
    seconds = (TMALL_YEAR_EPOCH_DAY + _MONTH_START[month_idx] + day - 1) * 86400
    return np.where(bad, 0, seconds), bad


class _Collector:
    """Accumulates the kept columns of each block and the malformed-row bookkeeping of the whole file."""

    def __init__(self, fmt: LogFormat, path: Path, skip: bool, capacity: int) -> None:
        self.fmt, self.path, self.skip = fmt, path, skip
        self.columns = {role: _Column(capacity) for role in ROLES + tuple(fmt.side_columns)}
        self.btype = _Column(capacity, np.int8)
        self.rows = 0
        self.skipped: Dict[str, int] = {}
        self.examples: Dict[str, str] = {}

    def where(self, line: int) -> str:
        return f"{self.path}: {'row' if self.fmt.parquet else 'line'} {line}"

    def column(self, name: str) -> str:
        return f"column {self.fmt.position(name)} ({name!r})"

    def add(self, values: Dict[str, np.ndarray], behavior: Optional[pa.Array | pa.ChunkedArray],
            lines: np.ndarray, issues: _Issues) -> None:
        """Checks one block and keeps its good rows whose behavior is kept.

        Args:
            values: role -> ``[n]`` int64 (0 where ``issues`` already marks the row); no "category" when the
                format has none; the format's side roles.
            behavior: ``[n]`` behavior values (integers, text or dictionary), or None.
            lines: ``[n]`` line (CSV) or row (Parquet) number of each row, 1-based.
        """
        fmt = self.fmt
        n = len(lines)
        if "category" not in values:
            values["category"] = np.ones(n, dtype=np.int64)
        if fmt.mmdd_dates:
            mmdd = values["timestamp"]
            values["timestamp"], bad = _mmdd_to_unix(mmdd)
            column = self.column(fmt.role_columns["timestamp"])
            issues.mark(bad, "bad_date", lines, lambda r: (
                f"{self.where(int(lines[r]))}, {column}: {int(mmdd[r])} is not a mmdd date"))
        keep = None
        if behavior is not None:
            if fmt.known is not None:
                known = _text_in(behavior, fmt.known)
                if not known.all():
                    text = behavior.combine_chunks() if isinstance(behavior, pa.ChunkedArray) else behavior
                    listed = sorted(fmt.known)
                    hint = "" if fmt.source != "events" else " (logs.event_known_behaviors)"
                    issues.mark(~known, "unknown_behavior", lines, lambda r: (
                        f"{self.where(int(lines[r]))}, {self.column(fmt.behavior)}: unknown behavior value "
                        f"{text[r].as_py()!r}; expected one of {listed}{hint}"))
            if fmt.keep is not None:
                keep = _text_in(behavior, fmt.kept)
        btype = np.ones(n, dtype=np.int8)
        if keep is not None and len(fmt.kept) > 1:  # one kept value is one type: no per-type passes
            for index, value in enumerate(fmt.behavior_types):
                if value in fmt.kept:
                    btype[_text_in(behavior, frozenset([value]))] = index + 1
        elif keep is not None:
            btype[:] = fmt.behavior_types.index(next(iter(fmt.kept))) + 1
        self.rows += n + sum(issues.extra.values())
        if issues.any():
            if not self.skip:
                raise DataError(f"{issues.earliest()} (set --logs.skip_malformed true to skip and count "
                                f"malformed rows instead)")
            for reason, count in issues.counts().items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
            for reason, (_, message) in sorted(issues.first.items(), key=lambda kv: kv[1]):
                self.examples.setdefault(reason, message)
        good = issues.row_reason == 0
        if keep is not None:
            good &= keep
        rows = slice(None) if good.all() else np.flatnonzero(good)
        for role, column in self.columns.items():
            column.append(values[role][rows])
        self.btype.append(btype[rows])

    def result(self, sha256: str, size: int) -> RawEvents:
        columns = {role: self.columns[role].result() for role in ROLES}
        side = {role: self.columns[role].result() for role in self.fmt.side_columns}
        return RawEvents(**columns, btype=self.btype.result(), rows=self.rows, side=side,
                         behavior_types=self.fmt.behavior_types, click_types=self.fmt.click_types(),
                         skipped=dict(sorted(self.skipped.items())), examples=dict(sorted(self.examples.items())),
                         sha256=sha256, size_bytes=size)


def read_log(path: str | Path, fmt: LogFormat, cfg: LogsConfig, progress: bool = True) -> RawEvents:
    """Reads the clicks of a raw log (see :class:`RawEvents`); raises DataError on malformed input."""
    path = Path(path)
    _check_file(path)
    size = path.stat().st_size
    # Capacity: a Parquet file knows its rows; a CSV line has at least ~2 bytes per column.
    capacity = pq.ParquetFile(path).metadata.num_rows if fmt.parquet else size // (2 * len(fmt.columns)) + 1
    collector = _Collector(fmt, path, cfg.skip_malformed, capacity)
    with tqdm(total=size, desc=f"read {path.name}", unit="B", unit_scale=True, disable=not progress) as bar:
        if fmt.parquet:
            _read_parquet(path, fmt, collector, bar)
            digest = sha256_file(path)
        else:
            _check_text(path)
            digest = _read_csv(path, fmt, cfg.block_mb << 20, collector, bar)
    if collector.rows == 0:
        raise DataError(f"{path}: no data rows" + (" after the header" if fmt.header else ""))
    return collector.result(digest, size)


# ---------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------


def _csv_blocks(path: Path, block_bytes: int, header: bool, hasher, bar) -> Iterator[Tuple[pa.Buffer, int]]:
    """(block of whole lines, 1-based line number of its first line), hashing every byte on the way."""
    first_line = 1
    carry = b""
    with open(path, "rb") as f:
        if header:
            line = f.readline()
            hasher.update(line)
            bar.update(len(line))
            first_line = 2
        while True:
            chunk = f.read(block_bytes)
            if not chunk:
                break
            hasher.update(chunk)
            bar.update(len(chunk))
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a line longer than the block: keep reading
                carry = data
                continue
            carry = data[cut:]
            yield pa.py_buffer(data).slice(0, cut), first_line
            first_line += data.count(b"\n", 0, cut)
    if carry:
        yield pa.py_buffer(carry), first_line


def _read_csv(path: Path, fmt: LogFormat, block_bytes: int, collector: _Collector, bar) -> str:
    hasher = hashlib.sha256()
    for block, first_line in _csv_blocks(path, block_bytes, fmt.header, hasher, bar):
        _csv_block(block, first_line, fmt, collector)
    return hasher.hexdigest()


def _csv_options(fmt: LogFormat, typed: bool, handler=None):
    needed = list(fmt.role_columns.values()) + ([fmt.behavior] if fmt.behavior else []) + \
        list(fmt.side_columns.values())
    if typed:
        types = {c: pa.int64() for c in fmt.role_columns.values()}
        if fmt.behavior:
            types[fmt.behavior] = pa.int64() if fmt.behavior_is_int else pa.dictionary(pa.int32(), pa.string())
        # side ids may be empty (unknown): parsed from text, so an empty one does not fail the typed parse
        types.update({c: pa.string() for c in fmt.side_columns.values()})
    else:
        types = {c: pa.string() for c in needed}
    read = pacsv.ReadOptions(column_names=list(fmt.columns), use_threads=typed, block_size=16 << 20)
    parse = pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"' if fmt.quoting else False,
                               ignore_empty_lines=False, invalid_row_handler=handler)
    convert = pacsv.ConvertOptions(column_types=types, include_columns=needed, null_values=[],
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    return read, parse, convert


def _csv_block(block: pa.Buffer, first_line: int, fmt: LogFormat, collector: _Collector) -> None:
    """Parses one block with typed columns; on any Arrow error, parses it as text to find the bad rows."""
    try:
        table = pacsv.read_csv(pa.BufferReader(block), *_csv_options(fmt, typed=True))
    except pa.ArrowInvalid:
        _csv_block_as_text(block, first_line, fmt, collector)
        return
    values = {role: table.column(col).to_numpy() for role, col in fmt.role_columns.items()}
    lines = np.arange(first_line, first_line + table.num_rows)
    behavior = table.column(fmt.behavior) if fmt.behavior else None
    issues = _Issues(table.num_rows)
    _side_values(table, values, lines, issues, collector)
    collector.add(values, behavior, lines, issues)


def _side_values(table: pa.Table, values: Dict[str, np.ndarray], lines: np.ndarray, issues: _Issues,
                 collector: _Collector) -> None:
    """Parses the format's side columns of a block into ``values``, marking bad ones as malformed rows."""
    for role, col in collector.fmt.side_columns.items():
        text = table.column(col).combine_chunks()
        values[role], bad = _parse_side_text(text)
        issues.mark(bad, "non_integer", lines, lambda r, col=col, text=text: (
            f"{collector.where(int(lines[r]))}, {collector.column(col)}: expected a non-negative integer or "
            f"an empty field, got {text[r].as_py()!r}"))


def _not_utf8(data: bytes, fmt: LogFormat) -> Dict[int, Tuple[str, str]]:
    """Lines of a block that are not UTF-8 text in a column the format reads: line index in the block ->
    (column name, what). Only runs on blocks the typed parse refused."""
    arr = np.frombuffer(data, dtype=np.uint8)
    high = np.flatnonzero(arr >= 0x80)
    if not len(high):
        return {}
    try:
        data.decode("utf-8")
        return {}
    except UnicodeDecodeError:
        pass
    newlines = np.flatnonzero(arr == ord("\n"))
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(data)]])
    read = set(fmt.role_columns.values()) | ({fmt.behavior} if fmt.behavior else set())
    found: Dict[int, Tuple[str, str]] = {}
    for index in np.unique(np.searchsorted(newlines, high)):
        line = data[starts[index]:ends[index]]
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            column = line.count(fmt.delimiter.encode(), 0, e.start)
            if column < len(fmt.columns) and fmt.columns[column] in read:
                found[int(index)] = (fmt.columns[column], f"byte 0x{line[e.start]:02x} at byte {e.start + 1} of "
                                                          f"the line is not UTF-8 text")
    return found


def _csv_block_as_text(block: pa.Buffer, first_line: int, fmt: LogFormat, collector: _Collector) -> None:
    wrong: List[Tuple[int, int, str]] = []  # (row number in block, columns found, text)

    def on_invalid_row(row) -> str:
        wrong.append((row.number, row.actual_columns, row.text))
        return "skip"

    data = block.to_pybytes()
    not_utf8 = _not_utf8(data, fmt)
    if not_utf8:  # Arrow refuses invalid UTF-8 in a text column: parse a copy with U+FFFD in place of bad bytes
        block = pa.py_buffer(data.decode("utf-8", errors="replace").encode("utf-8"))
    try:
        table = pacsv.read_csv(pa.BufferReader(block), *_csv_options(fmt, typed=False, handler=on_invalid_row))
    except pa.ArrowInvalid as e:  # whatever the checks below do not foresee still names file and lines
        last = first_line + data.count(b"\n")
        raise DataError(f"{collector.path}: lines {first_line}..{last}: not parseable as CSV: "
                        f"{str(e).splitlines()[0][:200]}") from None
    n = table.num_rows
    lines = np.arange(first_line, first_line + n + len(wrong))
    if wrong:  # rows Arrow dropped shift the line numbers of the rows after them
        dropped = np.array([w[0] for w in wrong]) - 1
        lines = np.delete(lines, dropped)
    issues = _Issues(n)
    expected = len(fmt.columns)
    for number, actual, text in wrong:
        line = first_line + number - 1
        if actual < expected:
            detail = "an empty line" if not text.strip() else \
                f"column {actual + 1} ({fmt.columns[actual]!r}) is missing"
        else:
            detail = f"column {expected + 1} is unexpected"
        issues.note("wrong_column_count", line, f"{collector.where(line)}: expected {expected} columns "
                    f"({','.join(fmt.columns)}), got {actual}: {detail}")
    if wrong:
        issues.extra["wrong_column_count"] = len(wrong)
    # Arrow turns an empty line into a row of empty fields; report it as what it is.
    empty = np.logical_and.reduce([pc.equal(pc.utf8_length(table.column(c)), 0).to_numpy(zero_copy_only=False)
                                   for c in table.column_names])
    issues.mark(empty, "wrong_column_count", lines, lambda r: (
        f"{collector.where(int(lines[r]))}: expected {expected} columns ({','.join(fmt.columns)}), "
        f"got an empty line"))
    if not_utf8:
        bad_lines = {first_line + index: what for index, what in not_utf8.items()}
        bad = np.isin(lines, list(bad_lines))
        issues.mark(bad, "not_utf8", lines, lambda r: (
            f"{collector.where(int(lines[r]))}, {collector.column(bad_lines[int(lines[r])][0])}: "
            f"{bad_lines[int(lines[r])][1]}"))
    values = {}
    for role, col in fmt.role_columns.items():
        text = table.column(col).combine_chunks()
        values[role], bad = _parse_int_text(text)
        issues.mark(bad, "non_integer", lines, lambda r, col=col, text=text: (
            f"{collector.where(int(lines[r]))}, {collector.column(col)}: expected an integer, "
            f"got {text[r].as_py()!r}"))
    behavior = None
    if fmt.behavior:
        behavior = table.column(fmt.behavior).combine_chunks()
        if fmt.behavior_is_int:  # "00" is action 0: compare parsed integers, as the typed path does
            text = behavior
            parsed, bad = _parse_int_text(text)
            issues.mark(bad, "non_integer", lines, lambda r: (
                f"{collector.where(int(lines[r]))}, {collector.column(fmt.behavior)}: expected an integer, "
                f"got {text[r].as_py()!r}"))
            behavior = pa.array(parsed)
    _side_values(table, values, lines, issues, collector)
    collector.add(values, behavior, lines, issues)


# ---------------------------------------------------------------------------------------------------
# Parquet (generic event logs)
# ---------------------------------------------------------------------------------------------------


def _read_parquet(path: Path, fmt: LogFormat, collector: _Collector, bar) -> None:
    pfile = pq.ParquetFile(path)
    schema = pfile.schema_arrow
    for role, col in fmt.role_columns.items():
        dtype = schema.field(col).type
        if not (pa.types.is_integer(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
                or (role == "timestamp" and pa.types.is_timestamp(dtype))):
            raise DataError(f"{path}: {collector.column(col)} has type {dtype}; ids and timestamps must be "
                            f"integers (or text holding integers)")
    needed = list(fmt.role_columns.values()) + ([fmt.behavior] if fmt.behavior else [])
    first_row = 1
    per_row_bytes = path.stat().st_size / max(pfile.metadata.num_rows, 1)
    for batch in pfile.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=needed):
        n = batch.num_rows
        lines = np.arange(first_row, first_row + n)
        issues = _Issues(n)
        values = {}
        for role, col in fmt.role_columns.items():
            arr = batch.column(col)
            if pa.types.is_timestamp(arr.type):
                arr = pc.cast(pc.cast(arr, pa.timestamp("s")), pa.int64())
            if pa.types.is_integer(arr.type):
                bad = pc.is_null(arr).to_numpy(zero_copy_only=False)
                values[role] = pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy()
            else:
                values[role], bad = _parse_int_text(arr)
            issues.mark(bad, "non_integer", lines, lambda r, col=col, arr=arr, lines=lines: (
                f"{collector.where(int(lines[r]))}, {collector.column(col)}: expected an integer, "
                f"got {arr[r].as_py()!r}"))
        collector.add(values, batch.column(fmt.behavior) if fmt.behavior else None, lines, issues)
        first_row += n
        bar.update(int(n * per_row_bytes))
