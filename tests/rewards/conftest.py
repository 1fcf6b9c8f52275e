"""Fixtures for the reward tests: a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SERVER_SCRIPT = Path(__file__).with_name("_openai_stub_server.py")


@dataclass
class JudgeServer:
    url: str
    process: subprocess.Popen

    def count(self) -> int:
        return httpx.get(f"{self.url}/count", timeout=5).json()["count"]

    def last_auth(self) -> str:
        auth = httpx.get(f"{self.url}/count", timeout=5).json()["auth"]
        return auth[0] if auth else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def _running_server(start_http_service, free_port):
    """``_running_server()``: the stub judge in a subprocess on a free port, killed afterwards."""

    @contextlib.contextmanager
    def running() -> Iterator[JudgeServer]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with start_http_service(
            [sys.executable, str(SERVER_SCRIPT), "--port", str(port)], f"{url}/health"
        ) as proc:
            yield JudgeServer(url=url, process=proc)

    return running


@pytest.fixture(scope="module")
def judge_server(_running_server) -> Iterator[JudgeServer]:
    """One stub server shared by a module's tests (compare request counts as deltas)."""
    with _running_server() as server:
        yield server


@pytest.fixture
def killable_judge_server(_running_server) -> Iterator[JudgeServer]:
    """A stub server of the test's own, which the test may kill."""
    with _running_server() as server:
        yield server
