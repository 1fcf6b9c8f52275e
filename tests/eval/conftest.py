"""Fixtures for the evaluation tests.

- ``qa_corpus`` / ``qa_index``: a small corpus of made-up facts (so only retrieval can answer)
  and its real BM25 index, built with ``masksearch index build`` (session scope).
- ``qa_parquet``: the ten questions through ``masksearch qa prepare`` plus one row whose ground
  truth is empty (must be skipped and counted).
- ``oracle``: factory of :class:`OracleGenerator`, a scripted ``TextGenerator`` that reads the
  question from the prompt, searches for it, and answers with the gold answer only if the
  retrieved observation contains it. It can fail on chosen questions or stop after N calls.
- ``fsdp_checkpoint``: a real verl FSDP checkpoint of the tiny model (``global_step_1/actor``),
  written by verl's ``FSDPCheckpointManager`` in a subprocess (``_make_fsdp_checkpoint.py``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FACTS = [
    # (question, answer, passage title, passage text)
    ("Who designed the Zorvath Bridge?", "Elena Marchetti", "Zorvath Bridge",
     "The Zorvath Bridge was designed by the engineer Elena Marchetti and opened to traffic in 1921."),
    ("What is the capital of Quellia?", "Marrowgate", "Quellia",
     "Quellia is a small inland kingdom whose capital and largest city is Marrowgate."),
    ("In which year was the Brindle Observatory founded?", "1874", "Brindle Observatory",
     "The Brindle Observatory was founded in 1874 by a society of amateur astronomers."),
    ("Who wrote the novel The Glass Orchard?", "Tomas Verhoeven", "The Glass Orchard",
     "The Glass Orchard is a novel written by Tomas Verhoeven about a family of glassblowers."),
    ("Which river flows through Castelmoor?", "Ostra", "Castelmoor",
     "Castelmoor is a market town built on both banks of the river Ostra."),
    ("Who invented the thermoscribe?", "Ada Kellerman", "Thermoscribe",
     "The thermoscribe, a heat-recording instrument, was invented by Ada Kellerman."),
    ("What is the highest mountain of Varnland?", "Mount Tessaly", "Varnland",
     "Varnland is mountainous; its highest mountain is Mount Tessaly, at 3,100 metres."),
    ("Who composed the opera Lumen Nocturne?", "Ilse Brandt", "Lumen Nocturne",
     "Lumen Nocturne is an opera in two acts composed by Ilse Brandt."),
    ("Who founded Halvorsen Shipping?", "Nils Halvorsen", "Halvorsen Shipping",
     "Halvorsen Shipping is a freight company founded by Nils Halvorsen in Bergen."),
    ("Which language is spoken in Ebrinia?", "Corvic", "Ebrinia",
     "The people of Ebrinia speak Corvic, a language unrelated to its neighbours."),
]  # fmt: skip
DISTRACTORS = [
    ("Quellia cuisine", "Quellian cooking relies on barley, river fish and smoked cheese."),
    ("Bridges of Europe", "Many famous bridges were designed by engineers in the early twentieth century."),
]
QUESTIONS = {q: a for q, a, _, _ in FACTS}
NO_ANSWER_QUESTION = "What is the colour of the number seven?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Interrupted(BaseException):
    """Stands in for Ctrl-C / a killed job (not an ``Exception``: the runner must not catch it)."""


@dataclass
class OracleGenerator:
    """Scripted ``TextGenerator`` (text in, text out) that answers through the real env loop."""

    Interrupted = Interrupted  # what ``interrupt_after`` raises (conftest is not importable by name)

    answers: dict[str, str] = field(default_factory=lambda: dict(QUESTIONS))
    fail_on: Sequence[str] = ()
    interrupt_after: int | None = None
    token_in: bool = False
    calls: int = 0
    questions_seen: list[str] = field(default_factory=list)

    def _question(self, prompt: str) -> str:
        found = [q for q in self.answers if q in prompt]
        assert len(found) == 1, f"expected one known question in the prompt, found {found}"
        return found[0]

    def generate(self, prompt: Any, max_new_tokens: int, stop: Sequence[str], *, messages: Any = None) -> Any:
        from masksearch.env.generators import GenerationError, GenerationResult

        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise Interrupted(f"stopped after {self.interrupt_after} calls")
        question = self._question(str(prompt))
        self.questions_seen.append(question)
        if question in self.fail_on:
            raise GenerationError("backend returned HTTP 500")
        if str(prompt).rstrip().endswith("</information>"):
            observation = str(prompt)[str(prompt).rfind("<information>") :]
            gold = self.answers[question]
            answer = gold if gold in observation else "unknown"
            return GenerationResult(
                f"<think>The documents say it.</think>\n<answer>{answer}</answer>", finish_reason="stop"
            )
        return GenerationResult(
            f"<think>I need to look this up.</think>\n<search>{question}</search>", finish_reason="stop"
        )


@pytest.fixture
def oracle():
    return OracleGenerator


@pytest.fixture(scope="session")
def qa_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-corpus") / "corpus.jsonl"
    rows = [(title, text) for _, _, title, text in FACTS] + DISTRACTORS
    with path.open("w", encoding="utf-8") as fh:
        for i, (title, text) in enumerate(rows):
            fh.write(json.dumps({"id": str(i), "contents": f'"{title}"\n{text}'}) + "\n")
    return path


@pytest.fixture(scope="session")
def qa_index(tmp_path_factory: pytest.TempPathFactory, qa_corpus: Path) -> Path:
    """The real ``masksearch index build`` path."""
    from masksearch.cli.main import main

    out = tmp_path_factory.mktemp("eval-index") / "bm25"
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(qa_corpus),
                "--retriever",
                "bm25",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def qa_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Search-R1 style QA JSONL: ten answerable questions and one without answers."""
    path = tmp_path_factory.mktemp("eval-qa") / "toyqa_dev.jsonl"
    records = [{"question": q, "golden_answers": [a]} for q, a, _, _ in FACTS]
    records.insert(5, {"question": NO_ANSWER_QUESTION, "golden_answers": []})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def qa_parquet(tmp_path_factory: pytest.TempPathFactory, qa_jsonl: Path) -> Path:
    """``qa prepare`` output (ten rows) with one more row whose ground truth is empty."""
    import pyarrow.parquet as pq

    from masksearch.cli.main import main
    from masksearch.data.prompts import qa_messages
    from masksearch.data.schema import make_row, write_rows

    folder = tmp_path_factory.mktemp("eval-parquet")
    prepared = folder / "prepared.parquet"
    assert (
        main(["qa", "prepare", "--input", str(qa_jsonl), "--out", str(prepared), "--data-source", "toyqa"])
        == 0
    )
    rows = pq.read_table(prepared).to_pylist()
    assert len(rows) == len(FACTS)
    rows.insert(
        3,
        make_row(
            data_source="toyqa",
            prompt=qa_messages(NO_ANSWER_QUESTION),
            ability="qa",
            ground_truth=[],
            extra_info={"mask_num": 0, "question": NO_ANSWER_QUESTION, "split": "test", "index": 99},
            agent_name="masksearch_agent",
        ),
    )
    out = folder / "toyqa.parquet"
    write_rows(rows, out)
    return out


@pytest.fixture(scope="session")
def fsdp_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    """``.../global_step_1`` of a real verl FSDP2 checkpoint of the tiny model (about 10 s)."""
    import os

    root = tmp_path_factory.mktemp("verl-ckpt")
    step = root / "global_step_1"
    script = Path(__file__).with_name("_make_fsdp_checkpoint.py")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tiny_model_path), str(step / "actor")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return step
