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

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from masksearch.search_tool.types import Hit

# Hard cap on ``queries`` in one request, enforced by the schema itself (a server may set a lower
# limit). The check runs while the list is validated, before any retrieval work.
MAX_QUERIES = 4096
# The retrieval server's optional bearer token: read by the server (``--token-file`` or this
# variable) and sent by the client, never put in a config, a URL or a command line.
TOKEN_ENV = "MASKSEARCH_RETRIEVER_TOKEN"


def read_token(token_file: str | None = None) -> str | None:
    """The bearer token from ``token_file`` (first line), else ``$MASKSEARCH_RETRIEVER_TOKEN``, else None.

    Raises:
        ValueError: the file is missing, unreadable or empty (one line naming the file).
    """
    import os

    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the retriever token file {token_file}: {exc.strerror}") from None
        if not token:
            raise ValueError(f"the retriever token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


class RetrieveRequest(BaseModel):
    """``topk`` may be omitted (the server's default applies), as in Search-R1."""

    queries: list[str] = Field(max_length=MAX_QUERIES)
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
        head, newline, body = self.contents.partition("\n")
        if not newline or not body.strip():  # no title line: all of it is text (as Passage.from_contents)
            return Hit(self.id or fallback_id, "", self.contents.strip(), score)
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


def _without_path(value: Any) -> Any:
    """A string that looks like a local path becomes its last component; containers are walked."""
    if isinstance(value, dict):
        return {k: _without_path(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_path(v) for v in value]
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return value


def public_index_info(info: dict[str, Any]) -> dict[str, Any]:
    """What ``/health`` may show about an index: no local paths (an encoder folder becomes its name).

    >>> public_index_info({"kind": "dense", "params": {"model": "/home/me/models/e5-base", "k1": 1.5}})
    {'kind': 'dense', 'params': {'model': 'e5-base', 'k1': 1.5}}
    """
    return {k: _without_path(v) for k, v in info.items() if k not in ("corpus_path", "index_dir")}
