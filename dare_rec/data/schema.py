"""The Parquet data contract (docs/design.md §3): column names, Arrow schema, meta.json, and checks.

A dataset is a folder::

    <root>/meta.json
    <root>/train/part-00000.parquet ...
    <root>/val/part-00000.parquet
    <root>/test/part-00000.parquet

One row per sample. Histories are ``list<int64>``, oldest -> newest, variable length, never padded.
Id 0 is reserved for padding/unknown, so real ids are >= 1 and vocabulary sizes count id 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")

USER_ID = "user_id"
TARGET_ITEM = "target_item"
TARGET_CATE = "target_cate"
LABEL = "label"
HIST_ITEM = "hist_item"
HIST_CATE = "hist_cate"
HIST_TS = "hist_ts"
TARGET_TS = "target_ts"
# Synthetic data only: the true click probability of the sample (for the oracle AUC) and, per history
# behavior, its true contribution to the click logit (the "truly relevant" behaviors).
CLICK_PROB = "click_prob"
HIST_RELEVANCE = "hist_relevance"
# Synthetic data with the planted pair effect only: the pair term of the sample's click logit (0 or the
# generator's pair_weight), which hist_relevance cannot hold since it depends on two behaviors together.
PAIR_BONUS = "pair_bonus"
# Side information of real logs (docs/design.md §3). The behavior type of each history behavior, an id into
# meta.json ``params["behavior_types"]`` (id = index + 1); the time gap to the target is not stored, it is
# ``target_ts - hist_ts``. Tmall's seller and brand of each history behavior and of the target: dense ids
# with 1 reserved for an unknown (empty) value, vocabulary sizes in ``params["num_sellers"]`` and
# ``params["num_brands"]`` (counting ids 0 and 1).
HIST_BTYPE = "hist_btype"
HIST_SELLER = "hist_seller"
HIST_BRAND = "hist_brand"
TARGET_SELLER = "target_seller"
TARGET_BRAND = "target_brand"
# The target's objective (docs/side-info.md §2.4), ids 1..O: which position-table slice a model with
# ``model.position_objectives`` O > 1 reads for the sample. A dataset without the column has one objective (1).
TARGET_OBJECTIVE = "target_objective"
# Id of an unknown seller or brand (an empty field in the log); known ones are 2..n+1.
UNKNOWN_SIDE_ID = 1

REQUIRED_COLUMNS: Dict[str, pa.DataType] = {
    USER_ID: pa.int64(),
    TARGET_ITEM: pa.int64(),
    TARGET_CATE: pa.int64(),
    LABEL: pa.int8(),
    HIST_ITEM: pa.list_(pa.int64()),
    HIST_CATE: pa.list_(pa.int64()),
}
OPTIONAL_COLUMNS: Dict[str, pa.DataType] = {
    HIST_TS: pa.list_(pa.int64()),
    TARGET_TS: pa.int64(),
    CLICK_PROB: pa.float32(),
    HIST_RELEVANCE: pa.list_(pa.float32()),
    PAIR_BONUS: pa.float32(),
    HIST_BTYPE: pa.list_(pa.int64()),
    HIST_SELLER: pa.list_(pa.int64()),
    HIST_BRAND: pa.list_(pa.int64()),
    TARGET_SELLER: pa.int64(),
    TARGET_BRAND: pa.int64(),
    TARGET_OBJECTIVE: pa.int64(),
}
# Side columns with an id per history behavior (each as long as hist_item), and per side id column the
# meta.json params entry holding its vocabulary size (the behavior type's is len(behavior_types) + 1).
SIDE_LISTS = (HIST_BTYPE, HIST_SELLER, HIST_BRAND)
SIDE_VOCABULARY = {HIST_SELLER: "num_sellers", TARGET_SELLER: "num_sellers", HIST_BRAND: "num_brands",
                   TARGET_BRAND: "num_brands"}


def arrow_schema(optional: List[str]) -> pa.Schema:
    """The Arrow schema of a dataset carrying the required columns plus the named optional ones."""
    fields = [pa.field(n, t, nullable=False) for n, t in REQUIRED_COLUMNS.items()]
    fields += [pa.field(n, OPTIONAL_COLUMNS[n], nullable=False) for n in optional]
    return pa.schema(fields)


class DataError(ValueError):
    """The dataset on disk violates the contract; the message names the file (and column/row when known)."""


@dataclass
class DatasetMeta:
    """Contents of meta.json."""

    source: str
    num_items: int  # item vocabulary size including padding id 0 (max item id + 1)
    num_categories: int  # category vocabulary size including padding id 0
    max_history: int  # longest history stored in any split
    counts: Dict[str, int]  # samples per split
    seed: int
    columns: List[str]
    files: Dict[str, Dict[str, str]] = field(default_factory=dict)  # split -> {relative file: sha256}
    params: Dict[str, object] = field(default_factory=dict)  # everything that produced the data
    schema_version: int = SCHEMA_VERSION

    @property
    def has_click_prob(self) -> bool:
        return CLICK_PROB in self.columns

    def write(self, root: str | Path) -> None:
        path = Path(root) / "meta.json"
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

    @staticmethod
    def read(root: str | Path) -> "DatasetMeta":
        path = Path(root) / "meta.json"
        if not Path(root).is_dir():
            raise DataError(f"dataset folder {str(root)!r} does not exist (run `dare-rec prepare` first)")
        if not path.is_file():
            raise DataError(f"{path}: missing; a dataset folder needs meta.json (written by `dare-rec prepare`)")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            meta = DatasetMeta(**raw)
        except (ValueError, TypeError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise DataError(f"{path}: not a valid meta.json: {e}") from None
        if meta.schema_version != SCHEMA_VERSION:
            raise DataError(f"{path}: schema_version {meta.schema_version}, this code reads {SCHEMA_VERSION}")
        meta._check_types(path)
        return meta

    def _check_types(self, path: Path) -> None:
        """Every field has its type (and a possible value), so a hand-edited meta.json fails here, naming the
        field, instead of deep inside the model or the reader."""

        def fail(name: str, expected: str, value: object) -> None:
            raise DataError(f"{path}: field {name!r} must be {expected}, got {type(value).__name__} {value!r}")

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not isinstance(self.source, str):
            fail("source", "a string", self.source)
        for name in ("num_items", "num_categories"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an integer >= 1 (vocabulary size including padding id 0)", getattr(self, name))
        for name in ("max_history", "seed"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an integer >= 0", getattr(self, name))
        if not isinstance(self.counts, dict) or sorted(self.counts) != sorted(SPLITS) or \
                not all(is_int(v) and v >= 0 for v in self.counts.values()):
            fail("counts", f"a mapping of {list(SPLITS)} to row counts >= 0", self.counts)
        if not isinstance(self.columns, list) or not all(isinstance(c, str) for c in self.columns):
            fail("columns", "a list of column names", self.columns)
        if not isinstance(self.files, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str)
                                                                   for a, b in v.items())
                for k, v in self.files.items()):
            fail("files", "a mapping of split to {file: sha256}", self.files)
        if not isinstance(self.params, dict):
            fail("params", "a mapping", self.params)


def dataset_fingerprint(meta: DatasetMeta) -> str:
    """A short digest of what meta.json says the dataset is (file hashes, counts, vocabularies): a checkpoint
    records it, so a run resumes only on the data it started on."""
    identity = {"files": meta.files, "counts": meta.counts, "num_items": meta.num_items,
                "num_categories": meta.num_categories}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def split_files(root: str | Path, split: str) -> List[Path]:
    """The Parquet files of one split, sorted; raises DataError if there are none."""
    folder = Path(root) / split
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(f"{folder}: no Parquet files for split {split!r}")
    return files


def open_parquet(path: Path) -> pq.ParquetFile:
    """Opens a Parquet file; a truncated file or a corrupt footer is a DataError naming the file."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file (truncated, or a corrupt footer): "
                        f"{str(e).splitlines()[0]}") from None


