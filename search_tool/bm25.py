"""BM25 retrieval with ``bm25s``: the default retriever (no GPU, no JVM, no model download).

Choices and why:

* ``method="robertson"``, k1=1.5, b=0.75: the classic Okapi formula, so top-5 agrees with
  ``rank_bm25.BM25Okapi`` (the reference people compare against); bm25s' default "lucene" idf
  agrees only ~95% of the time.
* Tokens: lowercase, ``\\w\\w+`` words, English stopwords, Snowball (PyStemmer) stems — the same
  function indexes passages and queries, and tests feed it to rank_bm25 for the comparison.
* Backend: numba when it imports (~100x the numpy backend on batches), numpy otherwise. Numba's
  JIT costs ~8 s per process; we switch on numba's on-disk cache for bm25s' kernels so only the
  first process on a machine pays it.
* Index arrays load memory-mapped, so N server processes share one copy of the index in RAM.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masksearch.core.logs import module_logger
from masksearch.search_tool.corpus import Passage
from masksearch.search_tool.manifest import IndexLoadError, Manifest, package_versions
from masksearch.search_tool.passage_store import PassageStore, write_passage_store
from masksearch.search_tool.types import Hit

logger = module_logger(__name__, default=None)

BM25_SUBDIR = "bm25"
DEFAULT_PARAMS: dict[str, Any] = {"k1": 1.5, "b": 0.75, "method": "robertson", "stemmer": "english"}
# Batches at least this large use numba's parallel kernel; smaller ones run serially, which is
# faster for a handful of queries and safe to call from several threads at once.
PARALLEL_MIN_BATCH = 64
# Extra candidates fetched so that ties at the top-k boundary are broken by row, not by chance.
TIE_MARGIN = 8
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")


@cache
def _bm25s():
    """Import ``bm25s`` and undo its logger setup: it sets its own logger to DEBUG at import, which
    shows its debug lines ("Building index from IDs") at INFO. With no level of its own the
    logger follows ``--log-level`` like every other."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


@cache
def _stopwords() -> frozenset[str]:
    _bm25s()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


class Bm25Tokenizer:
    """Text -> stemmed tokens: lowercase, ``\\w\\w+`` words, English stopwords dropped, Snowball stems.

    Each distinct word is stemmed once and remembered (``word -> stem``, ``""`` for stopwords):
    at 100k passages this halves the build, which is dominated by tokenisation. The memo is
    cleared when it reaches ``max_cache`` words, so arbitrary query text cannot grow it without
    bound, and words longer than ``max_word_chars`` are stemmed every time but never remembered,
    so the memo holds at most ``max_cache * max_word_chars`` characters whatever the queries are.
    Thread-safe: dict reads/writes are atomic, and each thread gets its own stemmer.
    """

    def __init__(self, stemmer: str | None = "english", max_cache: int = 1_000_000, max_word_chars: int = 64):
        self.stemmer_name = stemmer
        self.max_cache = max_cache
        self.max_word_chars = max_word_chars
        self._memo: dict[str, str] = {}
        self._local = threading.local()

    def stem_word(self, word: str) -> str:
        """Stem of one lowercase word; ``""`` for a stopword."""
        if word in _stopwords():
            return ""
        if self.stemmer_name is None:
            return word
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer

            stemmer = self._local.stemmer = Stemmer.Stemmer(self.stemmer_name)
        return stemmer.stemWord(word)

    def __call__(self, text: str) -> list[str]:
        words = _TOKEN_RE.findall(text.lower())
        memo = self._memo
        try:
            stems = [memo[w] for w in words]
        except KeyError:
            if len(memo) >= self.max_cache:
                memo.clear()
            stems = []
            for w in words:
                stem = memo.get(w)
                if stem is None:
                    stem = self.stem_word(w)
                    if len(w) <= self.max_word_chars:
                        memo[w] = stem
                stems.append(stem)
        return [s for s in stems if s]

    def __reduce__(self):
        return (Bm25Tokenizer, (self.stemmer_name, self.max_cache, self.max_word_chars))


def tokenize_for_bm25(texts: Iterable[str], stemmer: str | None = "english") -> list[list[str]]:
    """Tokenise like the index does; public so benchmarks and tests can feed rank_bm25 the same tokens."""
    tokenizer = Bm25Tokenizer(stemmer)
    return [tokenizer(text) for text in texts]


@cache
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:  # numba can fail at import time on odd platforms, not only be absent
        return False
    return True


@cache
def _enable_numba_cache() -> None:
    """Make numba cache bm25s' compiled kernels on disk (bm25s jits them without ``cache=True``).

    Without this every process (each server start, each test run) pays ~8 s of JIT before its
    first query. ``enable_caching`` is numba's public dispatcher API; failure only costs time.
    """
    try:
        _bm25s()
        import bm25s.numba.retrieve_utils as retrieve_utils
        import bm25s.numba.selection as selection
        from numba.core.registry import CPUDispatcher

        for module in (retrieve_utils, selection):
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher):
                    obj.enable_caching()
    except Exception as exc:
        logger.debug("numba caching for bm25s not enabled: %s", exc)


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "numba" if numba_available() else "numpy"
    if backend not in ("numba", "numpy"):
        raise ValueError(f"unknown BM25 backend {backend!r}; choose auto, numba or numpy")
    if backend == "numba" and not numba_available():
        raise ValueError("BM25 backend 'numba' requested but numba does not import; use 'numpy'")
    return backend


