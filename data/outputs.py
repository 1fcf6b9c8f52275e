"""Checks on the ``--out`` of the data commands, so a bad path is one line, not a traceback.

Each check runs before any work is done (a RAMP build with the LLM extractor can take hours), and
:func:`writing` turns an ``OSError`` at write time (permissions, a full disk) into the same kind of
one-line error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from masksearch.core.errors import UserFacingError


def _check_ancestors(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder (``somefile/x`` cannot be created)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserFacingError(f"{flag} {path}: {parent} is a file, not a folder")
            return


def check_out_file(
    path: str | os.PathLike[str], *, flag: str = "--out", suffixes: Iterable[str] = (), note: str = ""
) -> Path:
    """An output *file* path that can be written: not a folder, not under a file, one of ``suffixes``.

    ``note`` follows the list of suffixes in the message (e.g. ``" (the suffix picks the format)"``).
    """
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.is_dir():
        raise UserFacingError(f"{flag} {path} is a folder; give a file path")
    if suffixes and path.suffix not in suffixes:
        accepted = " or ".join([", ".join(suffixes[:-1]), suffixes[-1]] if len(suffixes) > 1 else suffixes)
        raise UserFacingError(f"{flag} must end with {accepted}{note}, got {path}")
    _check_ancestors(path, flag)
    return path


def check_out_dir(
    path: str | os.PathLike[str], *, overwrite: bool, replaces: str, flag: str = "--out"
) -> Path:
    """An output *folder* that can be written: not a file, not under a file, and empty unless ``overwrite``.

    ``replaces`` names what an overwrite replaces, for the message (e.g. ``"train.parquet, ..."``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserFacingError(f"{flag} {path} is a file; give a folder")
    _check_ancestors(path, flag)
    if path.is_dir() and not overwrite and any(path.iterdir()):
        raise UserFacingError(
            f"{flag} {path} exists and is not empty; pass --overwrite to replace its {replaces}, "
            "or choose another folder"
        )
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into a one-line :class:`UserFacingError`."""
    try:
        yield
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.filename is not None:
            detail += f" ({exc.filename})"
        raise UserFacingError(f"cannot write {path}: {detail}") from exc