def read_footer(path: Path) -> pq.FileMetaData:
    """The footer of a Parquet file (row groups, schema), with :func:`open_parquet`'s errors."""
    return open_parquet(path).metadata


def check_file_schema(path: Path, expected: Optional[List[str]] = None,
                      file_schema: Optional[pa.Schema] = None) -> List[str]:
    """Checks a file's columns and types against the contract; returns the optional columns it carries.

    Args:
        expected: the dataset's columns (meta.json ``columns``); when given, the file must carry exactly
            these, so every file of a dataset has one schema.
        file_schema: the file's Arrow schema if already read.
    """
    if file_schema is None:
        file_schema = read_footer(path).schema.to_arrow_schema()
    for name, dtype in REQUIRED_COLUMNS.items():
        idx = file_schema.get_field_index(name)
        if idx < 0:
            raise DataError(f"{path}: missing required column {name!r}")
        if file_schema.field(idx).type != dtype:
            raise DataError(f"{path}: column {name!r} has type {file_schema.field(idx).type}, expected {dtype}")
    present = []
    for name, dtype in OPTIONAL_COLUMNS.items():
        idx = file_schema.get_field_index(name)
        if idx >= 0:
            if file_schema.field(idx).type != dtype:
                raise DataError(f"{path}: column {name!r} has type {file_schema.field(idx).type}, expected {dtype}")
            present.append(name)
    if expected is not None:
        names = set(file_schema.names)
        for name in expected:
            if name not in names:
                raise DataError(f"{path}: missing column {name!r} that meta.json lists (schema mismatch "
                                f"between the dataset's files)")
        for name in file_schema.names:
            if name not in expected:
                raise DataError(f"{path}: column {name!r} is not among meta.json's columns (schema mismatch "
                                f"between the dataset's files)")
    return present


