"""A small OpenAI-compatible server backed by transformers (``masksearch sft serve``).

It lets the self-evolving loop run offline on CPU: the trained student becomes the next teacher.
``POST /v1/completions`` (text or token-id prompt) and ``POST /v1/chat/completions`` (with vLLM's
``continue_final_message``) behave like vLLM: the stop string is cut from the text,
``finish_reason`` is ``stop``/``length`` and ``stop_reason`` names the stop string (``None`` for
EOS). Concurrent requests are generated together in batches. On GPUs use vLLM instead::

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


class _Batcher:
    """Requests that arrive together are generated together (one ``generate_batch`` call).

    One worker thread takes the oldest waiting request, then every other waiting request with the
    same sampling settings and stop strings (up to ``max_batch``, waiting at most ``window_s`` for
    more), and generates them as one left-padded batch; rows stop on their own stop strings and
    limits (the generator's per-row stopping). Concurrent synthesis threads thus share forward
    passes instead of queueing behind one lock.
    """

    def __init__(self, generator: Any, max_batch: int = 16, window_s: float = 0.02):
        import queue

        self.generator = generator
        self.max_batch = max(1, int(max_batch))
        self.window_s = float(window_s)
        self._queue: queue.Queue = queue.Queue()
        self._held: list[dict[str, Any]] = []
        self.batches: list[int] = []  # sizes of the batches run (for tests and logs)
        self._worker = threading.Thread(target=self._loop, name="sft-serve-batcher", daemon=True)
        self._worker.start()

    def submit(self, prompt: Any, max_tokens: int, stop: list[str], temperature: float, top_p: float) -> Any:
        from concurrent.futures import Future

        future: Future = Future()
        key = (float(temperature), float(top_p), tuple(stop))
        self._queue.put({"prompt": prompt, "max_tokens": max_tokens, "key": key, "future": future})
        return future.result()

    def _take(self) -> list[dict[str, Any]]:
        import queue
        import time

        first = self._held.pop(0) if self._held else self._queue.get()
        batch = [first]
        rest: list[dict[str, Any]] = []
        for req in self._held:
            (batch if req["key"] == first["key"] and len(batch) < self.max_batch else rest).append(req)
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                req = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            (batch if req["key"] == first["key"] else rest).append(req)
        self._held = rest
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            temperature, top_p, stop = batch[0]["key"]
            try:
                self.generator.temperature = temperature
                self.generator.top_p = top_p
                prompts = [r["prompt"] for r in batch]
                limits = [r["max_tokens"] for r in batch]
                if len(batch) == 1:
                    results = [self.generator.generate(prompts[0], limits[0], list(stop))]
                else:
                    results = self.generator.generate_batch(prompts, limits, list(stop))
                self.batches.append(len(batch))
                for req, result in zip(batch, results, strict=True):
                    req["future"].set_result(result)
            except Exception as exc:  # answered as HTTP 500 by the handler, the server keeps going
                logger.warning("batch of %d failed: %s", len(batch), exc)
                for req in batch:
                    if not req["future"].done():
                        req["future"].set_exception(exc)


def create_app(generator: Any, served_name: str, *, max_batch: int = 16) -> FastAPI:
    """The FastAPI app over an :class:`masksearch.env.generators.HFGenerator` (no module globals).

    Concurrent requests are batched (:class:`_Batcher`, at most ``max_batch`` rows per forward).
    """
    app = FastAPI(title="masksearch sft serve")
    tokenizer = generator.tokenizer
    batcher = _Batcher(generator, max_batch=max_batch)
    app.state.batcher = batcher

    def run(prompt: Any, body: dict[str, Any]) -> tuple[str, str, str | None]:
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        max_tokens = int(body.get("max_tokens") or DEFAULT_MAX_TOKENS)
        result = batcher.submit(
            prompt, max_tokens, stop, float(body.get("temperature") or 0.0), float(body.get("top_p") or 1.0)
        )
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
    import torch
    import uvicorn

    from masksearch.env.generators import HFGenerator

    on_gpu = torch.cuda.is_available()
    # fp32 on CPU: bf16 checkpoints are slow there (as masksearch eval does)
    generator = HFGenerator(
        model, device="cuda" if on_gpu else "cpu", torch_dtype=None if on_gpu else "float32"
    )
    name = served_name or os.path.basename(os.path.normpath(model))
    uvicorn.run(create_app(generator, name), host=host, port=port, log_level="warning")
