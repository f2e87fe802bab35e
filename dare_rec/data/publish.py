"""Atomic dataset output: a dataset is written beside its destination and swapped in only when complete.

``dare-rec prepare --out DIR`` writes into ``.DIR.tmp-<host>-<pid>-<token>/`` next to ``DIR``. When the
producer has written every split and meta.json, the folder is verified (meta.json reads back, every split's
files are the ones it lists, readable Parquet of the dataset's schema with the counted rows, and of the
recorded sha256), fsynced, and exchanged with ``DIR`` in one ``renameat2(RENAME_EXCHANGE)``; the old dataset,
now under the temporary name, is then removed. A kill at any moment leaves ``DIR`` holding either the old
dataset or the new one, whole. Where the filesystem cannot exchange, the old folder is renamed aside to
``.DIR.old-<host>-<pid>-<token>/`` first and the new one renamed in; the next run on ``DIR`` moves an old
folder back if a kill fell between the two renames.

Nothing that prepare did not write is deleted: an existing non-empty ``DIR`` is replaced only when it is a
dataset of ours (a valid meta.json, and nothing in the folder but meta.json, the split folders and the files
meta.json lists), unless the caller passes ``overwrite``. Temporary folders of earlier runs on this host
whose process is gone are removed (they are recognised by name: nothing else is touched).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator, List, Optional

from dare_rec.data import schema
from dare_rec.durable import fsync_dir

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _name_pattern(dest: Path) -> re.Pattern:
    """Our temporary (``tmp``) and set-aside (``old``) folders for ``dest``: kind, host, pid."""
    return re.compile(rf"^\.{re.escape(dest.name)}\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _orphans(dest: Path) -> List[tuple]:
    """(kind, path) of our temporary and set-aside folders for ``dest`` left by dead processes of this host."""
    pattern, host, found = _name_pattern(dest), _host(), []
    if not dest.parent.is_dir():
        return found
    for path in sorted(dest.parent.iterdir()):
        m = pattern.match(path.name)
        if m and path.is_dir() and not path.is_symlink() and m["host"] == host and not _pid_alive(int(m["pid"])):
            found.append((m["kind"], path))
    return found


def recover(dest: Path) -> None:
    """Cleans up after killed runs on ``dest``: puts back a set-aside dataset that a kill left without a
    replacement (non-exchanging filesystems only), and removes the other leftovers."""
    for kind, path in _orphans(dest):
        if kind == "old" and not dest.exists():
            os.replace(path, dest)
        else:
            shutil.rmtree(path)


def foreign_entry(dest: Path) -> Optional[str]:
    """Why ``dest`` may not be replaced without ``overwrite`` (None if it may): it is not a folder, or a
    non-empty one that is not a dataset of ours, or one that holds a file or folder prepare did not write."""
    if not dest.exists() and not dest.is_symlink():
        return None
    if not dest.is_dir():
        return f"{dest}: exists and is not a folder"
    if not any(dest.iterdir()):
        return None
    try:
        meta = schema.DatasetMeta.read(dest)
    except schema.DataError as e:
        return f"{dest}: not empty and not a dataset written by `dare-rec prepare` ({e})"
    ours = {"meta.json", *schema.SPLITS, *(name for files in meta.files.values() for name in files)}
    for path in sorted(dest.rglob("*")):
        name = path.relative_to(dest).as_posix()
        if name not in ours:
            return f"{path}: not written by `dare-rec prepare` (meta.json does not list it)"
    return None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux ``renameat2``); False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _fsync_tree(root: Path) -> None:
    """fsyncs every file and folder under ``root`` (Parquet writers do not), so the swap publishes durable data."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


@contextlib.contextmanager
def publish_dataset(dest: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yields a new empty folder to write a dataset into; on a clean exit verifies it and swaps it in as ``dest``.

    Raises DataError before anything is written when ``dest`` may not be replaced (see :func:`foreign_entry`)
    and ``overwrite`` is false, and when the written dataset does not verify. On any error (or kill) ``dest``
    is left as it was; the temporary folder is removed (after a kill: by the next run on ``dest``).
    """
    dest = Path(os.path.abspath(dest))  # "." or "..": the temporary folder needs a name and a parent
    if dest.is_symlink():
        dest = dest.resolve()  # replace the folder the link points to, not the link
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    problem = foreign_entry(dest)
    if problem is not None and not dest.is_dir():
        raise schema.DataError(f"{problem}; choose another --out")
    if problem is not None and not overwrite:
        raise schema.DataError(f"{problem}; prepare replaces the whole folder, so it would be deleted: choose "
                               f"another --out, or pass --overwrite to replace the folder and all it holds")
    tag = f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        schema.verify_dataset(tmp)
        _fsync_tree(tmp)
        if not dest.exists():
            os.rename(tmp, dest)
        elif not _exchange(tmp, dest):
            old = dest.parent / f".{dest.name}.old-{tag}"
            os.rename(dest, old)
            try:
                os.rename(tmp, dest)
            except BaseException:
                os.rename(old, dest)
                raise
            tmp = old
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():  # the new data after an error, or the old dataset after the swap
            shutil.rmtree(tmp)
