"""One interface over every retriever, plus building, loading and caching index folders.

An index folder holds ``manifest.json`` (kind, parameters, corpus sha256, doc count, versions),
the passages (so hits carry title and text without the corpus) and the kind's own files.
``load_retriever`` is the only way the server, the client and the CLI open an index, so the
corpus check happens everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from masksearch import cache_root
from masksearch.core.atomic import apply_umask
from masksearch.core.logs import module_logger
from masksearch.search_tool.corpus import file_sha256, read_corpus
from masksearch.search_tool.manifest import KINDS, IndexLoadError, Manifest, package_versions
from masksearch.search_tool.types import Hit

logger = module_logger(__name__, None)

HYBRID_PARTS = {"bm25": "sparse", "dense": "dense"}


@runtime_checkable
class Retriever(Protocol):
    """What the server and the in-process client need from a retriever."""

    kind: str
    doc_count: int
    manifest: Manifest

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        """Top-``topk`` hits per query, best first; ``[]`` for a query nothing matches."""
        ...


def build_index(
    corpus: str | os.PathLike[str],
    kind: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    **params: Any,
) -> Manifest:
    """Index a corpus file into ``out`` and write its manifest.

    ``params`` go to the kind's builder: bm25 takes ``k1``/``b``; dense takes ``model``,
    ``batch_size``, ``device``, ``query_prefix``, ``passage_prefix``; hybrid takes both sets plus
    ``depth``/``rrf_k``. The build happens in a temporary sibling folder that is renamed into
    place at the end, so an interrupted build never leaves a half index that looks valid.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown retriever kind {kind!r}; known: {list(KINDS)}")
    corpus = Path(corpus)
    if not corpus.is_file():
        raise FileNotFoundError(f"corpus not found: {corpus}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _build_into(corpus, kind, tmp, show_progress=show_progress, **params)
        apply_umask(tmp)  # mkdtemp makes it 0700; the index folder follows the umask like its files
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "built %s index of %d passages in %.1fs -> %s", kind, manifest.doc_count, manifest.build_seconds, out
    )
    return manifest


def _build_into(corpus: Path, kind: str, folder: Path, *, show_progress: bool, **params: Any) -> Manifest:
    sha = file_sha256(corpus)
    started = time.perf_counter()
    if kind == "bm25":
        from masksearch.search_tool.bm25 import bm25_manifest_versions, build_bm25_index

        used, n_docs = build_bm25_index(read_corpus(corpus), folder, show_progress=show_progress, **params)
        versions = bm25_manifest_versions()
    elif kind == "dense":
        from masksearch.search_tool.dense import build_dense_index, dense_manifest_versions

        used, n_docs = build_dense_index(read_corpus(corpus), folder, show_progress=show_progress, **params)
        versions = dense_manifest_versions()
    else:
        fusion = {key: params.pop(key) for key in ("depth", "rrf_k") if key in params}
        bm25_keys = {"k1", "b"}
        parts = {}
        for part_kind, sub in HYBRID_PARTS.items():
            part_params = {k: v for k, v in params.items() if (k in bm25_keys) == (part_kind == "bm25")}
            parts[part_kind] = _build_into(
                corpus, part_kind, folder / sub, show_progress=show_progress, **part_params
            )
        n_docs = parts["bm25"].doc_count
        used = {"parts": HYBRID_PARTS, "depth": 50, "rrf_k": 60, **fusion}
        used.update({part_kind: m.params for part_kind, m in parts.items()})
        versions = {**parts["bm25"].versions, **parts["dense"].versions}
    manifest = Manifest(
        kind=kind,
        params=used,
        corpus_sha256=sha,
        doc_count=n_docs,
        corpus_path=str(corpus.resolve()),
        versions=versions,
        build_seconds=round(time.perf_counter() - started, 3),
    )
    manifest.write(folder)
    return manifest


