"""A scripted multi-agent teacher behind the real OpenAI protocol (run as a subprocess by conftest).

``POST /v1/chat/completions`` answers as the planner, the query rewriter or the observer,
recognised by the system prompt of ``masksearch.sft.agents``, with replies scripted by the
task text (the tests' rows):

- "Tosca ... born": two sub-questions; the observer asks for Puccini's birthplace, then answers Lucca;
- RAMP "Eiffel Tower": one search, answers the two spans;
- "Atlantis": answers "Unknown" (a wrong answer);
- "forever": the observer never answers (the trajectory hits the turn budget);
- "garbage": the planner's reply has no sub-question (malformed text).

Models change the transport: ``teacher`` behaves; ``ratelimited`` answers the first attempt of
every distinct request with HTTP 429 (``Retry-After: 0``); ``broken`` always returns HTTP 500. ``GET /stats`` counts
requests, ``GET /health`` is for start-up.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared stub helpers
from _stub_support import chat_completion, serve_stub


def _planner(task: str) -> str:
    if "garbage" in task:
        return "I would rather not make a plan."
    if "Eiffel" in task:
        return "THOUGHT: I need who built the Eiffel Tower and when.\n1. Which company built the Eiffel Tower and when was it completed?"
    if "Tosca" in task:
        return "THOUGHT: I need the composer of Tosca, then his birthplace.\n1. Who composed Tosca?\n2. Where was the composer of Tosca born?"
    return "THOUGHT: One fact is needed.\n1. " + task.splitlines()[0][:80]


def _rewriter(need: str) -> str:
    if "composed Tosca" in need:
        return "QUERY: Tosca opera composer"
    if "Puccini" in need and "born" in need:
        return "QUERY: Giacomo Puccini born"
    if "Eiffel" in need:
        return "Eiffel Tower company completed"  # no QUERY: key: the first line is used
    return "QUERY: " + need


def _observer(task: str, results: str) -> str:
    if "forever" in task:
        return "NOTE: Nothing useful yet.\nNEXT: look again"
    if "Atlantis" in task:
        return "NOTE: The results do not mention Atlantis.\nANSWER: Unknown"
    if "Eiffel" in task:
        return "NOTE: The company of Gustave Eiffel built it; it was completed in 1889.\nANSWER:\nGustave Eiffel\n1889"
    if "Tosca" in task:
        if "Lucca" in results:
            return "NOTE: Giacomo Puccini was born in Lucca.\nANSWER: Lucca"
        return "NOTE: Tosca is an opera by Giacomo Puccini.\nNEXT: Where was Giacomo Puccini born?"
    return "NOTE: I guess.\nANSWER: I do not know"


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return match.group(1) if match else ""


def create_app() -> FastAPI:
    app = FastAPI()
    stats = {"requests": 0, "chat": 0, "rate_limited": 0}
    seen: set[str] = set()

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/stats")
    async def get_stats() -> dict:
        return stats

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        stats["requests"] += 1
        model = body.get("model", "teacher")
        if model == "broken":
            return JSONResponse({"error": "boom"}, status_code=500)
        key = json.dumps(body["messages"], sort_keys=True)
        if model == "ratelimited" and key not in seen:
            seen.add(key)
            stats["rate_limited"] += 1
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"})
        stats["chat"] += 1
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        task = user.split("\n\nKnown so far")[0]
        if system.startswith("You are the planner"):
            text = _planner(task)
        elif system.startswith("You are the query rewriter"):
            text = _rewriter(_field(user, "Current need"))
        elif system.startswith("You are the observer"):
            text = _observer(task, user.split("Search results:", 1)[-1])
        else:
            text = "?"
        return chat_completion(model, text)

    return app


if __name__ == "__main__":
    serve_stub(create_app)
