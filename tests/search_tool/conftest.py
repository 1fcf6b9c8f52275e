"""Fixtures for the retrieval stack: small corpora, indexes built once per session, a stub retriever,
and a helper that runs ``masksearch retriever serve`` as a real subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from masksearch.data.corpus import build_corpus
from masksearch.search_tool.manifest import Manifest
from masksearch.search_tool.retrievers import build_index, cached_index
from masksearch.search_tool.types import Hit

SMALL_DOCS = 300  # BM25 tests: first 300 embedded articles (alphabetical)
TINY_DOCS = 40  # dense/hybrid tests: encoding is ~39 passages/s on CPU


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    build_corpus(path, "embedded", limit=SMALL_DOCS, show_progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl"
    build_corpus(path, "embedded", limit=TINY_DOCS, show_progress=False)
    return path


@pytest.fixture(scope="session")
def bm25_index(small_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "bm25"
    build_index(small_corpus, "bm25", out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def hybrid_index(tiny_corpus, tmp_path_factory, pytestconfig) -> Path:
    """One dense encoding pass serves the dense tests (its ``dense/`` part) and the hybrid tests.

    Encoding is the slowest thing in this suite (seconds per dozen passages on a busy 2-core box),
    so the index is cached by corpus checksum in pytest's cache folder and reused across runs;
    without the cache plugin (``-p no:cacheprovider``) it is built in a temporary folder.
    """
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("masksearch-indexes") if cache is not None else tmp_path_factory.mktemp("index")
    return cached_index(tiny_corpus, "hybrid", cache_dir=folder, batch_size=32)


class StubRetriever:
    """Deterministic retriever: query ``q`` returns passages ``q-0 .. q-(topk-1)`` with falling scores."""

    kind = "stub"
    doc_count = 1000

    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[tuple[list[str], int]] = []
        self.manifest = Manifest(kind="bm25", params={}, corpus_sha256="0" * 64, doc_count=self.doc_count)

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        self.calls.append((list(queries), topk))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("stub failure")
        return [
            [Hit(f"{q[:20]}-{i}", f"T {q[:20]}", f"text {i}", float(topk - i)) for i in range(topk)]
            for q in queries
        ]


@pytest.fixture
def stub_retriever() -> StubRetriever:
    return StubRetriever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A ``masksearch retriever serve`` subprocess; ``start``/``kill`` can be repeated on one port."""

    index: Path
    port: int
    proc: subprocess.Popen | None = None
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "masksearch.search_tool.cli",
            "--log-level",
            "WARNING",
            "retriever",
            "serve",
            "--index",
            str(self.index),
            "--port",
            str(self.port),
            "--backend",
            "numpy",  # no numba JIT in a fresh process: keeps start-up ~2 s
            "--max-topk",
            "20",
            *self.extra_args,
        ]
        env = {**os.environ, "TQDM_DISABLE": "1", **(self.extra_env or {})}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{out}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).json().get("ready"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not become ready in time")

    def ensure_running(self) -> ServerProcess:
        """Restart if an earlier test left it down (e.g. failed between kill and restart)."""
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            self.start()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture(scope="module")
def server(bm25_index) -> Iterator[ServerProcess]:
    """Shared by a module's tests; a test that kills it must start it again before returning."""
    srv = ServerProcess(bm25_index, free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def make_stub():
    """The StubRetriever class, for tests that need a slow or failing one."""
    return StubRetriever


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (connection refused)."""
    return free_port()


@pytest.fixture(scope="session")
def server_process():
    """The ServerProcess class, for tests that need a server started with extra flags."""
    return ServerProcess
