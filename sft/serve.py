"""A small OpenAI-compatible server backed by transformers (``masksearch sft serve``).

It serves a trained model offline on CPU to any OpenAI client (self-evolve runs its student in
process instead). ``POST /v1/completions`` (text or token-id prompt) and
``POST /v1/chat/completions`` (with vLLM's ``continue_final_message``) behave like vLLM: the stop
string is cut from the text, ``finish_reason`` is ``stop``/``length`` and ``stop_reason`` names the
stop string (``None`` for EOS). Every request is a row of the generator's one generation engine
(``masksearch.engine``), with its own budget, stop strings and sampling settings, so concurrent
requests share forward passes whatever they ask for. On GPUs use vLLM instead::

    vllm serve <hf_dir> --served-model-name <name> --port <port>
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from masksearch.engine.stops import strip_stop

__all__ = ["create_app", "serve"]

DEFAULT_MAX_TOKENS = 256
BATCH_WAIT_MS = 20.0  # requests arriving this close together are prefilled together


def create_app(generator: Any, served_name: str, *, max_batch: int = 16) -> FastAPI:
    """The FastAPI app over an :class:`masksearch.env.generators.HFGenerator` (no module globals).

    At most ``max_batch`` rows are decoded together; ``app.state.engine`` is the generator's engine.
    """
    app = FastAPI(title="masksearch sft serve")
    tokenizer = generator.tokenizer
    generator.max_batch_size = max(1, int(max_batch))
    engine = app.state.engine = generator.engine
    engine.max_batch_size, engine.batch_wait_ms = generator.max_batch_size, BATCH_WAIT_MS

    async def run(prompt: Any, body: dict[str, Any]) -> tuple[str, str, str | None]:
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        max_tokens = int(body.get("max_tokens") or DEFAULT_MAX_TOKENS)
        sampling = {
            "temperature": float(body.get("temperature") or 0.0),
            "top_p": float(body.get("top_p") or 1.0),
        }
        try:
            spec = generator.row_spec(prompt, max_tokens, stop, **sampling)
            row = await asyncio.wrap_future(engine.submit(spec))
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        result = generator.result(row)
        return strip_stop(result.text, result.finish_reason, stop)

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
        text, finish, stop_reason = await run(prompt, body)
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
        text, finish, stop_reason = await run(prompt, body)
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


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8001, served_name: str | None = None) -> None:
    """Load ``model`` (an HF folder) and serve it until interrupted."""
    import uvicorn

    name = served_name or os.path.basename(os.path.normpath(model))
    uvicorn.run(create_app(student_generator(model), name), host=host, port=port, log_level="warning")


def student_generator(model: str, **kwargs: Any) -> Any:
    """An ``HFGenerator`` for a trained model on :func:`~masksearch.engine.engine.default_device`
    (the GPU when there is one, else fp32 on CPU, as ``masksearch eval`` does)."""
    from masksearch.engine.engine import default_device
    from masksearch.env.generators import HFGenerator

    device, dtype = default_device()
    generator = HFGenerator(model, device=device, torch_dtype=dtype, **kwargs)
    generator.engine.batch_wait_ms = BATCH_WAIT_MS  # many callers (synthesis threads): prefill them together
    return generator
