"""The env-facing search client (masksearch.search_tool.client): config, cache, pickling, failures."""

from __future__ import annotations

import asyncio
import pickle
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masksearch.search_tool.client import (
    EMPTY_QUERY_ERROR,
    SearchClient,
    SearchError,
    SearchOutcome,
    _Http,
    _RetryableHTTP,
    from_config,
    make_search_client,
)


@pytest.fixture(scope="module")
def local(bm25_index) -> SearchClient:
    return make_search_client(index=str(bm25_index))


class TestConfig:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({}, "exactly one"),  # neither index nor url
            ({"index": "i", "url": "http://x"}, "exactly one"),  # both
            ({"index": "i", "topk": 0}, "topk"),  # nonsense topk
            ({"url": "http://x", "timeout_s": 0}, "timeout_s"),  # zero timeout
        ],
    )
    def test_invalid(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            make_search_client(**kwargs)

    def test_from_config_rejects_unknown_keys(self):
        with pytest.raises(ValueError, match=r"Unknown search client option\(s\) \['retries'\]"):
            from_config({"url": "http://x", "retries": 3})

    def test_from_config(self):
        client = from_config({"url": "http://127.0.0.1:1", "timeout_s": 1.5, "topk": 5})
        assert (client.config.timeout_s, client.config.topk) == (1.5, 5)

    def test_picklable_before_and_after_use(self, local):
        fresh = make_search_client(url="http://127.0.0.1:1")
        assert pickle.loads(pickle.dumps(fresh)).config == fresh.config
        local.search(["algebra"], 1)  # loads the index, opens mmaps
        clone = pickle.loads(pickle.dumps(local))
        assert clone._backend is None  # lazily re-initialised in the new process
        assert clone.search(["algebra"], 1)[0].hits == local.search(["algebra"], 1)[0].hits


class TestInProcess:
    def test_search_and_cache(self, bm25_index):
        client = make_search_client(index=str(bm25_index))
        first = client.search(["Stanley Kubrick film", "Stanley Kubrick film"], 2)
        assert first[0].hits and first[0].hits[0].title == "2001: A Space Odyssey"
        assert first[0] == first[1]  # duplicates in one call are searched once
        second = client.search(["Stanley Kubrick film"], 2)[0]
        assert second.cached and second.latency_s == 0.0 and second.hits == first[0].hits
        assert not client.search(["Stanley Kubrick film"], 3)[0].cached  # topk is part of the key

    @pytest.mark.parametrize(
        ("query", "error"),
        [
            ("", EMPTY_QUERY_ERROR),  # empty
            ("  \t", EMPTY_QUERY_ERROR),  # whitespace
            (None, EMPTY_QUERY_ERROR),  # None from a sloppy caller
            ("qwxzzy", None),  # no match: no error, no hits
        ],
    )
    def test_edge_queries(self, local, query, error):
        outcome = local.search([query], 3)[0]
        assert outcome.error == error and outcome.hits == []

    def test_async(self, local):
        outcomes = asyncio.run(local.asearch(["algebra", ""], 2))
        assert outcomes[0].ok and not outcomes[1].ok

    def test_missing_index_becomes_error_outcome(self, tmp_path):
        outcome = make_search_client(index=str(tmp_path / "nope")).search(["q"], 1)[0]
        assert outcome.hits == [] and "index folder not found" in outcome.error

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(queries=st.lists(st.text(max_size=300), max_size=4), topk=st.integers(min_value=-1, max_value=6))
    def test_arbitrary_queries_never_raise(self, local, queries, topk):
        outcomes = local.search(queries, topk)
        assert len(outcomes) == len(queries) and all(isinstance(o, SearchOutcome) for o in outcomes)


class TestHttpFailures:
    def test_unreachable_server_returns_error_within_timeout(self, unused_port):
        client = make_search_client(
            url=f"http://127.0.0.1:{unused_port}", timeout_s=1.0, backoff_initial_s=0.05
        )
        started = time.monotonic()
        outcomes = client.search(["q1", "q2"], 3)
        aoutcomes = asyncio.run(client.asearch(["q3"], 3))
        assert time.monotonic() - started < 3.0
        assert all(o.hits == [] and "unreachable" in o.error for o in [*outcomes, *aoutcomes])

    def test_timeout_message(self):
        # A TCP listener that never answers: every attempt times out, the whole call obeys timeout_s.
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            client = make_search_client(url=url, timeout_s=0.5, max_attempts=5)
            started = time.monotonic()
            outcome = client.search(["q"], 1)[0]
            assert time.monotonic() - started < 1.5
        assert outcome.error == "search timed out after 0.5s"

    @pytest.mark.parametrize(
        ("status", "raised"),
        [
            (503, _RetryableHTTP),  # server saturated: retried
            (500, _RetryableHTTP),  # server error: retried
            (429, _RetryableHTTP),  # rate limited: retried
            (422, SearchError),  # our request is wrong: not retried
            (404, SearchError),  # wrong URL: not retried
        ],
    )
    def test_status_classification(self, status, raised):
        backend = _Http(make_search_client(url="http://x").config)
        with pytest.raises(raised):
            backend._parse(httpx.Response(status, text="detail"), 1)

    def test_wrong_result_count_is_an_error(self):
        backend = _Http(make_search_client(url="http://x").config)
        with pytest.raises(SearchError, match="answered 0 of 1"):
            backend._parse(httpx.Response(200, json={"result": []}), 1)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(queries=st.lists(st.one_of(st.text(max_size=100), st.none()), max_size=3))
    def test_arbitrary_queries_never_raise_over_http(self, unused_port, queries):
        client = make_search_client(url=f"http://127.0.0.1:{unused_port}", timeout_s=0.2, max_attempts=1)
        outcomes = client.search(queries, 2)
        assert len(outcomes) == len(queries) and all(o.hits == [] and o.error for o in outcomes)
