"""Value types shared by every retriever, the server, the client and the environment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One retrieved passage. ``score`` is retriever-specific (BM25, cosine, or RRF), higher is better."""

    id: str
    title: str
    text: str
    score: float

    @property
    def contents(self) -> str:
        """Search-R1's ``contents`` field: ``Title\\ntext``."""
        return f"{self.title}\n{self.text}"


@dataclass(frozen=True)
class SearchOutcome:
    """Result for one query: hits, or an error message (never both), and the call's latency.

    The one search-result type: the client returns it and the env's never-raising wrappers
    (``masksearch.env.retrieval``) pass it on; ``cached`` means the client's cache answered.
    """

    hits: list[Hit] = field(default_factory=list)
    error: str | None = None
    latency_s: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None
