"""Fixtures for the reward tests: a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _running_server() -> Iterator[JudgeServer]:
    """Start the stub server in a subprocess on a free port; kill it afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = JudgeServer(url=f"http://127.0.0.1:{port}", process=proc)
    deadline = time.monotonic() + 20
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"stub server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            try:
                if httpx.get(f"{server.url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("stub server did not start within 20 s")
            time.sleep(0.1)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def judge_server() -> Iterator[JudgeServer]:
    """One stub server shared by a module's tests (compare request counts as deltas)."""
    with _running_server() as server:
        yield server


@pytest.fixture
def killable_judge_server() -> Iterator[JudgeServer]:
    """A stub server of the test's own, which the test may kill."""
    with _running_server() as server:
        yield server
