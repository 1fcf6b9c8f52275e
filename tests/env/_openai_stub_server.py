"""A scripted OpenAI-compatible server for the env tests (run as a subprocess by conftest).

It speaks the real protocol (``POST /v1/completions``, ``POST /v1/chat/completions``) and behaves
like OpenAI: the text is cut *before* the first stop string, which is not returned, and
``finish_reason`` is ``"stop"``. What it writes is scripted by position: turn ``k`` of the
assistant is the ``k``-th entry of ``SCRIPT`` where ``k`` is the number of ``</information>``
blocks already in the assistant's part of the prompt. Models change the behaviour:

- ``scripted``: the script above; ``vllm-style``: the same plus vLLM's ``stop_reason`` field;
- ``mute``: "I do not know." and EOS (``finish_reason == "stop"``, no stop string);
- ``long``: ``finish_reason == "length"``; ``broken``: HTTP 500.

``POST /retrieve`` sleeps 2 s (a retriever that times out); ``GET /requests`` lists the bodies
received; ``GET /health`` is for start-up.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared stub helpers
from _stub_support import chat_completion, serve_stub

SCRIPT = [
    "<think>I need the composer of Tosca.</think>\n<search>Tosca opera composer</search> and more <answer>x</answer>",
    "<think>Puccini wrote it. Where was he born?</think>\n<search>Giacomo Puccini born</search>",
    "<think>He was born in Lucca.</think>\n<answer> Lucca </answer>\nextra text",
]
ASSISTANT_MARK = "<|im_start|>assistant"


def _reply(model: str, assistant_text: str, stop: list[str]) -> tuple[str, str, dict]:
    if model == "mute":
        return "I do not know.", "stop", {}
    if model == "long":
        return "<think>" + "very " * 50, "length", {}
    turn = min(assistant_text.count("</information>"), len(SCRIPT) - 1)
    text = SCRIPT[turn]
    hits = [(text.find(s), s) for s in stop if s in text]
    extra: dict = {}
    if hits:
        pos, matched = min(hits)
        text = text[:pos]
        if model == "vllm-style":
            extra["stop_reason"] = matched
        return text, "stop", extra
    return text, "stop", extra


def create_app() -> FastAPI:
    app = FastAPI()
    received: list[dict] = []

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/requests")
    async def requests() -> dict:
        return {"requests": received}

    async def receive(request: Request, path: str) -> tuple[dict, str]:
        """The request's body and model, recorded for ``GET /requests``; model ``broken`` gets HTTP 500."""
        body = await request.json()
        received.append({"path": path, **body})
        model = body.get("model", "scripted")
        if model == "broken":
            raise HTTPException(status_code=500, detail="boom")
        return body, model

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict:
        body, model = await receive(request, "completions")
        prompt = body["prompt"]
        assistant = prompt.rsplit(ASSISTANT_MARK, 1)[-1] if isinstance(prompt, str) else ""
        text, finish, extra = _reply(model, assistant, list(body.get("stop") or []))
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None, **extra}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body, model = await receive(request, "chat")
        messages = body["messages"]
        assistant = messages[-1]["content"] if body.get("continue_final_message") else ""
        text, finish, extra = _reply(model, assistant, list(body.get("stop") or []))
        return chat_completion(model, text, finish, **extra)

    @app.post("/retrieve")
    async def retrieve(request: Request) -> dict:
        await asyncio.sleep(2.0)
        return {"result": []}

    return app


if __name__ == "__main__":
    serve_stub(create_app)
