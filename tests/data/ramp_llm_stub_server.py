"""A small real OpenAI-compatible server for the LLM span extractor tests.

Run as ``python ramp_llm_stub_server.py PORT``. ``/v1/chat/completions`` answers with a JSON array
of the capitalised words of the passage; the model name selects a failure mode:
``slow`` sleeps past the client timeout, ``broken`` answers HTTP 500, ``chatty`` wraps the array in
prose and a code fence, ``garbage`` answers text with no array. ``/stats`` counts requests.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    app = FastAPI()
    state = {"requests": 0, "auth": []}

    @app.get("/stats")
    def stats() -> dict:
        return state

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["requests"] += 1
        state["auth"].append(request.headers.get("authorization"))
        model = body["model"]
        passage = body["messages"][-1]["content"].split("Passage: ", 1)[-1]
        if model == "slow":
            await asyncio.sleep(3)
        if model == "broken":
            return JSONResponse({"error": "boom"}, status_code=500)
        spans = re.findall(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*", passage)
        content = json.dumps([*spans, "not in the passage"])
        if model == "chatty":
            content = f"Here you go:\n```json\n{content}\n```"
        if model == "garbage":
            content = "I cannot help with that."
        return {"choices": [{"message": {"role": "assistant", "content": content}}]}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
