"""Calls to an OpenAI-compatible teacher: retries with backoff, an on-disk cache, counters.

* :class:`ChatEndpoint` -- ``POST /v1/chat/completions`` for the planner / rewriter / observer.
* :class:`ResilientGenerator` -- wraps :class:`masksearch.env.generators.OpenAIGenerator` (the env's
  own text generator) with the same retries and cache, for a teacher that *is* a search agent
  (the self-evolving rounds).

Retried: connection errors and timeouts, HTTP 408/429/5xx (``Retry-After`` is honoured, capped at
``backoff_max_s``) and unreadable JSON. Other HTTP errors (400, 401, 404) fail at once. After the
last attempt :class:`EndpointError` is raised; the orchestrator records the item as failed.

The cache holds one JSON file per call under ``cache_dir/<k[:2]>/<k>.json``, ``k`` = SHA-256 of the
model, the messages (or prompt) and the sampling parameters; files are written atomically, so
concurrent workers and killed runs never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("MASKSEARCH_LOGGING_LEVEL", "WARN"))

__all__ = [
    "CallStats",
    "ChatEndpoint",
    "DiskCache",
    "EndpointError",
    "ResilientGenerator",
    "RetryPolicy",
    "cache_key",
]

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """The endpoint could not give a usable reply after all attempts (one-line message)."""


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` calls per request; the wait before attempt ``i+1`` is
    ``min(backoff_max_s, backoff_initial_s · 2^(i-1))`` with ±25 % jitter (or ``Retry-After``)."""

    max_attempts: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < 0:
            raise ValueError("backoff times must be >= 0")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.backoff_max_s, max(0.0, retry_after))
        base = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.75, 1.25)


class CallStats:
    """Thread-safe counters of endpoint calls (reported in ``report.json``)."""

    KEYS = ("calls", "cache_hits", "retries", "rate_limited", "failures")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KEYS, 0)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def cache_key(model: str, payload: Any) -> str:
    """SHA-256 of the model and the request payload (messages or prompt, sampling parameters).

    >>> cache_key("m", {"messages": [1]}) == cache_key("m", {"messages": [1]}) != cache_key("n", {"messages": [1]})
    True
    """
    blob = json.dumps({"model": model, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class DiskCache:
    """One JSON file per key; ``None`` folder disables caching."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, rate_limited: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


def _retry_loop(
    call: Callable[[], Any], retry: RetryPolicy, stats: CallStats, what: str, sleep: Callable[[float], None]
) -> Any:
    last = ""
    for attempt in range(1, retry.max_attempts + 1):
        stats.add("calls")
        try:
            return call()
        except _Retryable as exc:
            last = str(exc)
            if exc.rate_limited:
                stats.add("rate_limited")
            if attempt == retry.max_attempts:
                break
            stats.add("retries")
            wait = retry.delay(attempt, exc.retry_after)
            logger.info("%s: %s; retry %d/%d in %.2fs", what, last, attempt, retry.max_attempts - 1, wait)
            sleep(wait)
    stats.add("failures")
    raise EndpointError(f"{what}: {last} (after {retry.max_attempts} attempts)")


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


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
        import httpx

        base = url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.sampling = {
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_tokens),
        }
        self.retry = retry or RetryPolicy()
        self.cache = cache or DiskCache(None)
        self.stats = stats or CallStats()
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = http_client or httpx.Client(timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._client.close()

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
        if hit is not None and isinstance(hit.get("text"), str):
            try:
                value = parse(hit["text"])
            except ValueError:
                value = None
            else:
                self.stats.add("cache_hits")
                return value

        def call() -> tuple[str, Any]:
            text = self._post(payload)
            try:
                return text, parse(text)
            except ValueError as exc:
                raise _Retryable(f"malformed text: {exc}") from exc

        text, value = _retry_loop(call, self.retry, self.stats, self.base_url, self._sleep)
        self.cache.put(key, {"text": text})
        return value

    def _post(self, payload: dict[str, Any]) -> str:
        import httpx

        url = self.base_url + "/chat/completions"
        try:
            response = self._client.post(url, json={"model": self.model, **payload})
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(
                f"HTTP {response.status_code}",
                retry_after=_retry_after(response),
                rate_limited=response.status_code == 429,
            )
        if response.status_code >= 400:
            self.stats.add("failures")
            raise EndpointError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise _Retryable(f"malformed response ({type(exc).__name__})") from exc
        if not isinstance(content, str):
            raise _Retryable("malformed response (no text content)")
        return content


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
        self,
        prompt: Sequence[int] | str,
        max_new_tokens: int,
        stop: Sequence[str],
        *,
        messages: list[dict[str, Any]] | None = None,
    ) -> Any:
        from masksearch.env.generators import GenerationError, GenerationResult

        payload = {
            "prompt": prompt if isinstance(prompt, str) else [int(t) for t in prompt],
            "max_tokens": int(max_new_tokens),
            "stop": list(stop),
            "temperature": getattr(self.inner, "temperature", None),
        }
        key = cache_key(self.model, payload)
        hit = self.cache.get(key)
        if hit is not None and isinstance(hit.get("text"), str):
            self.stats.add("cache_hits")
            return GenerationResult(text=hit["text"], finish_reason=hit.get("finish_reason"))

        def call() -> Any:
            try:
                return self.inner.generate(prompt, max_new_tokens, stop, messages=messages)
            except GenerationError as exc:
                raise _Retryable(str(exc), rate_limited="HTTP 429" in str(exc)) from exc

        result = _retry_loop(call, self.retry, self.stats, self.model, self._sleep)
        self.cache.put(key, {"text": result.text, "finish_reason": result.finish_reason})
        return result
