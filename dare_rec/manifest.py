"""Checkpoint manifests: the size and sha256 of every file of a checkpoint, recorded when it is written and
verified before it is used.

``<checkpoint>/manifest.json``::

    {"version": 1, "files": {".metadata": {"bytes": 25644, "sha256": "..."}, "__0_0.distcp": {...}, ...}}

Rank 0 writes it last, after every rank's shards and rank files and its own config and state exist, and before
the folder is renamed into place (``dare_rec/checkpoint.py``), so every complete checkpoint has one. Files
added later (``eval-test.json`` of ``dare-rec evaluate``) are not listed and not checked. A listed file that is
missing, of another size or of another sha256 is a :class:`CheckpointError` naming it.

Cost: reading and hashing every byte, at save and at load. sha256 runs at about 0.5-2 GB/s per core (see
docs/operations.md#reliability for the measured numbers); files are hashed on a thread pool (hashlib releases
the GIL), so a checkpoint of many shard files hashes on several cores. This module imports no torch, so the
CLI error handling (``pipelines/errors.py``) can name CheckpointError.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, Optional

from dare_rec.data.schema import sha256_file

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_HASH_THREADS = 8


class CheckpointError(ValueError):
    """A checkpoint on disk is damaged, incomplete or unreadable; the message names the file."""


def file_records(folder: Path, names: Iterable[str]) -> Dict[str, Dict[str, object]]:
    """``{name: {"bytes", "sha256"}}`` of files of ``folder``, hashed in parallel."""
    names = sorted(names)
    workers = max(1, min(_HASH_THREADS, len(names), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        digests = list(pool.map(lambda name: sha256_file(folder / name), names))
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": digest} for name, digest in zip(names, digests)}


def manifest_text(folder: Path) -> str:
    """The manifest of every file now in ``folder`` (the manifest itself excluded), as JSON text."""
    names = [p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST]
    return json.dumps({"version": MANIFEST_VERSION, "files": file_records(folder, names)}, indent=2,
                      sort_keys=True) + "\n"


def read_manifest(folder: Path) -> Dict[str, Dict[str, object]]:
    """The files a checkpoint's manifest lists; CheckpointError if it is missing or not a manifest."""
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; every checkpoint gets one when it is written (a checkpoint of an "
                              f"older version, or a damaged one), so its files cannot be verified")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        files = raw["files"]
        ok = raw["version"] == MANIFEST_VERSION and isinstance(files, dict) and all(
            isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str)
            for r in files.values())
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: not a valid checkpoint manifest ({type(e).__name__}: {e})") from None
    if not ok:
        raise CheckpointError(f"{path}: not a valid checkpoint manifest (version {MANIFEST_VERSION} with "
                              f"files -> {{bytes, sha256}} expected)")
    return files


def verify_checkpoint(folder: Path, names: Optional[Iterable[str]] = None) -> None:
    """Checks every file the manifest lists (or only ``names``) for presence, size and sha256.

    Sizes are compared first, for all files, so a truncated shard fails before anything is hashed.
    """
    listed = read_manifest(folder)
    wanted = sorted(listed) if names is None else sorted(names)
    for name in wanted:
        path = folder / name
        if name not in listed:
            raise CheckpointError(f"{path}: not listed in {folder / MANIFEST}")
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST}); the checkpoint is damaged")
        size = path.stat().st_size
        if size != listed[name]["bytes"]:
            raise CheckpointError(f"{path}: {size:,} bytes, {MANIFEST} records {listed[name]['bytes']:,}; the file "
                                  f"was truncated or overwritten after the checkpoint was written")
    actual = file_records(folder, wanted)
    for name in wanted:
        if actual[name]["sha256"] != listed[name]["sha256"]:
            raise CheckpointError(f"{folder / name}: sha256 {actual[name]['sha256'][:12]}... differs from "
                                  f"{MANIFEST}'s {str(listed[name]['sha256'])[:12]}...; the file changed after the "
                                  f"checkpoint was written")
