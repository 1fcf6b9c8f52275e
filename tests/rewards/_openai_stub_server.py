"""A small OpenAI-compatible chat server for the judge tests (run as a subprocess by conftest).

``POST /v1/chat/completions`` answers like OpenAI: the verdict is "Yes" when the predicted answer
(lowercased, stripped) equals one of the gold answers in the prompt, else "No". Model ``slow``
sleeps before answering (timeout tests); model ``garbage`` answers an unreadable verdict.
``GET /count`` returns how many completions were requested; ``GET /health`` is for start-up.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from fastapi import FastAPI, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared stub helpers
from _stub_support import chat_completion, serve_stub


def create_app() -> FastAPI:
    app = FastAPI()
    state = {"count": 0, "auth": []}

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/count")
    async def count() -> dict:
        return {"count": state["count"], "auth": state["auth"][-1:]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        state["count"] += 1
        state["auth"].append(request.headers.get("authorization", ""))
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        model = body.get("model", "")
        if model == "slow":
            await asyncio.sleep(5)
        golds_m = re.search(r"Gold answers(?: \(JSON list\))?: (.*)", prompt)
        quoted_m = re.search(r"<<<PREDICTION\n(.*)\nPREDICTION>>>", prompt)  # JSON-quoted, as data
        pred_m = re.search(r"Predicted answer: (.*)", prompt)
        golds = [g.lower().strip() for g in json.loads(golds_m.group(1))] if golds_m else []
        if quoted_m:
            pred = json.loads(quoted_m.group(1)).lower().strip()
        else:
            pred = pred_m.group(1).lower().strip() if pred_m else ""
        verdict = "Yes" if pred in golds else "No"
        if model == "garbage":
            verdict = "I cannot decide"
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        return {**chat_completion(model, verdict), "id": "chatcmpl-test", "created": 0, "usage": usage}

    return app


if __name__ == "__main__":
    serve_stub(create_app)