def build_bm25_index(
    passages: Iterable[Passage],
    out_dir: str | os.PathLike[str],
    *,
    k1: float = DEFAULT_PARAMS["k1"],
    b: float = DEFAULT_PARAMS["b"],
    show_progress: bool = True,
) -> tuple[dict[str, Any], int]:
    """Tokenise and index passages (title + text) into ``out_dir``; return (params, doc count).

    The passage store is written in the same pass, so a search returns title/text without the
    original corpus. The caller writes the manifest (see :func:`masksearch.search_tool.retrievers.build_index`).
    """
    bm25s = _bm25s()
    out_dir = Path(out_dir)
    tokenizer = Bm25Tokenizer(DEFAULT_PARAMS["stemmer"])
    # Token ids are assigned while tokenising, through a word -> id memo (-1 for stopwords): each
    # distinct word is stemmed once, and bm25s is spared two more corpus passes (vocabulary, then
    # string -> id). Tokenisation dominates the build; this keeps 100k passages well under 20 s.
    vocab: dict[str, int] = {}
    word_ids: dict[str, int] = {}
    corpus_ids: list[list[int]] = []

    def doc_ids(text: str) -> list[int]:
        words = _TOKEN_RE.findall(text.lower())
        try:
            ids = [word_ids[w] for w in words]
        except KeyError:
            for w in words:
                if w not in word_ids:
                    stem = tokenizer.stem_word(w)
                    word_ids[w] = vocab.setdefault(stem, len(vocab)) if stem else -1
            ids = [word_ids[w] for w in words]
        return [i for i in ids if i >= 0]

    def tokenised(stream: Iterable[Passage]) -> Iterable[Passage]:
        for passage in stream:
            corpus_ids.append(doc_ids(passage.contents))
            yield passage

    stream = tqdm(passages, desc="bm25 tokenise", unit="passage", disable=not show_progress)
    n_docs = write_passage_store(tokenised(stream), out_dir)
    model = bm25s.BM25(k1=k1, b=b, method=DEFAULT_PARAMS["method"], backend="numpy")
    model.index((corpus_ids, vocab), show_progress=show_progress)
    model.save(str(out_dir / BM25_SUBDIR), show_progress=False)
    params = {**DEFAULT_PARAMS, "k1": k1, "b": b}
    return params, n_docs


class BM25Retriever:
    """Search a saved bm25s index; see the module docstring for the scoring choices."""

    kind = "bm25"

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        manifest: Manifest,
        *,
        backend: str = "auto",
        mmap: bool = True,
        n_threads: int | None = None,
    ):
        bm25s = _bm25s()
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.backend = resolve_backend(backend)
        if self.backend == "numba":
            _enable_numba_cache()
        started = time.perf_counter()
        model_dir = self.index_dir / BM25_SUBDIR
        if not (model_dir / "params.index.json").is_file():
            raise IndexLoadError(
                f"{self.index_dir} is missing its BM25 files ({BM25_SUBDIR}/); rebuild it with "
                "'masksearch index build --retriever bm25'"
            )
        try:
            self._model = bm25s.BM25.load(
                str(model_dir),
                mmap=mmap,
                load_corpus=False,
                show_progress=False,
                backend=self.backend,
            )
            self.passages = PassageStore(self.index_dir)
        except (OSError, ValueError) as exc:
            raise IndexLoadError(
                f"{self.index_dir}: cannot load the BM25 index ({exc}); rebuild it"
            ) from None
        self.mmap = mmap
        self.doc_count = len(self.passages)
        self._tokenizer = Bm25Tokenizer(manifest.params.get("stemmer", "english"))
        self._n_threads = n_threads or os.cpu_count() or 1
        # numba's thread count is process-global; parallel batches must not interleave.
        self._parallel_lock = threading.Lock()
        logger.info(
            "loaded bm25 index %s: %d passages, backend=%s, mmap=%s (%.2fs)",
            self.index_dir,
            self.doc_count,
            self.backend,
            mmap,
            time.perf_counter() - started,
        )

    def token_ids(self, query: str) -> list[int]:
        vocab = self._model.vocab_dict
        return [vocab[t] for t in self._tokenizer(query) if t in vocab]

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        """Top-``topk`` hits per query; queries with no indexed word get ``[]`` (not arbitrary docs)."""
        results: list[list[Hit]] = [[] for _ in queries]
        if topk <= 0 or not queries:
            return results
        rows, ids = [], []
        for row, query in enumerate(queries):
            token_ids = self.token_ids(query) if isinstance(query, str) else []
            if token_ids:
                rows.append(row)
                ids.append(token_ids)
        if not ids:
            return results
        # Over-fetch a little, then order by (score desc, row asc): equal scores are common (short
        # queries, same-length passages) and bm25s breaks them arbitrarily. A fixed tie-break makes
        # results reproducible across backends and runs, and matches rank_bm25's stable order.
        k = min(topk + TIE_MARGIN, self.doc_count)
        parallel = len(ids) >= PARALLEL_MIN_BATCH and self._n_threads > 1
        # numba: 1 = serial kernel; numpy: 0 = no thread pool.
        serial = 1 if self.backend == "numba" else 0
        kwargs = {"k": k, "show_progress": False, "n_threads": self._n_threads if parallel else serial}
        if parallel and self.backend == "numba":
            with self._parallel_lock:
                docs, scores = self._model.retrieve(ids, **kwargs)
        else:
            docs, scores = self._model.retrieve(ids, **kwargs)
        for row, doc_row, score_row in zip(rows, docs.tolist(), scores.tolist(), strict=True):
            ranked = sorted((-s, d) for d, s in zip(doc_row, score_row, strict=True) if s > 0.0)
            results[row] = [self.passages.hit(d, -neg) for neg, d in ranked[:topk]]
        return results


def bm25_manifest_versions() -> dict[str, str]:
    return package_versions("bm25s", "PyStemmer", "numba", "numpy")
