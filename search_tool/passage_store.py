"""Passages stored next to an index, readable by row number without loading the corpus.

An index must answer with title and text even when the original corpus file is gone or moved,
and a 21M-passage corpus should not sit in every server's heap. So the passages are written as
JSONL plus an ``int64`` offsets array; both are memory-mapped, and a lookup decodes one line.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from masksearch.search_tool.corpus import Passage
from masksearch.search_tool.types import Hit

PASSAGES_FILE = "passages.jsonl"
OFFSETS_FILE = "passages.offsets.npy"


def write_passage_store(passages: Iterable[Passage], folder: str | os.PathLike[str]) -> int:
    """Write ``passages.jsonl`` and its offsets into ``folder``; return the passage count.

    Raises:
        ValueError: no passages (an index of an empty corpus would answer nothing).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    with open(folder / PASSAGES_FILE, "wb") as fh:
        for passage in passages:
            line = json.dumps(
                {"id": passage.id, "title": passage.title, "text": passage.text}, ensure_ascii=False
            ).encode("utf-8")
            fh.write(line + b"\n")
            offsets.append(offsets[-1] + len(line) + 1)
    if len(offsets) == 1:
        raise ValueError("cannot index an empty corpus")
    np.save(folder / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
    return len(offsets) - 1


class PassageStore:
    """Random access to the passages of an index folder (memory-mapped, read-only, thread-safe)."""

    def __init__(self, folder: str | os.PathLike[str]):
        folder = Path(folder)
        self._offsets = np.load(folder / OFFSETS_FILE, mmap_mode="r")
        size = (folder / PASSAGES_FILE).stat().st_size
        if int(self._offsets[-1]) != size:
            raise ValueError(
                f"{folder / PASSAGES_FILE} does not match its offsets file (truncated or edited)"
            )
        with open(folder / PASSAGES_FILE, "rb") as fh:
            # mmap of an empty file is an error; an empty store has no lines to read anyway.
            self._data: mmap.mmap | bytes = (
                mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            )

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        if not 0 <= row < len(self):
            raise IndexError(row)
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        obj = json.loads(self._data[start:end])
        return Passage(obj["id"], obj["title"], obj["text"])

    def hit(self, row: int, score: float) -> Hit:
        """The passage at ``row`` as a search hit with ``score`` (what every retriever returns)."""
        passage = self[row]
        return Hit(passage.id, passage.title, passage.text, score)

    def __iter__(self):
        for row in range(len(self)):
            yield self[row]
