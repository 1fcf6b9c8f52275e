"""The one reader for the JSON-lines files runs append to: eval trajectories, SFT kept/rejected
records, watchdog events, verl's metrics and rollout dumps.

A writer killed mid-line leaves a torn last line, and a resumed run appends after it, so a reader
skips what does not parse instead of failing the whole file; each caller decides whether a missing
file is an error and whether a skipped line is worth a warning (``on_skip``).

verl's file logger does not append: it opens its file with ``"wb"``, so a resumed run would erase
the steps logged before the kill. :func:`set_aside` keeps them (the file becomes ``<name>.part1``,
``.part2``, ...) and :func:`read_jsonl_parts` reads the parts and the file back as one log; a run
from scratch :func:`discard_parts` first, as verl starts the file over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["NOT_AN_OBJECT", "UNREADABLE", "discard_parts", "read_jsonl", "read_jsonl_parts", "set_aside"]

#: The reasons :func:`read_jsonl` gives ``on_skip``.
UNREADABLE = "unreadable line"
NOT_AN_OBJECT = "not an object"


def read_jsonl(
    path: str | os.PathLike[str],
    *,
    on_skip: Callable[[int, str], object] | None = None,
    errors: str = "strict",
) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``path``, one per line, in file order.

    Blank lines are passed over; a line that is not JSON (a torn write) or not a JSON object is
    skipped and, with ``on_skip``, reported as ``on_skip(line_number, UNREADABLE | NOT_AN_OBJECT)``
    (numbers from 1). A missing file yields nothing. ``errors`` is the text decoding's
    (``"replace"`` for files other programs write).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.jsonl"
    >>> _ = p.write_text('{"id": 1}\\n\\n[1]\\n{"id": 2}\\n{"id": 3', encoding="utf-8")
    >>> list(read_jsonl(p, on_skip=lambda n, why: print(n, why)))
    3 not an object
    5 unreadable line
    [{'id': 1}, {'id': 2}]
    """
    path = Path(path)
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors=errors) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                reason = UNREADABLE
            else:
                if isinstance(record, dict):
                    yield record
                    continue
                reason = NOT_AN_OBJECT
            if on_skip is not None:
                on_skip(number, reason)


def _parts(path: Path) -> list[tuple[int, Path]]:
    """``(k, <name>.part<k>)`` beside ``path``, by k."""
    import glob

    prefix = f"{path.name}.part"
    found = []
    for part in path.parent.glob(f"{glob.escape(prefix)}*"):
        tail = part.name[len(prefix) :]
        if tail.isdigit():
            found.append((int(tail), part))
    return sorted(found)


def set_aside(path: str | os.PathLike[str]) -> Path | None:
    """Before a writer that truncates ``path`` starts again: a non-empty ``path`` is renamed to
    ``<name>.part<k>`` (the next free k) and that name returned; ``None`` when there was nothing to keep.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = p.write_text('{"step": 1}\\n', encoding="utf-8")
    >>> set_aside(p).name, set_aside(p)
    ('m.jsonl.part1', None)
    >>> _ = p.write_text('{"step": 2}\\n', encoding="utf-8")
    >>> [r["step"] for r in read_jsonl_parts(p)]
    [1, 2]
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    parts = _parts(path)
    target = path.with_name(f"{path.name}.part{(parts[-1][0] if parts else 0) + 1}")
    path.rename(target)
    return target


def discard_parts(path: str | os.PathLike[str]) -> int:
    """Before a run from scratch writes ``path``: delete the parts an earlier run's resumes kept (they
    would be read back before the new run's lines); returns how many."""
    parts = _parts(Path(path))
    for _, part in parts:
        part.unlink(missing_ok=True)
    return len(parts)


def read_jsonl_parts(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """:func:`read_jsonl` of the parts :func:`set_aside` kept (oldest first), then of ``path``."""
    path = Path(path)
    for _, part in _parts(path):
        yield from read_jsonl(part, **kwargs)
    yield from read_jsonl(path, **kwargs)