def load_retriever(
    index_dir: str | os.PathLike[str],
    corpus: str | os.PathLike[str] | None = None,
    *,
    backend: str = "auto",
    mmap: bool = True,
    device: str | None = None,
) -> Retriever:
    """Open an index folder; refuse it if ``corpus`` is given and is not the corpus it was built from.

    Args:
        index_dir: folder written by :func:`build_index` / ``masksearch index build``.
        corpus: optional corpus file to check against the manifest's sha256.
        backend: BM25 scoring backend (``auto`` = numba when available, else numpy).
        mmap: memory-map BM25 arrays (shared between processes, near-instant load).
        device: torch device for a dense encoder (default: cuda when available).

    Raises:
        IndexLoadError: missing/invalid folder or manifest; IndexMismatchError (a subclass) when
        the corpus does not match.
    """
    index_dir = Path(index_dir)
    manifest = Manifest.read(index_dir)
    if corpus is not None:
        if not Path(corpus).is_file():
            raise IndexLoadError(f"corpus not found: {corpus}")
        manifest.check_corpus(file_sha256(corpus), str(corpus))
    loader = _LOADERS[manifest.kind]
    retriever = loader(index_dir, manifest, backend=backend, mmap=mmap, device=device)
    if retriever.doc_count != manifest.doc_count:
        raise IndexLoadError(
            f"{index_dir}: manifest says {manifest.doc_count} passages, found {retriever.doc_count}; rebuild it"
        )
    return retriever


def _load_bm25(index_dir: Path, manifest: Manifest, *, backend: str, mmap: bool, device: str | None):
    from masksearch.search_tool.bm25 import BM25Retriever

    return BM25Retriever(index_dir, manifest, backend=backend, mmap=mmap)


def _load_dense(index_dir: Path, manifest: Manifest, *, backend: str, mmap: bool, device: str | None):
    from masksearch.search_tool.dense import DenseRetriever

    return DenseRetriever(index_dir, manifest, device=device)


def _load_hybrid(index_dir: Path, manifest: Manifest, *, backend: str, mmap: bool, device: str | None):
    from masksearch.search_tool.hybrid import HybridRetriever

    bm25_dir = manifest.part_dir(index_dir, "bm25", HYBRID_PARTS["bm25"])
    dense_dir = manifest.part_dir(index_dir, "dense", HYBRID_PARTS["dense"])
    bm25 = load_retriever(bm25_dir, backend=backend, mmap=mmap)
    dense = load_retriever(dense_dir, device=device)
    return HybridRetriever(
        bm25,
        dense,
        manifest,
        depth=int(manifest.params.get("depth", 50)),
        rrf_k=int(manifest.params.get("rrf_k", 60)),
    )


_LOADERS: dict[str, Callable[..., Retriever]] = {
    "bm25": _load_bm25,
    "dense": _load_dense,
    "hybrid": _load_hybrid,
}


def cached_index(
    corpus: str | os.PathLike[str],
    kind: str = "bm25",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = False,
    **params: Any,
) -> Path:
    """Return an index folder for (corpus checksum, kind, params), building it only the first time.

    Dense encoding takes minutes on CPU; keying by the corpus *content* (not its path) means the
    demo, the tests and the benchmark reuse one build. Default folder: ``<cache_root()>/indexes``.
    """
    sha = file_sha256(corpus)
    key_params = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "indexes"
    out = folder / f"{kind}-{sha[:16]}-{key_params}"
    if (out / "manifest.json").is_file():
        return out
    build_index(corpus, kind, out, overwrite=True, show_progress=show_progress, **params)
    return out


def describe(retriever: Retriever) -> dict[str, Any]:
    """Short, JSON-safe summary for ``/health`` and the CLI."""
    m = retriever.manifest
    return {
        "kind": retriever.kind,
        "doc_count": retriever.doc_count,
        "corpus_sha256": m.corpus_sha256,
        "params": m.params,
        "created_at": m.created_at,
        "versions": m.versions or package_versions(),
    }
