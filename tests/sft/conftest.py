"""Fixtures for the SFT-stage tests: a tiny corpus and index, RAMP/QA rows, and real OpenAI-compatible
servers on 127.0.0.1 (our scripted multi-agent teacher, and the env tests' scripted search agent)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_STUB = Path(__file__).with_name("_agent_stub_server.py")
# The env tests' scripted search agent (a policy that writes <think>/<search>/<answer> turns).
POLICY_STUB = REPO_ROOT / "tests" / "env" / "_openai_stub_server.py"

CORPUS = [
    {"id": "1", "contents": '"Tosca"\nTosca is an opera in three acts by Giacomo Puccini.'},
    {"id": "2", "contents": '"Giacomo Puccini"\nGiacomo Puccini was born in Lucca, Italy, in 1858.'},
    {"id": "3", "contents": '"Paris"\nParis is the capital and largest city of France.'},
    {
        "id": "4",
        "contents": '"Eiffel Tower"\nThe Eiffel Tower was built by the company of Gustave Eiffel and completed in 1889.',
    },
]

QA_ROWS = [  # (question, gold aliases): what the scripted teacher does with it
    ("In which city was the composer of Tosca born?", ["Lucca"]),  # 2 searches, kept
    ("What is the capital of Atlantis?", ["Poseidonia"]),  # wrong answer
    ("Search forever for the Tosca premiere?", ["Rome"]),  # turn budget: grammar reason
    ("Answer garbage about Tosca?", ["x"]),  # malformed planner text: endpoint failed
]
RAMP_PASSAGE = "The Eiffel Tower was built by the company of [mask] and completed in [mask]."
RAMP_SPANS = ["Gustave Eiffel", "1889"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StubServer:
    """A stub server script on 127.0.0.1 in a subprocess; ``kill()`` and ``start()`` again."""

    def __init__(self, script: Path, port: int | None = None):
        self.script = script
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> StubServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.script.name} did not start on {self.url}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/stats", timeout=5.0).json()


@pytest.fixture(scope="session")
def agent_server() -> Iterator[StubServer]:
    """Shared scripted teacher (tests compare its /stats counters before and after)."""
    server = StubServer(AGENT_STUB).start()
    yield server
    server.kill()


@pytest.fixture
def own_agent_server() -> Iterator[StubServer]:
    """A scripted teacher of the test's own, which it may kill and restart."""
    server = StubServer(AGENT_STUB).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def policy_server() -> Iterator[StubServer]:
    server = StubServer(POLICY_STUB).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def sft_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from masksearch.search_tool.retrievers import cached_index

    folder = tmp_path_factory.mktemp("sft-corpus")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    return Path(cached_index(corpus, "bm25", cache_dir=folder / "indexes"))


@pytest.fixture
def search_client(sft_index: Path) -> Any:
    from masksearch.search_tool.client import make_search_client

    return make_search_client(index=str(sft_index))


@pytest.fixture(scope="session")
def student_tokenizer(tiny_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_path))


def write_rows(path: Path, *, qa: list[tuple[str, list[str]]] = QA_ROWS, ramp: bool = True) -> Path:
    """A RL parquet mixing QA rows and one RAMP row, in the shared schema."""
    from masksearch.data.prompts import qa_messages, ramp_messages
    from masksearch.data.schema import make_row
    from masksearch.data.schema import write_rows as write

    rows = [
        make_row(
            data_source="hotpotqa",
            prompt=qa_messages(question, one_shot=False),
            ability="qa",
            ground_truth=golds,
            extra_info={"mask_num": 0, "index": i, "split": "train", "question": question},
            agent_name="masksearch_agent",
        )
        for i, (question, golds) in enumerate(qa)
    ]
    if ramp:
        rows.append(
            make_row(
                data_source="ramp_wiki",
                prompt=ramp_messages(RAMP_PASSAGE, 2, one_shot=False),
                ability="ramp",
                ground_truth=RAMP_SPANS,
                extra_info={"mask_num": 2, "index": len(rows), "split": "train", "masked_text": RAMP_PASSAGE},
                agent_name="masksearch_agent",
            )
        )
    return write(rows, path)


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "rows.parquet")


@pytest.fixture
def make_rows():
    """``make_rows(path, qa=[(question, golds)], ramp=bool) -> path`` (see :func:`write_rows`)."""
    return write_rows
