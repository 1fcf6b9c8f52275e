"""Search-R1's ``/retrieve`` wire format, defined once for our server and our client.

Request::

    {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}

Response with ``return_scores`` true (each item wraps the document)::

    {"result": [[{"document": {"id": "7", "contents": "Title\\ntext"}, "score": 12.3}, ...], ...]}

and with ``return_scores`` false, as Search-R1's ``retrieval_server.py`` does, each item *is* the
document dict. Search-R1's own BM25 server sends documents without ``id`` but with
``title``/``text`` next to ``contents``; :meth:`Document.to_hit` accepts every variant, so our
client works against either server.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

from masksearch.search_tool.types import Hit


class RetrieveRequest(BaseModel):
    """``topk`` may be omitted (the server's default applies), as in Search-R1."""

    queries: list[str]
    topk: int | None = None
    return_scores: bool = False


class Document(BaseModel):
    """A corpus row as Search-R1 sends it; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    contents: str = ""

    @classmethod
    def from_hit(cls, hit: Hit) -> Document:
        return cls(id=hit.id, contents=hit.contents)

    def to_hit(self, score: float = 0.0, fallback_id: str = "") -> Hit:
        extra = self.model_extra or {}
        title, text = extra.get("title"), extra.get("text")
        if isinstance(title, str) and isinstance(text, str):
            return Hit(self.id or fallback_id, title, text, score)
        head, _, body = self.contents.partition("\n")
        head = head.strip()
        if len(head) >= 2 and head[0] == head[-1] == '"':  # wiki-18 quotes its titles
            head = head[1:-1]
        return Hit(self.id or fallback_id, head, body.strip(), score)


class ScoredDocument(BaseModel):
    document: Document
    score: float


def _item_kind(value: Any) -> str:
    if isinstance(value, ScoredDocument) or (isinstance(value, dict) and "document" in value):
        return "scored"
    return "document"


ResultItem = Annotated[
    Annotated[ScoredDocument, Tag("scored")] | Annotated[Document, Tag("document")],
    Discriminator(_item_kind),
]


class RetrieveResponse(BaseModel):
    """One list of items per query, in request order."""

    result: list[list[ResultItem]]

    @classmethod
    def from_hits(cls, hits: list[list[Hit]], return_scores: bool) -> RetrieveResponse:
        if return_scores:
            result = [
                [ScoredDocument(document=Document.from_hit(h), score=h.score) for h in row] for row in hits
            ]
        else:
            result = [[Document.from_hit(h) for h in row] for row in hits]
        return cls(result=result)

    def to_hits(self) -> list[list[Hit]]:
        out = []
        for row in self.result:
            hits = []
            for rank, item in enumerate(row):
                if isinstance(item, ScoredDocument):
                    hits.append(item.document.to_hit(item.score, fallback_id=str(rank)))
                else:
                    hits.append(item.to_hit(0.0, fallback_id=str(rank)))
            out.append(hits)
        return out


class HealthResponse(BaseModel):
    """``GET /health``: readiness, what is served, and the server's counters."""

    status: str
    ready: bool
    kind: str
    doc_count: int
    index: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
