"""Atomic writes: a file or folder a later step trusts is either the old one, the new one, or absent.

Every helper writes into a temporary sibling (same folder, so the same filesystem), fsyncs it and
``os.replace``-s it onto the target, then fsyncs the parent folder so the rename itself survives a
power cut. A crash (``kill -9``, OOM) in the middle leaves at most a ``.<name>.tmp-*`` sibling,
never a torn target.

    with atomic_path("out/train.parquet") as tmp:   # for writers that take a path
        pyarrow.parquet.write_table(table, tmp)
    atomic_write_text("out/run.json", json.dumps(info))
    with atomic_dir("ckpt/huggingface_merged") as tmp:  # a whole folder
        save_everything_into(tmp)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str]) -> Path:
    """Give a ``tempfile``-made file (0600) or folder (0700) the mode a plain ``open``/``mkdir`` gets.

    ``mkstemp``/``mkdtemp`` create private entries on purpose; once renamed onto a user-visible target
    they should follow the umask like any other output (0644 / 0755 under umask 022).
    """
    path = Path(path)
    base = 0o777 if path.is_dir() else 0o666
    path.chmod(base & ~current_umask())
    return path


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the data is still flushed
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            apply_umask(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], value: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(value, **dumps_kwargs)`` plus a newline, written atomically."""
    return atomic_write_text(path, json.dumps(value, **dumps_kwargs) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``path`` (an old one is removed).

    A folder cannot be swapped in one ``rename`` when the target exists, so the old one is first
    renamed aside: a crash between the two renames leaves ``path`` absent (and the old copy as
    ``.<name>.old-*``), never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        apply_umask(tmp)
        _fsync_tree(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        _fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
