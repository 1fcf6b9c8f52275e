"""What the scripted OpenAI-compatible stub servers share (they run as scripts: ``python STUB --port N``).

A stub imports this after putting ``tests/`` on ``sys.path``; pytest never imports it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def chat_completion(model: str, content: str, finish_reason: str = "stop", **fields) -> dict:
    """A ``/v1/chat/completions`` reply with one assistant choice; ``fields`` go into the choice."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish_reason,
    }
    return {"id": "chat-1", "object": "chat.completion", "model": model, "choices": [{**choice, **fields}]}


def serve_stub(create_app: Callable) -> None:
    """``--port N``: serve ``create_app()`` on 127.0.0.1 until killed."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")
