"""The shared OpenAI-compatible client against a real HTTP server on 127.0.0.1 (stdlib, in a thread)."""

from __future__ import annotations

import doctest
import json
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from masksearch.core import openai_client
from masksearch.core.openai_client import (
    CallStats,
    DiskCache,
    EndpointError,
    OpenAIClient,
    RetryPolicy,
    chat_text,
    v1_base,
)


class _Server:
    """Answers ``POST /v1/chat/completions`` from a script of ``(status, headers, body, delay_s)``."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict, object, float]] = []
        self.paths: list[str] = []
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.paths.append(self.path)
                outer.auth.append(self.headers.get("authorization", ""))
                status, headers, body, delay = outer.script.pop(0) if outer.script else (500, {}, {}, 0)
                time.sleep(delay)
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _ok(text: str = "hi") -> tuple[int, dict, object, float]:
    return (200, {}, {"choices": [{"message": {"content": text}}]}, 0.0)


def _client(url: str, sleeps: list[float] | None = None, **kw) -> OpenAIClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, backoff_initial_s=0.01))
    kw.setdefault("timeout_s", 2.0)
    return OpenAIClient(url, sleep=(sleeps.append if sleeps is not None else time.sleep), **kw)


class TestV1Base:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://h:1", "http://h:1/v1"),  # server root
            ("http://h:1/", "http://h:1/v1"),  # trailing slash
            ("http://h:1/v1", "http://h:1/v1"),  # already the /v1 base
            ("http://h:1/v1/chat/completions", "http://h:1/v1"),  # a full chat URL
            ("http://h:1/v1/completions/", "http://h:1/v1"),  # a full completions URL
        ],
    )
    def test_table(self, url, expected):
        assert v1_base(url) == expected


class TestRetries:
    def test_429_honours_retry_after(self, server):
        server.script = [(429, {"Retry-After": "0.25"}, {}, 0.0), _ok()]
        sleeps: list[float] = []
        client = _client(server.url, sleeps, api_key="k")
        assert client.post("/chat/completions", {"x": 1}, chat_text) == "hi"
        assert sleeps == [0.25]  # the server's wait, not the backoff
        assert client.stats.as_dict() == {
            "calls": 2,
            "cache_hits": 0,
            "retries": 1,
            "rate_limited": 1,
            "failures": 0,
        }
        assert server.paths == ["/v1/chat/completions"] * 2 and server.auth[-1] == "Bearer k"

    def test_retry_after_is_capped(self, server):
        server.script = [(503, {"Retry-After": "99"}, {}, 0.0), _ok()]
        sleeps: list[float] = []
        retry = RetryPolicy(max_attempts=2, backoff_max_s=0.5)
        assert _client(server.url, sleeps, retry=retry).post("/chat/completions", {}, chat_text) == "hi"
        assert sleeps == [0.5]

    def test_malformed_reply_is_retried(self, server):
        server.script = [(200, {}, {"no": "choices"}, 0.0), (200, {}, b"not json", 0.0), _ok()]
        assert _client(server.url, []).post("/chat/completions", {}, chat_text) == "hi"
        assert len(server.paths) == 3

    def test_gives_up_with_a_reason(self, server):
        server.script = [(500, {}, {}, 0.0)] * 3
        client = _client(server.url, [])
        with pytest.raises(EndpointError, match="HTTP 500 \\(after 3 attempts\\)") as info:
            client.post("/chat/completions", {})
        assert (info.value.reason, info.value.status) == ("http_500", 500)
        assert client.stats.as_dict()["failures"] == 1

    def test_client_error_is_not_retried(self, server):
        server.script = [(401, {}, {"error": "key"}, 0.0), _ok()]
        with pytest.raises(EndpointError, match="401") as info:
            _client(server.url, []).post("/chat/completions", {})
        assert info.value.reason == "http_401" and len(server.paths) == 1

    def test_timeout_and_deadline(self, server):
        server.script = [(200, {}, {}, 1.0)] * 5
        client = _client(server.url, timeout_s=0.2, retry=RetryPolicy(max_attempts=5, backoff_initial_s=0.05))
        start = time.monotonic()
        with pytest.raises(EndpointError) as info:
            client.post("/chat/completions", {}, deadline_s=0.3)
        assert info.value.reason == "timeout"
        assert time.monotonic() - start < 1.5  # the deadline stopped it before 5 attempts
        assert client.stats.as_dict()["calls"] < 5

    def test_server_down(self):
        client = _client("http://127.0.0.1:1", [], retry=RetryPolicy(max_attempts=2, backoff_initial_s=0))
        with pytest.raises(EndpointError, match="after 2 attempts") as info:
            client.post("/chat/completions", {})
        assert info.value.reason == "ConnectError"


class TestPieces:
    def test_picklable_and_lazy(self, server):
        server.script = [_ok("after pickling")]
        client = pickle.loads(pickle.dumps(_client(server.url, retry=RetryPolicy(2))))
        assert client.retry.max_attempts == 2 and client._client is None
        assert client.post("/chat/completions", {}, chat_text) == "after pickling"
        stats = pickle.loads(pickle.dumps(client.stats))
        assert isinstance(stats, CallStats) and stats.as_dict()["calls"] == 1

    def test_disk_cache(self, tmp_path):
        cache = DiskCache(tmp_path / "c")
        assert cache.get("ab12") is None
        cache.put("ab12", {"text": "x"})
        assert DiskCache(tmp_path / "c").get("ab12") == {"text": "x"}  # survives a restart
        assert (tmp_path / "c" / "ab" / "ab12.json").is_file()
        assert DiskCache(None).get("ab12") is None and DiskCache("").folder is None

    def test_unusable_cache_folder_is_not_an_error(self, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        cache = DiskCache(blocker / "sub")
        cache.put("ab12", {"text": "x"})  # logged, then caching is off
        assert cache.folder is None and cache.get("ab12") is None

    @pytest.mark.parametrize("bad", [0, -1])
    def test_bad_arguments(self, bad):
        with pytest.raises(ValueError):
            RetryPolicy(max_attempts=bad)
        with pytest.raises(ValueError):
            OpenAIClient("http://h", timeout_s=bad)

    def test_chat_text_rejects_replies_without_text(self):
        for reply in ({}, {"choices": []}, {"choices": [{"message": {"content": None}}]}, None):
            with pytest.raises(ValueError):
                chat_text(reply)

    def test_doctests(self):
        result = doctest.testmod(openai_client)
        assert result.failed == 0 and result.attempted > 0

    def test_core_does_not_import_it(self):
        import subprocess
        import sys

        code = "import sys, masksearch.core; print('masksearch.core.openai_client' in sys.modules, 'httpx' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["False", "False"]
