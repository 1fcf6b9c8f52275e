"""Hybrid retrieval: reciprocal-rank fusion (RRF) of BM25 and dense results.

RRF (Cormack et al., 2009) scores a passage ``sum_r 1 / (k + rank_r)`` over the rankers that
returned it (rank from 1). It needs no score calibration between BM25 (unbounded) and cosine
([-1, 1]), which is why it is the usual first choice; ``k=60`` is the paper's constant.
"""

from __future__ import annotations

from collections.abc import Sequence

from masksearch.search_tool.manifest import Manifest
from masksearch.search_tool.types import Hit

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], topk: int, k: int = RRF_K) -> list[Hit]:
    """Fuse ranked hit lists by passage id; ties keep the order of first appearance.

    >>> a = [Hit("1", "A", "x", 9.0), Hit("2", "B", "y", 5.0)]
    >>> b = [Hit("2", "B", "y", 0.9), Hit("3", "C", "z", 0.8)]
    >>> [h.id for h in reciprocal_rank_fusion([a, b], topk=3)]
    ['2', '1', '3']
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda pid: -scores[pid])  # sorted() is stable
    return [Hit(pid, first[pid].title, first[pid].text, scores[pid]) for pid in order[:topk]]


class HybridRetriever:
    """Run both retrievers at depth ``max(topk, depth)`` and fuse with RRF."""

    kind = "hybrid"

    def __init__(self, bm25, dense, manifest: Manifest, *, depth: int = 50, rrf_k: int = RRF_K):
        if bm25.doc_count != dense.doc_count:
            raise ValueError("hybrid parts index different corpora (doc counts differ)")
        self.bm25 = bm25
        self.dense = dense
        self.manifest = manifest
        self.doc_count = bm25.doc_count
        self.depth = depth
        self.rrf_k = rrf_k

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        if topk <= 0:
            return [[] for _ in queries]
        depth = max(topk, self.depth)
        sparse = self.bm25.search(queries, depth)
        dense = self.dense.search(queries, depth)
        return [reciprocal_rank_fusion([s, d], topk, self.rrf_k) for s, d in zip(sparse, dense, strict=True)]
