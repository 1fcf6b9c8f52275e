"""A small OpenAI-compatible server backed by transformers (``masksearch sft serve``).

It lets the self-evolving loop run offline on CPU: the trained student becomes the next teacher.
``POST /v1/completions`` (text or token-id prompt) and ``POST /v1/chat/completions`` (with vLLM's
``continue_final_message``) behave like vLLM: the stop string is cut from the text,
``finish_reason`` is ``stop``/``length`` and ``stop_reason`` names the stop string (``None`` for
EOS). Requests are served one at a time (one model, one lock). On GPUs use vLLM instead::

    vllm serve <hf_dir> --served-model-name <name> --port <port>
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Request

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("MASKSEARCH_LOGGING_LEVEL", "WARN"))

__all__ = ["create_app", "serve"]

DEFAULT_MAX_TOKENS = 256


def _openai_text(text: str, finish: str | None, stop: list[str]) -> tuple[str, str, str | None]:
    """``(text without the stop string, finish_reason, stop_reason)`` as vLLM reports them."""
    if finish == "stop":
        for s in stop:
            if text.endswith(s):
                return text[: -len(s)], "stop", s
    if finish == "length":
        return text, "length", None
    return text, "stop", None


def create_app(generator: Any, served_name: str) -> FastAPI:
    """The FastAPI app over an :class:`masksearch.env.generators.HFGenerator` (no module globals)."""
    app = FastAPI(title="masksearch sft serve")
    lock = threading.Lock()
    tokenizer = generator.tokenizer

    def run(prompt: Any, body: dict[str, Any]) -> tuple[str, str, str | None]:
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        max_tokens = int(body.get("max_tokens") or DEFAULT_MAX_TOKENS)
        with lock:
            generator.temperature = float(body.get("temperature") or 0.0)
            generator.top_p = float(body.get("top_p") or 1.0)
            result = generator.generate(prompt, max_tokens, stop)
        return _openai_text(result.text, result.finish_reason, stop)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "model": served_name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model"}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str | list):
            raise HTTPException(status_code=400, detail="prompt must be a string or a list of token ids")
        text, finish, stop_reason = await _in_thread(run, prompt, body)
        return {
            "object": "text_completion",
            "model": served_name,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "stop_reason": stop_reason}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPException(status_code=400, detail="messages must be a non-empty list")
        if body.get("continue_final_message") and messages[-1].get("role") == "assistant":
            head = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            prompt = head + str(messages[-1].get("content") or "")
        else:
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text, finish, stop_reason = await _in_thread(run, prompt, body)
        return {
            "object": "chat.completion",
            "model": served_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "stop_reason": stop_reason,
                }
            ],
        }

    return app


async def _in_thread(fn: Any, *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(lambda: fn(*args))


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8001, served_name: str | None = None) -> None:
    """Load ``model`` (an HF folder) and serve it until interrupted."""
    import uvicorn

    from masksearch.env.generators import HFGenerator

    generator = HFGenerator(model)
    name = served_name or os.path.basename(os.path.normpath(model))
    uvicorn.run(create_app(generator, name), host=host, port=port, log_level="warning")
