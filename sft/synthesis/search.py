"""Thread-safe wrappers the teachers share: a locked tokenizer and a never-raising search function."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["LockedTokenizer", "SearchFn"]


class LockedTokenizer:
    """Fast tokenizers are not safe to call from several threads at once; serialise them."""

    _LOCKED = frozenset({"encode", "decode", "apply_chat_template", "__call__", "convert_ids_to_tokens"})

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tokenizer, name)
        if name in self._LOCKED and callable(attr):

            def locked(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    return attr(*args, **kwargs)

            return locked
        return attr


class SearchFn:
    """``query -> SearchOutcome`` over a search client, never raising; in-process indexes locked."""

    def __init__(self, client: Any, topk: int, serialise: bool):
        self.client = client
        self.topk = topk
        self._lock = threading.Lock() if serialise else None

    def search(self, queries: list[str], topk: int) -> Any:  # the client protocol, for the env runner
        if self._lock is None:
            return self.client.search(queries, topk)
        with self._lock:
            return self.client.search(queries, topk)

    def __call__(self, query: str) -> Any:
        from masksearch.env.retrieval import search_many

        return search_many(self, [query], self.topk)[0]
