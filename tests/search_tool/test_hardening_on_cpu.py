"""Hostile or careless input to the retrieval stack: bearer token, body byte limit (chunked too),
the schema's query cap, connection limit, work off the event loop, no paths in /health, the
tokenizer memo's word cap, manifest paths confined to the index folder, one-line CLI errors."""

from __future__ import annotations

import json
import select
import shutil
import socket
import threading
import time
from typing import ClassVar

import httpx
import pytest
from cachetools import LRUCache
from fastapi.testclient import TestClient
from pydantic import ValidationError

from masksearch.search_tool import cli as search_cli
from masksearch.search_tool.bm25 import Bm25Tokenizer
from masksearch.search_tool.client import make_search_client
from masksearch.search_tool.manifest import IndexLoadError, Manifest
from masksearch.search_tool.protocol import MAX_QUERIES, TOKEN_ENV, RetrieveRequest
from masksearch.search_tool.retrievers import load_retriever
from masksearch.search_tool.server import ServerLimits, create_app
from masksearch.search_tool.types import Hit

TOKEN = "s3cret-retriever-token"


@pytest.fixture(scope="module")
def guarded_server(bm25_index, tmp_path_factory, server_process, free_port):
    """A real server that needs a bearer token (read from a file)."""
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN + "\n")
    srv = server_process(bm25_index, free_port(), extra_args=("--token-file", str(token_file)))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def _chunked_post(port: int, total_bytes: int, chunk_bytes: int = 1 << 20) -> tuple[bytes, int]:
    """POST a chunked body of up to ``total_bytes`` over a raw socket; stop when a response arrives.

    Returns the response's first bytes and how many body bytes were sent before it came.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        sock.sendall(
            b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % chunk_bytes + b"x" * chunk_bytes + b"\r\n"
        while sent < total_bytes:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk_bytes
        else:
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(30)
        return sock.recv(4096), sent
    finally:
        sock.close()


class TestRealServerLimits:
    """Default server (no token): 64 MB chunked body -> 413 early, the server keeps answering."""

    def test_chunked_64mb_body_is_413_and_server_keeps_answering(self, server):
        server.ensure_running()
        head, sent = _chunked_post(server.port, 64 << 20)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert sent < 32 << 20  # refused soon after the 16 MiB limit (socket buffers hold a few MB)
        ok = httpx.post(server.url + "/retrieve", json={"queries": ["Stanley Kubrick film"]}, timeout=10)
        assert ok.status_code == 200 and ok.json()["result"][0]

    def test_declared_length_over_limit_is_413(self, server):
        server.ensure_running()
        response = httpx.post(server.url + "/retrieve", content=b"x" * ((16 << 20) + 1), timeout=30)
        assert response.status_code == 413


class TestToken:
    def test_401_without_token_and_with_a_wrong_one(self, guarded_server):
        url = guarded_server.url + "/retrieve"
        payload = {"queries": ["Stanley Kubrick film"]}
        assert httpx.post(url, json=payload, timeout=10).status_code == 401
        wrong = httpx.post(url, json=payload, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"

    def test_200_with_token(self, guarded_server):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = httpx.post(
            guarded_server.url + "/retrieve", json={"queries": ["Stanley Kubrick film"]}, headers=headers
        )
        assert response.status_code == 200 and response.json()["result"][0]

    def test_health_is_open_and_shows_no_paths(self, guarded_server, bm25_index):
        response = httpx.get(guarded_server.url + "/health", timeout=10)
        assert response.status_code == 200 and response.json()["ready"] is True
        assert str(bm25_index) not in response.text and str(bm25_index.parent) not in response.text
        assert TOKEN not in response.text

    def test_client_sends_the_token_from_env(self, guarded_server, monkeypatch):
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        anonymous = make_search_client(url=guarded_server.url, timeout_s=5, max_attempts=1)
        refused = anonymous.search(["Stanley Kubrick film"])[0]
        assert refused.error and "401" in refused.error and TOKEN_ENV in refused.error
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        client = make_search_client(url=guarded_server.url, timeout_s=5)
        outcome = client.search(["Stanley Kubrick film"])[0]
        assert outcome.error is None and outcome.hits
        assert client.health()["ready"] is True
        assert TOKEN not in repr(client.config)  # the token never sits in the (pickled) config


class TestConnectionLimit:
    def test_limit_concurrency_answers_503(self, bm25_index, server_process, free_port):
        srv = server_process(bm25_index, free_port(), extra_args=("--limit-concurrency", "3"))
        srv.start()
        # uvicorn counts the new connection too: with a limit of 3, a third open connection gets 503.
        clients = [httpx.Client(base_url=srv.url, timeout=10) for _ in range(3)]
        try:
            codes = [c.get("/health").status_code for c in clients]
            for c in clients:
                c.close()
            time.sleep(0.2)
            after = httpx.get(srv.url + "/health", timeout=10).status_code
        finally:
            srv.kill()
        assert codes == [200, 200, 503] and after == 200


class _ThreadRecordingHit(Hit):
    """A hit that remembers which threads read its ``contents`` (i.e. built a response from it)."""

    readers: ClassVar[set[int]] = set()

    @property
    def contents(self) -> str:
        _ThreadRecordingHit.readers.add(threading.get_ident())
        return super().contents


class TestAppOnStub:
    def test_query_list_capped_by_the_schema(self):
        RetrieveRequest(queries=["q"] * MAX_QUERIES)
        with pytest.raises(ValidationError, match="at most 4096"):
            RetrieveRequest.model_validate_json(json.dumps({"queries": ["q"] * (MAX_QUERIES + 1)}))

    def test_too_many_queries_is_422_before_any_work(self, stub_retriever):
        with TestClient(create_app(stub_retriever, ServerLimits())) as api:
            calls = len(stub_retriever.calls)  # the warm-up
            response = api.post("/retrieve", json={"queries": ["q"] * (MAX_QUERIES + 1)})
            assert response.status_code == 422 and "at most 4096" in response.text
            assert len(response.content) < 2000  # the offending input is not echoed back
            assert len(stub_retriever.calls) == calls

    def test_server_limit_cannot_exceed_the_schema_cap(self):
        with pytest.raises(ValueError, match="cap"):
            ServerLimits(max_queries_per_request=MAX_QUERIES + 1, max_pending_queries=2 * MAX_QUERIES)

    def test_response_is_built_off_the_event_loop(self, make_stub):
        stub = make_stub()
        stub.search = lambda queries, topk: [[_ThreadRecordingHit("1", "T", "x", 1.0)] for _ in queries]
        app = create_app(stub, ServerLimits())

        @app.get("/loop-thread")
        async def loop_thread() -> int:
            return threading.get_ident()

        _ThreadRecordingHit.readers.clear()
        with TestClient(app) as api:
            assert api.post("/retrieve", json={"queries": ["a"]}).status_code == 200
            loop_ident = api.get("/loop-thread").json()
        assert _ThreadRecordingHit.readers and loop_ident not in _ThreadRecordingHit.readers

    def test_health_shows_no_local_paths(self, make_stub):
        stub = make_stub()
        stub.manifest = Manifest(
            kind="dense",
            params={"model": "/home/alice/models/e5-base", "batch_size": 8},
            corpus_sha256="0" * 64,
            doc_count=stub.doc_count,
            corpus_path="/home/alice/data/wiki.jsonl",
        )
        with TestClient(create_app(stub)) as api:
            health = api.get("/health")
        assert "/home/alice" not in health.text
        assert health.json()["index"]["params"]["model"] == "e5-base"

    def test_token_guards_retrieve_not_health(self, stub_retriever):
        with TestClient(create_app(stub_retriever, token="t0k")) as api:
            assert api.get("/health").status_code == 200
            assert api.post("/retrieve", json={"queries": ["a"]}).status_code == 401
            ok = api.post("/retrieve", json={"queries": ["a"]}, headers={"Authorization": "Bearer t0k"})
            assert ok.status_code == 200


class TestTokenizerMemo:
    def test_long_words_are_stemmed_but_not_remembered(self):
        tokenizer = Bm25Tokenizer(max_word_chars=64)
        long_word = "running" + "x" * 10_000
        tokens = tokenizer(f"running dogs {long_word}")
        assert tokens[:2] == ["run", "dog"] and len(tokens) == 3
        assert long_word not in tokenizer._memo and "running" in tokenizer._memo
        assert tokenizer(f"running dogs {long_word}") == tokens  # same answer from the memo path

    def test_memo_size_is_bounded_by_words_times_length(self):
        tokenizer = Bm25Tokenizer(max_cache=100, max_word_chars=16)
        for i in range(50):
            tokenizer(" ".join(f"w{i}x{j}" + "y" * (j % 40) for j in range(20)))
        assert len(tokenizer._memo) <= 100
        assert all(len(word) <= 16 for word in tokenizer._memo)


class TestManifestConfinement:
    @pytest.mark.parametrize(
        "parts",
        [
            {"bm25": "ABSOLUTE", "dense": "dense"},  # an absolute path to a real index elsewhere
            {"bm25": "../elsewhere", "dense": "dense"},  # climbs out of the folder
            {"bm25": ".", "dense": "dense"},  # the index folder itself
        ],
    )
    def test_hybrid_parts_must_stay_inside(self, tmp_path, bm25_index, parts):
        parts = {k: str(bm25_index) if v == "ABSOLUTE" else v for k, v in parts.items()}
        folder = tmp_path / "hybrid"
        folder.mkdir()
        Manifest(kind="hybrid", params={"parts": parts}, corpus_sha256="0" * 64, doc_count=1).write(folder)
        with pytest.raises(IndexLoadError, match="outside the index folder"):
            load_retriever(folder)


class TestCliErrors:
    @pytest.fixture
    def index_without_bm25(self, bm25_index, tmp_path):
        broken = tmp_path / "broken"
        shutil.copytree(bm25_index, broken)
        shutil.rmtree(broken / "bm25")
        return broken

    @pytest.mark.parametrize(
        "argv",
        [
            ["search", "--index", "INDEX", "a query"],
            ["retriever", "serve", "--index", "INDEX", "--port", "1"],
        ],
    )
    def test_manifest_without_bm25_folder_is_one_line_exit_2(self, argv, index_without_bm25, capsys):
        argv = [str(index_without_bm25) if a == "INDEX" else a for a in argv]
        assert search_cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "bm25/" in err and "rebuild" in err

    @pytest.mark.parametrize(
        "model", ["all-MiniLM-L6-v3", "./models/typo"]
    )  # uncached hub name, missing folder
    def test_index_build_with_mistyped_dense_model(self, model, small_corpus, tmp_path, capsys, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        argv = [
            "--log-level",
            "WARNING",
            "index",
            "build",
            "--corpus",
            str(small_corpus),
            "--retriever",
            "dense",
        ]
        assert (
            search_cli.main([*argv, "--model", model, "--out", str(tmp_path / "idx"), "--no-progress"]) == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            err
            and err[-1].startswith("masksearch index: error: --model")
            and "Traceback" not in "\n".join(err)
        )
        assert not (tmp_path / "idx").exists()

    def test_unreadable_token_file_is_one_line_exit_2(self, bm25_index, tmp_path, capsys):
        argv = ["retriever", "serve", "--index", str(bm25_index), "--port", "1"]
        assert search_cli.main([*argv, "--token-file", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "token file" in err


class TestRetrieverWait:
    def test_ready_server(self, server, capsys):
        server.ensure_running()
        assert search_cli.main(["retriever", "wait", "--url", server.url, "--timeout", "10"]) == 0
        assert "ready" in capsys.readouterr().out

    def test_dead_server_process_stops_the_wait_early(self, unused_port, capsys):
        import subprocess
        import sys

        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        started = time.monotonic()
        url = f"http://127.0.0.1:{unused_port}"
        assert (
            search_cli.main(["retriever", "wait", "--url", url, "--timeout", "60", "--pid", str(proc.pid)])
            == 2
        )
        assert time.monotonic() - started < 10
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "exited before it was ready" in err

    def test_nothing_listening_fails_at_the_deadline(self, unused_port, capsys):
        url = f"http://127.0.0.1:{unused_port}"
        assert search_cli.main(["retriever", "wait", "--url", url, "--timeout", "1"]) == 2
        assert "not ready within 1s" in capsys.readouterr().err


class TestClientHygiene:
    def test_cache_is_cachetools_lru(self, bm25_index):
        client = make_search_client(index=str(bm25_index), cache_size=2)
        client.search(["algebra", "music", "film"])
        assert isinstance(client._cache._data, LRUCache) and len(client._cache) == 2
        assert client.search(["film"])[0].cached and not client.search(["algebra"])[0].cached

    def test_error_shows_url_without_userinfo_or_query(self, unused_port):
        url = f"http://alice:pa55word@127.0.0.1:{unused_port}/?api_key=abc123"
        started = time.monotonic()
        outcome = make_search_client(url=url, timeout_s=1, max_attempts=1).search(["q"])[0]
        assert time.monotonic() - started < 5
        assert outcome.error and f"127.0.0.1:{unused_port}" in outcome.error
        assert "pa55word" not in outcome.error and "abc123" not in outcome.error
