"""The corpus format search_tool reads: Search-R1's JSONL, one ``{"id": str, "contents": "Title\\ntext"}`` a line.

This part owns its input format: the :class:`Passage` type, the readers of corpus files
(our JSONL, Search-R1's ``"\\"Title\\"\\ntext"`` rows, or ``id``/``title``/``text`` JSONL or parquet),
:func:`read_corpus`, the checksum that identifies a corpus in index manifests
(:func:`file_sha256`) and the writer (:func:`write_passages_jsonl`). The builders that produce
corpora (the embedded Wikipedia default, chunking, bad-row reports) live in
:mod:`masksearch.data.corpus` and write this format.

>>> p = Passage.from_contents("7", '"Paris"\\nCapital of France.')
>>> (p.title, p.text, p.contents)
('Paris', 'Capital of France.', 'Paris\\nCapital of France.')
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BadRow",
    "CorpusError",
    "Passage",
    "file_sha256",
    "iter_rows",
    "read_corpus",
    "to_passage",
    "write_passages_jsonl",
]


class CorpusError(ValueError):
    """A corpus cannot be built or read; the message says which row and why."""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit: the title is kept apart so observations can show ``(Title: …)``."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Search-R1's single-field form: ``Title\\ntext``."""
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, id: str, contents: str) -> Passage:
        """Split Search-R1 ``contents``; wiki-18 wraps the title in double quotes, which we drop.

        ``contents`` with no line break, or whose text after the first line is empty, has no title
        line: all of it is the text and the title is empty, so corpora of untitled passages work as
        they are. An empty first line is an empty title (what ``Passage.contents`` writes for an
        untitled passage, so the two round-trip). Only all-whitespace contents is a bad row.

        >>> Passage.from_contents("8", "Just a passage, no title.")
        Passage(id='8', title='', text='Just a passage, no title.')
        >>> Passage.from_contents("9", "\\nline one\\nline two")
        Passage(id='9', title='', text='line one\\nline two')
        """
        title, newline, text = contents.partition("\n")
        if not newline or not text.strip():
            return cls(id=id, title="", text=contents.strip())
        title = title.strip()
        if len(title) >= 2 and title.startswith('"') and title.endswith('"'):
            title = title[1:-1]
        return cls(id=id, title=title, text=text.strip())

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "contents": self.contents}


class BadRow(Exception):
    """Internal: one source row is unusable; carries where and why."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any] | BadRow]:
    """Read bytes and decode per line, so one bad line costs one row, not the file."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            where = f"line {line_no}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRow(where, f"not UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRow(where, f"bad JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                yield BadRow(where, f"expected a JSON object, got {type(row).__name__}")
                continue
            row["_where"] = where
            yield row


def _iter_parquet(path: Path) -> Iterator[dict[str, Any] | BadRow]:
    """Stream record batches so a large parquet file never sits in memory as Python objects."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    row_no = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            row_no += 1
            row["_where"] = f"row {row_no}"
            yield row


def iter_rows(source: str | os.PathLike[str]) -> Iterator[dict[str, Any] | BadRow]:
    """The raw rows of a ``.jsonl`` or ``.parquet`` corpus file, each with ``_where``, or :class:`BadRow`."""
    path = Path(source)
    if not path.is_file():
        raise CorpusError(f"corpus source not found: {path} (use a .jsonl/.parquet file)")
    if path.suffix == ".parquet":
        return _iter_parquet(path)
    if path.suffix in {".jsonl", ".json", ".ndjson"}:
        return _iter_jsonl(path)
    raise CorpusError(f"unsupported corpus format {path.suffix!r}; expected .jsonl or .parquet")


def _as_text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"field {name!r} is not UTF-8") from exc
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is {type(value).__name__}, expected a string")
    return value


def to_passage(row: dict[str, Any]) -> Passage:
    """Accept ``id``+``title``+``text`` or Search-R1 ``id``+``contents``; raise ValueError otherwise."""
    raw_id = row.get("id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise ValueError("missing 'id'")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, bytes)):
        raise ValueError(f"'id' is {type(raw_id).__name__}, expected a string or integer")
    doc_id = str(raw_id) if isinstance(raw_id, int) else _as_text(raw_id, "id").strip()
    if row.get("text") is not None:
        if row.get("title") is None:
            raise ValueError("missing 'title' (rows need id+title+text or id+contents)")
        passage = Passage(
            doc_id, _as_text(row["title"], "title").strip(), _as_text(row["text"], "text").strip()
        )
    elif row.get("contents") is not None:
        passage = Passage.from_contents(doc_id, _as_text(row["contents"], "contents"))
    else:
        raise ValueError("missing 'text' or 'contents'")
    if not passage.text:
        raise ValueError("empty text")
    if "\x00" in passage.text or "\x00" in passage.title:
        raise ValueError("NUL byte in text")
    return passage


def read_corpus(path: str | os.PathLike[str]) -> Iterator[Passage]:
    """Yield the passages of a corpus file (ours, Search-R1 JSONL, or any accepted source format).

    Reading is lenient about row shape (``title``/``text`` or ``contents``) but strict about
    validity: a corpus that made it past :func:`build_corpus` has no bad rows, so one here means
    the file was edited or truncated, and we raise :class:`CorpusError` naming the row.
    """
    for item in iter_rows(path):
        if isinstance(item, BadRow):
            raise CorpusError(f"{path}: bad row at {item.where}: {item.reason}")
        where = item.pop("_where", "?")
        try:
            yield to_passage(item)
        except ValueError as exc:
            raise CorpusError(f"{path}: bad row at {where}: {exc}") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Checksum of a file's bytes; identifies a corpus in index manifests and cache keys."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_passages_jsonl(passages: Iterable[Passage], out: str | os.PathLike[str]) -> int:
    """Write passages in our JSONL shape (tests and tools that make small corpora use this)."""
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for passage in passages:
            fh.write(json.dumps(passage.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n
