"""The retrieval server: limits and protocol on a stub (in-process), then the real server as a
subprocess queried in Search-R1's shape and by our client, killed and restarted."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from masksearch.search_tool.client import make_search_client
from masksearch.search_tool.server import ServerLimits, create_app

LIMITS = ServerLimits(default_topk=2, max_topk=10, max_queries_per_request=4, max_query_chars=100)


@pytest.fixture
def api(stub_retriever):
    with TestClient(create_app(stub_retriever, LIMITS)) as client:
        yield client


class TestProtocolOnStub:
    def test_scores_and_default_topk(self, api):
        body = api.post("/retrieve", json={"queries": ["a"], "return_scores": True}).json()
        assert len(body["result"][0]) == 2  # default_topk
        assert body["result"][0][0] == {"document": {"id": "a-0", "contents": "T a\ntext 0"}, "score": 2.0}

    def test_without_scores(self, api):
        body = api.post("/retrieve", json={"queries": ["a", "b"], "topk": 1, "return_scores": False}).json()
        assert body == {
            "result": [[{"id": "a-0", "contents": "T a\ntext 0"}], [{"id": "b-0", "contents": "T b\ntext 0"}]]
        }

    @pytest.mark.parametrize(
        ("payload", "needle"),
        [
            ({"queries": ["a"], "topk": 0}, "topk must be between 1 and 10"),  # zero
            ({"queries": ["a"], "topk": -3}, "topk must be between 1 and 10"),  # negative
            ({"queries": ["a"], "topk": 11}, "topk must be between 1 and 10"),  # above max
            ({"queries": ["a"] * 5, "topk": 1}, "the limit is 4"),  # too many queries
            ({"queries": "a plain string"}, "list"),  # not a list
            ({"queries": [1, 2]}, "string"),  # not strings
            ({"topk": 3}, "missing"),  # no queries at all
        ],
    )
    def test_422(self, api, payload, needle):
        response = api.post("/retrieve", json=payload)
        assert response.status_code == 422
        assert needle in response.text

    def test_blank_queries_get_empty_lists(self, api, stub_retriever):
        body = api.post("/retrieve", json={"queries": ["", "  \n", "x"], "topk": 1}).json()
        assert body["result"][:2] == [[], []] and len(body["result"][2]) == 1
        assert all("" not in queries for queries, _ in stub_retriever.calls)  # never reach the retriever

    def test_huge_query_is_truncated_and_counted(self, api, stub_retriever):
        response = api.post("/retrieve", json={"queries": ["x" * 1_000_000], "topk": 1})
        assert response.status_code == 200
        assert len(stub_retriever.calls[-1][0][0]) == LIMITS.max_query_chars
        assert api.get("/health").json()["metrics"]["truncated_queries"] == 1

    def test_empty_query_list(self, api):
        assert api.post("/retrieve", json={"queries": []}).json() == {"result": []}

    def test_health(self, api):
        health = api.get("/health").json()
        assert health["ready"] is True and health["status"] == "ok"
        assert (health["kind"], health["doc_count"]) == ("stub", 1000)
        assert health["limits"]["max_topk"] == 10

    def test_body_too_large(self, stub_retriever):
        app = create_app(stub_retriever, ServerLimits(max_body_bytes=1000))
        with TestClient(app) as client:
            assert client.post("/retrieve", json={"queries": ["x" * 2000]}).status_code == 413

    def test_queue_full_is_503(self, make_stub):
        stub = make_stub(delay_s=0.3)
        limits = ServerLimits(max_queries_per_request=4, max_pending_queries=4)
        app = create_app(stub, limits)

        async def go():
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://t") as client,
            ):
                requests = [client.post("/retrieve", json={"queries": ["a", "b", "c"]}) for _ in range(3)]
                return await asyncio.gather(*requests)

        codes = sorted(r.status_code for r in asyncio.run(go()))
        assert codes[0] == 200 and 503 in codes

    def test_retriever_failure_is_500_with_message(self, make_stub):
        with TestClient(create_app(make_stub(), LIMITS)) as client:
            client.app.state.retriever.fail = True
            response = client.post("/retrieve", json={"queries": ["a"]})
        assert response.status_code == 500 and "stub failure" in response.text


class TestRealServer:
    """``masksearch retriever serve`` in a subprocess on 127.0.0.1 (numpy BM25 backend for fast start)."""

    def test_search_r1_client_shape(self, server):
        server.ensure_running()
        payload = {"queries": ["Stanley Kubrick film", "   "], "topk": 3, "return_scores": True}
        body = httpx.post(server.url + "/retrieve", json=payload, timeout=10).json()
        first = body["result"][0][0]
        assert first["document"]["contents"].startswith("2001: A Space Odyssey\n")
        assert isinstance(first["score"], float)
        assert body["result"][1] == []
        bare = httpx.post(
            server.url + "/retrieve", json={**payload, "return_scores": False}, timeout=10
        ).json()
        assert set(bare["result"][0][0]) == {"id", "contents"}
        assert (
            httpx.post(server.url + "/retrieve", json={**payload, "topk": 0}, timeout=10).status_code == 422
        )
        assert (
            httpx.post(server.url + "/retrieve", json={**payload, "topk": 21}, timeout=10).status_code == 422
        )

    def test_kill_and_restart(self, server):
        server.ensure_running()
        client = make_search_client(url=server.url, timeout_s=2.0, max_attempts=3, backoff_initial_s=0.05)
        ok = client.search(["Stanley Kubrick film"], 2)[0]
        assert ok.error is None and ok.hits[0].title == "2001: A Space Odyssey"
        assert asyncio.run(client.asearch(["algebra"], 2))[0].error is None

        server.kill()
        started = time.monotonic()
        down = client.search(["a new query", "another one"], 2)  # not cached
        adown = asyncio.run(client.asearch(["third query"], 2))
        assert time.monotonic() - started < 2 * 2.0 + 1.0  # within the client's timeouts
        assert all(o.error and "unreachable" in o.error and o.hits == [] for o in [*down, *adown])
        cached = client.search(["Stanley Kubrick film"], 2)[0]  # answered from the LRU while down
        assert cached.error is None and cached.cached

        server.start()  # same port
        again = client.search(["a new query"], 2)[0]
        assert again.error is None
        assert asyncio.run(client.asearch(["third query"], 2))[0].error is None
        client.close()

    def test_concurrent_async_clients(self, server):
        server.ensure_running()
        client = make_search_client(url=server.url, timeout_s=10.0, cache_size=0)

        async def go():
            return await asyncio.gather(*(client.asearch([f"history of music {i}"], 3) for i in range(32)))

        outcomes = [o for batch in asyncio.run(go()) for o in batch]
        assert all(o.error is None and o.hits for o in outcomes)
        metrics = httpx.get(server.url + "/health", timeout=5).json()["metrics"]
        assert metrics["requests"] >= 32 and metrics["errors"] == 0