def check_split(root: str | Path, split: str, paths: List[Path], meta: DatasetMeta) -> None:
    """The split's files are the ones meta.json lists (when it lists files)."""
    listed = meta.files.get(split)
    if not listed:
        return
    found = {p.relative_to(Path(root)).as_posix() for p in paths}
    for name in sorted(set(listed) - found):
        raise DataError(f"{Path(root) / name}: listed in meta.json but missing")
    for name in sorted(found - set(listed)):
        raise DataError(f"{Path(root) / name}: not listed in meta.json (a file added after `dare-rec prepare`?)")


def check_row_count(root: str | Path, split: str, rows: int, meta: DatasetMeta) -> None:
    """The split's files hold as many rows as meta.json counts (a cheap check that they were not replaced)."""
    expected = meta.counts.get(split)
    if expected is not None and rows != expected:
        raise DataError(f"{Path(root) / split}: the files hold {rows:,} rows but meta.json counts {expected:,}; "
                        f"the data changed after meta.json was written (prepare it again)")


def verify_hashes(root: str | Path, split: str, meta: DatasetMeta) -> None:
    """Compares every file of a split with its sha256 in meta.json (``data.verify_hashes``)."""
    listed = meta.files.get(split)
    if not listed:
        raise DataError(f"{Path(root) / 'meta.json'}: lists no file hashes for split {split!r}; "
                        f"data.verify_hashes needs them")
    for name, digest in sorted(listed.items()):
        path = Path(root) / name
        if not path.is_file():
            raise DataError(f"{path}: listed in meta.json but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise DataError(f"{path}: sha256 {actual[:12]}... differs from meta.json's {digest[:12]}...; "
                            f"the file changed after `dare-rec prepare` wrote it")


def verify_dataset(root: str | Path, meta: Optional[DatasetMeta] = None, hashes: bool = True) -> DatasetMeta:
    """Checks a whole dataset against its meta.json without reading values: every split's files are the ones
    meta.json lists, each a readable Parquet file with the dataset's columns and types, together holding the
    counted rows, and (``hashes``) of the recorded sha256. Returns the meta.json contents."""
    meta = meta or DatasetMeta.read(root)
    for split in SPLITS:
        paths = split_files(root, split)
        check_split(root, split, paths, meta)
        rows = 0
        for path in paths:
            footer = read_footer(path)
            check_file_schema(path, meta.columns, footer.schema.to_arrow_schema())
            rows += footer.num_rows
        check_row_count(root, split, rows, meta)
        if hashes:
            verify_hashes(root, split, meta)
    return meta


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()

