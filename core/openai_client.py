"""The one OpenAI-compatible HTTP client: URL handling, timeouts, retries, counters, reply cache.

Every caller of an OpenAI-compatible server goes through this module: the env's text generator
(:class:`masksearch.env.generators.OpenAIGenerator`), the SFT teacher
(:mod:`masksearch.sft.endpoint`), the LLM judge (:mod:`masksearch.rewards.judge`) and the RAMP
span extractor (:mod:`masksearch.data.spans`).

* :func:`v1_base` accepts ``http://host:port``, ``.../v1`` or a full ``.../v1/chat/completions``.
* :class:`OpenAIClient` posts JSON with a per-request timeout (httpx). Retried, with exponential
  backoff and jitter (tenacity; :class:`RetryPolicy`): connection errors and timeouts, HTTP
  408/409/425/429/5xx (``Retry-After`` is honoured, capped at ``backoff_max_s``) and replies that
  ``parse`` rejects. Other HTTP errors (400, 401, 404) fail at once. After the last attempt, or
  past ``deadline_s``, :class:`EndpointError` is raised with a ``reason`` (``"timeout"``,
  ``"http_503"``, ``"malformed"``, the transport error's class name).
* :class:`DiskCache` is the one reply cache: one JSON file per key under
  ``folder/<k[:2]>/<k>.json``, written atomically (concurrent workers and killed runs never leave a
  half-written entry); a folder that cannot be used is logged once and caching is switched off.

Importing this module is cheap (httpx and tenacity load on first use); ``masksearch.core``
itself never imports it.

>>> v1_base("http://127.0.0.1:8000/"), v1_base("http://h/v1/chat/completions")
('http://127.0.0.1:8000/v1', 'http://h/v1')
>>> RetryPolicy(max_attempts=3, backoff_initial_s=1.0).delay(2, retry_after=0.5)
0.5
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = [
    "RETRY_STATUS",
    "CallStats",
    "DiskCache",
    "EndpointError",
    "OpenAIClient",
    "RetryPolicy",
    "Retryable",
    "cache_key",
    "call_with_retries",
    "chat_text",
    "v1_base",
]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def v1_base(url: str) -> str:
    """The ``.../v1`` base of an OpenAI-compatible server URL."""
    base = url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base if base.endswith("/v1") else base + "/v1"


class EndpointError(RuntimeError):
    """The endpoint gave no usable reply after all attempts (one-line message).

    ``reason``: ``"timeout"``, ``"http_<status>"``, ``"malformed"`` or a transport error's class
    name; ``status``: the last HTTP status, if any.
    """

    def __init__(self, message: str, reason: str = "error", status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class Retryable(Exception):
    """An attempt failed in a way worth retrying (raised inside a call given to :func:`call_with_retries`)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        rate_limited: bool = False,
        reason: str = "error",
        status: int | None = None,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` calls per request; the wait before attempt ``i+1`` is
    ``min(backoff_max_s, backoff_initial_s · 2^(i-1))`` with ±25 % jitter, or ``Retry-After``
    (capped at ``backoff_max_s``) when the server sent one."""

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
    """Thread-safe counters of endpoint calls: ``calls`` (HTTP attempts), ``cache_hits``,
    ``retries``, ``rate_limited`` (HTTP 429 answers), ``failures`` (requests given up)."""

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

    def __getstate__(self) -> dict[str, Any]:
        return {"_counts": self.as_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._counts = dict(state["_counts"])


def cache_key(model: str, payload: Any) -> str:
    """SHA-256 of the model and the request payload (messages or prompt, sampling parameters).

    >>> cache_key("m", {"messages": [1]}) == cache_key("m", {"messages": [1]}) != cache_key("n", {"messages": [1]})
    True
    """
    blob = json.dumps({"model": model, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class DiskCache:
    """One JSON file per key; a ``None`` (or empty) folder disables caching. Never raises."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder not in (None, "") else None

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any:
        if self.folder is None:
            return None
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: Any) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("reply cache %s unusable (%s); continuing without cache", self.folder, exc)
            self.folder = None


def call_with_retries(
    call: Callable[[], Any],
    retry: RetryPolicy,
    stats: CallStats,
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline_s: float | None = None,
) -> Any:
    """Run ``call`` until it returns, retrying :class:`Retryable` failures under ``retry``.

    Any other exception propagates at once. Raises :class:`EndpointError` after the last attempt
    or once ``deadline_s`` (retries included) has passed.
    """
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay

    attempts = [0]

    def counted() -> Any:
        attempts[0] += 1
        stats.add("calls")
        try:
            return call()
        except Retryable as exc:
            if exc.rate_limited:
                stats.add("rate_limited")
            raise

    def wait(state: Any) -> float:
        exc = state.outcome.exception()
        return retry.delay(state.attempt_number, getattr(exc, "retry_after", None))

    def before_sleep(state: Any) -> None:
        stats.add("retries")
        logger.info(
            "%s: %s; retry %d/%d in %.2fs",
            what,
            state.outcome.exception(),
            state.attempt_number,
            retry.max_attempts - 1,
            state.next_action.sleep if state.next_action else 0.0,
        )

    stop = stop_after_attempt(retry.max_attempts)
    if deadline_s is not None:
        stop = stop | stop_after_delay(deadline_s)
    try:
        return Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(Retryable),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )(counted)
    except Retryable as exc:
        stats.add("failures")
        raise EndpointError(
            f"{what}: {exc} (after {attempts[0]} attempts)", reason=exc.reason, status=exc.status
        ) from exc


def chat_text(payload: Any) -> str:
    """The assistant text of a ``/chat/completions`` reply; ``ValueError`` when there is none."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"no choices[0].message.content ({type(exc).__name__})") from exc
    if not isinstance(content, str):
        raise ValueError("no text content")
    return content


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIClient:
    """POST JSON to an OpenAI-compatible server, with the timeout and retries above.

    Picklable (the httpx client is rebuilt lazily after unpickling; a passed ``http_client`` is not
    carried over).

    Args:
        url: server root (``http://host:port``) or its ``/v1`` base.
        api_key: bearer token (``None``/empty: none sent; never logged).
        timeout_s: per-request timeout (> 0).
        retry: retry policy (default :class:`RetryPolicy`).
        stats: counters, shared with the caller.
        deadline_s: overall budget of one request, retries included (``None``: no deadline).
        max_connections: httpx connection-pool cap.
        http_client: an ``httpx.Client`` to use (tests, custom transports).
        sleep: the backoff sleep (tests pass a no-op).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        stats: CallStats | None = None,
        deadline_s: float | None = None,
        max_connections: int | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if float(timeout_s) <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.base_url = v1_base(url)
        self.timeout_s = float(timeout_s)
        self.retry = retry or RetryPolicy()
        self.stats = stats or CallStats()
        self.deadline_s = deadline_s
        self.max_connections = max_connections
        self.sleep = sleep
        self._api_key = api_key or ""
        self._client = http_client
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state.pop("_lock", None)
        if state.get("sleep") is not time.sleep:
            state["sleep"] = time.sleep
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIClient({self.base_url!r})"

    def http(self) -> Any:
        """The underlying ``httpx.Client`` (built on first use)."""
        with self._lock:
            if self._client is None:
                import httpx

                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                limits = httpx.Limits(max_connections=self.max_connections)
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s), headers=headers, limits=limits
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def post(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[Any], Any] | None = None,
        *,
        deadline_s: float | None = None,
    ) -> Any:
        """POST ``body`` to ``base_url + path``; return the JSON reply, or ``parse(reply)``.

        ``parse`` raising ``ValueError``/``KeyError``/``IndexError``/``TypeError`` counts as a
        malformed reply and is retried (a sampling server gives a new sample).

        Raises:
            EndpointError: no usable reply after the retries, or a non-retryable HTTP error.
        """
        import httpx

        url = self.base_url + path
        deadline = self.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()

        def call() -> Any:
            # Each attempt's timeout is bounded by what is left of the deadline, so a server that
            # accepts and never answers costs at most the deadline, not deadline + timeout_s.
            timeout = self.timeout_s
            if deadline is not None:
                timeout = min(timeout, max(0.001, deadline - (time.monotonic() - started)))
            try:
                response = self.http().post(url, json=body, timeout=httpx.Timeout(timeout))
            except httpx.TimeoutException as exc:
                raise Retryable(f"{type(exc).__name__}: {exc}", reason="timeout") from exc
            except httpx.HTTPError as exc:
                raise Retryable(f"{type(exc).__name__}: {exc}", reason=type(exc).__name__) from exc
            status = response.status_code
            if status in RETRY_STATUS:
                raise Retryable(
                    f"HTTP {status}",
                    retry_after=_retry_after(response),
                    rate_limited=status == 429,
                    reason=f"http_{status}",
                    status=status,
                )
            if status >= 400:
                self.stats.add("failures")
                raise EndpointError(
                    f"{url}: HTTP {status} {response.text[:200]}", reason=f"http_{status}", status=status
                )
            try:
                payload = response.json()
                return payload if parse is None else parse(payload)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise Retryable(f"malformed response: {exc}", reason="malformed") from exc

        return call_with_retries(call, self.retry, self.stats, url, sleep=self.sleep, deadline_s=deadline)
