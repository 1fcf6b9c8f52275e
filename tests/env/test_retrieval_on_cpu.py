"""env.retrieval's wrappers: a search client that raises becomes typed one-line errors, never an exception."""

from __future__ import annotations

import asyncio

import pytest

from masksearch.env.retrieval import asearch_one, search_many


class Raising:
    """A client that breaks the contract (clients should return errors, not raise)."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def search(self, queries, topk):
        raise self.exc

    async def asearch(self, queries, topk):
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("index\n  went away"), "RuntimeError: index went away"),  # one line, typed
        (TimeoutError(), "TimeoutError"),  # no message: the type alone
    ],
)
class TestRaisingClient:
    def test_search_many_gives_every_query_the_error(self, exc, expected):
        results = search_many(Raising(exc), ["a", "b"], 3)
        assert [r.error for r in results] == [expected, expected] and all(r.hits == [] for r in results)

    def test_asearch_one_gives_the_error(self, exc, expected):
        result = asyncio.run(asearch_one(Raising(exc), "a", 3))
        assert result.error == expected and result.hits == [] and result.latency_s >= 0
