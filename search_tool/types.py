"""Value types shared by every retriever, the server and the client."""

from __future__ import annotations

from dataclasses import dataclass


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
