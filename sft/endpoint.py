"""Calls to an OpenAI-compatible teacher: retries with backoff, an on-disk cache, counters.

* :class:`ChatEndpoint` -- ``POST /v1/chat/completions`` for the planner / rewriter / observer.
* :class:`ResilientGenerator` -- wraps :class:`masksearch.env.generators.OpenAIGenerator` (the env's
  own text generator) with the same retries and cache, for a teacher that *is* a search agent
  (the self-evolving rounds).

The HTTP side, the retry policy (connection errors and timeouts, HTTP 408/429/5xx with
``Retry-After`` honoured, unreadable JSON), the counters and the cache are the shared ones of
:mod:`masksearch.core.openai_client`; they are re-exported here. Other HTTP errors (400, 401, 404)
fail at once. After the last attempt :class:`EndpointError` is raised; the orchestrator records
the item as failed.

The cache holds one JSON file per call under ``cache_dir/<k[:2]>/<k>.json``, ``k`` = SHA-256 of the
model, the messages (or prompt) and the sampling parameters.

>>> ChatEndpoint("http://127.0.0.1:8000/", "m").base_url  # no request is sent before chat()
'http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from masksearch.core.openai_client import (
    CallStats,
    DiskCache,
    EndpointError,
    OpenAIClient,
    Retryable,
    RetryPolicy,
    cache_key,
    call_with_retries,
    chat_text,
)

if TYPE_CHECKING:
    from masksearch.env.generators import GenerationResult, Messages, Prompt

__all__ = [
    "CallStats",
    "ChatEndpoint",
    "DiskCache",
    "EndpointError",
    "ResilientGenerator",
    "RetryPolicy",
    "cache_key",
]


class ChatEndpoint:
    """``/v1/chat/completions`` of an OpenAI-compatible server (vLLM, SGLang, OpenAI, ``masksearch sft serve``).

    Args:
        url: server root (``http://host:port``) or its ``/v1`` base.
        model: served model name (part of the cache key).
        api_key: bearer token, if the server wants one.
        temperature, top_p, max_tokens: sampling parameters of every call.
        timeout_s: per-request timeout.
        retry: retry policy.
        cache: on-disk cache (``DiskCache(None)`` disables it).
        stats: shared counters.
        http_client: an ``httpx.Client`` to use instead of a new one.
        sleep: the backoff sleep (tests pass a no-op).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 512,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        cache: DiskCache | None = None,
        stats: CallStats | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.model = model
        self.sampling = {
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_tokens),
        }
        self.cache = cache or DiskCache(None)
        self.client = OpenAIClient(
            url, api_key, timeout_s=timeout_s, retry=retry, stats=stats, http_client=http_client, sleep=sleep
        )
        self.base_url = self.client.base_url
        self.retry = self.client.retry
        self.stats = self.client.stats

    def close(self) -> None:
        self.client.close()

    def chat(self, messages: Sequence[dict[str, str]], parse: Callable[[str], Any] | None = None) -> Any:
        """The reply text, or ``parse(text)`` when given.

        A reply that ``parse`` rejects (it raises ``ValueError``) counts as a failed attempt and is
        retried like an HTTP error (a sampling server gives a new sample). Only replies that
        parse are cached, so a resumed run asks again for the ones that did not.

        Raises:
            EndpointError: no usable reply after the retries.
        """
        parse = parse or (lambda text: text)
        payload: dict[str, Any] = {"messages": [dict(m) for m in messages], **self.sampling}
        key = cache_key(self.model, payload)
        hit = self.cache.get(key)
        if isinstance(hit, dict) and isinstance(hit.get("text"), str):
            try:
                value = parse(hit["text"])
            except ValueError:
                value = None
            else:
                self.stats.add("cache_hits")
                return value

        def reply(body: Any) -> tuple[str, Any]:
            text = chat_text(body)
            try:
                return text, parse(text)
            except ValueError as exc:
                raise ValueError(f"malformed text: {exc}") from exc

        text, value = self.client.post("/chat/completions", {"model": self.model, **payload}, reply)
        self.cache.put(key, {"text": text})
        return value


class ResilientGenerator:
    """A :class:`~masksearch.env.generators.TextGenerator` with retries and the disk cache.

    Wraps a text-out generator (normally ``OpenAIGenerator``); every ``GenerationError`` is
    retried with backoff, then turned into :class:`EndpointError`.
    """

    token_in = False

    def __init__(
        self,
        inner: Any,
        model: str,
        *,
        retry: RetryPolicy | None = None,
        cache: DiskCache | None = None,
        stats: CallStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.inner = inner
        self.model = model
        self.retry = retry or RetryPolicy()
        self.cache = cache or DiskCache(None)
        self.stats = stats or CallStats()
        self._sleep = sleep

    def generate(
        self, prompt: Prompt, max_new_tokens: int, stop: Sequence[str], *, messages: Messages = None
    ) -> GenerationResult:
        from masksearch.env.generators import GenerationError, GenerationResult

        payload = {
            "prompt": prompt if isinstance(prompt, str) else [int(t) for t in prompt],
            "max_tokens": int(max_new_tokens),
            "stop": list(stop),
            "temperature": getattr(self.inner, "temperature", None),
        }
        key = cache_key(self.model, payload)
        hit = self.cache.get(key)
        if isinstance(hit, dict) and isinstance(hit.get("text"), str):
            self.stats.add("cache_hits")
            return GenerationResult(text=hit["text"], finish_reason=hit.get("finish_reason"))

        def call() -> Any:
            try:
                return self.inner.generate(prompt, max_new_tokens, stop, messages=messages)
            except GenerationError as exc:
                raise Retryable(str(exc), rate_limited="HTTP 429" in str(exc)) from exc

        result = call_with_retries(call, self.retry, self.stats, self.model, sleep=self._sleep)
        self.cache.put(key, {"text": result.text, "finish_reason": result.finish_reason})
        return result
