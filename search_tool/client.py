"""The search client the environment calls: in-process (``index=DIR``) or HTTP (``url=...``).

Contract (style rule 5): ``search``/``asearch`` never raise because of the search service. Every
query gets a :class:`SearchOutcome`; when something fails its ``error`` holds a short message the
environment can show the model (and count as a metric), and ``hits`` is empty. Timeouts and
retries live here, not in the caller:

* ``timeout_s`` bounds one whole call, retries and backoff included, so a dead server costs a
  rollout at most ``timeout_s`` (connection refused fails much faster).
* Transport errors, 429 and 5xx (e.g. the server's 503 when its queue is full) are retried with
  exponential backoff and jitter (tenacity); 4xx are not.
* Identical ``(query, topk)`` pairs are answered from an LRU cache (``cachetools``) — RL groups
  sample the same prompt many times and models repeat queries. Only successes are cached.
* A server started with a token gets ``Authorization: Bearer <token>``; the token is read where
  the client runs (``token_file`` or ``$MASKSEARCH_RETRIEVER_TOKEN``), never stored in the config.
  Error messages show the URL without userinfo or query string.

The client is cheap to construct and pickles as its config only: the retriever, HTTP
connections and cache are created lazily on first use, so it can be built on the driver and
shipped into Ray actors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from masksearch.core.logs import module_logger
from masksearch.core.urls import public_url
from masksearch.search_tool.types import Hit, SearchOutcome

logger = module_logger(__name__, None)

EMPTY_QUERY_ERROR = "empty search query"
#: Seconds :meth:`SearchClient.wait_ready` waits for a retrieval server (default 60).
RETRIEVER_WAIT_ENV = "MASKSEARCH_RETRIEVER_WAIT_S"
DEFAULT_RETRIEVER_WAIT_S = 60.0


def retriever_wait_s() -> float:
    """``$MASKSEARCH_RETRIEVER_WAIT_S`` as seconds (default 60); ValueError for a non-positive or non-number."""
    raw = os.environ.get(RETRIEVER_WAIT_ENV, "")
    if not raw.strip():
        return DEFAULT_RETRIEVER_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{RETRIEVER_WAIT_ENV}={raw!r}: give a positive number of seconds")
    return value


@dataclass(frozen=True)
class SearchClientConfig:
    """Options for :class:`SearchClient`; exactly one of ``index`` and ``url`` is required.

    Attributes:
        index: index folder to load in-process (``masksearch index build`` output).
        url: base URL of a ``masksearch retriever serve`` (or Search-R1) server, e.g.
            ``http://127.0.0.1:8000``; ``/retrieve`` is appended unless already present.
        topk: default number of passages per query.
        timeout_s: budget for one ``search`` call including retries and backoff.
        max_attempts: HTTP attempts per call (1 = no retry).
        backoff_initial_s, backoff_max_s: exponential backoff bounds between attempts.
        cache_size: LRU entries for (query, topk); 0 disables the cache.
        max_query_chars: longer queries are truncated before searching (the server does the same).
        corpus: in-process only: corpus file to check against the index manifest.
        backend: in-process only: BM25 backend (auto, numba, numpy).
        token_file: HTTP only: file holding the server's bearer token (default: the
            ``MASKSEARCH_RETRIEVER_TOKEN`` environment variable, if set).
    """

    index: str | None = None
    url: str | None = None
    topk: int = 3
    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    cache_size: int = 10_000
    max_query_chars: int = 4096
    corpus: str | None = None
    backend: str = "auto"
    token_file: str | None = None

    def __post_init__(self) -> None:
        if (self.index is None) == (self.url is None):
            raise ValueError("give exactly one of index= (in-process) or url= (HTTP) for the search client")
        if self.topk <= 0:
            raise ValueError(f"topk must be positive, got {self.topk}")
        if self.timeout_s <= 0 or self.max_attempts <= 0:
            raise ValueError("timeout_s and max_attempts must be positive")
        if self.cache_size < 0 or self.max_query_chars <= 0:
            raise ValueError("cache_size must be >= 0 and max_query_chars > 0")


class _LRU:
    """Thread-safe ``cachetools.LRUCache`` for (query, topk) -> hits; size 0 caches nothing."""

    def __init__(self, size: int):
        from cachetools import LRUCache

        self.size = size
        self._data: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> list[Hit] | None:
        if self._data is None:
            return None
        with self._lock:
            return self._data.get(key)

    def put(self, key: tuple[str, int], hits: list[Hit]) -> None:
        if self._data is None:
            return
        with self._lock:
            self._data[key] = hits

    def __len__(self) -> int:
        return 0 if self._data is None else len(self._data)


class RetrieverUnavailable(ValueError):
    """The configured retriever cannot be used (start-up check): a one-line reason."""


class SearchError(Exception):
    """A failed search, with the short message shown to the model."""


class _RetryableHTTP(Exception):
    """429/5xx: worth another attempt."""


def _short_error(exc: BaseException, url: str | None, budget: float) -> str:
    import httpx

    if isinstance(exc, SearchError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"search timed out after {budget:g}s"
    if isinstance(exc, httpx.ConnectError):
        return f"search service unreachable at {public_url(url)}"
    if isinstance(exc, httpx.TransportError):
        return f"search service connection failed ({type(exc).__name__})"
    if isinstance(exc, _RetryableHTTP):
        return f"search service unavailable ({exc})"
    return f"search failed: {type(exc).__name__}: {str(exc)[:200]}"


class _InProcess:
    """Loads the index on first use, in whichever process (or Ray actor) first searches."""

    def __init__(self, config: SearchClientConfig):
        self.config = config
        self._retriever = None
        self._lock = threading.Lock()

    def fetch(self, queries: list[str], topk: int) -> list[list[Hit]]:
        with self._lock:
            if self._retriever is None:
                from masksearch.search_tool.retrievers import load_retriever

                self._retriever = load_retriever(
                    self.config.index, self.config.corpus, backend=self.config.backend
                )
            return self._retriever.search(queries, topk)

    async def afetch(self, queries: list[str], topk: int) -> list[list[Hit]]:
        return await asyncio.to_thread(self.fetch, queries, topk)

    def close(self) -> None:
        self._retriever = None


class _Http:
    """POST /retrieve with per-call deadline and tenacity retries; one httpx client per event loop."""

    def __init__(self, config: SearchClientConfig):
        self.config = config
        url = config.url.rstrip("/")
        self.url = url if url.endswith("/retrieve") else url + "/retrieve"
        self._client = None
        self._aclients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        from masksearch.search_tool.protocol import read_token

        token = read_token(config.token_file)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _retrying_kwargs(self) -> dict[str, Any]:
        import httpx
        from tenacity import (
            retry_if_exception_type,
            stop_after_attempt,
            stop_before_delay,
            wait_exponential_jitter,
        )

        c = self.config
        return {
            "stop": stop_after_attempt(c.max_attempts) | stop_before_delay(c.timeout_s),
            "wait": wait_exponential_jitter(initial=c.backoff_initial_s, max=c.backoff_max_s),
            "retry": retry_if_exception_type((httpx.TransportError, _RetryableHTTP)),
            "reraise": True,
        }

    def _payload(self, queries: list[str], topk: int) -> dict[str, Any]:
        from masksearch.search_tool.protocol import RetrieveRequest

        return RetrieveRequest(queries=queries, topk=topk, return_scores=True).model_dump()

    def _parse(self, response, n_queries: int) -> list[list[Hit]]:
        from pydantic import ValidationError

        from masksearch.search_tool.protocol import RetrieveResponse

        status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableHTTP(f"HTTP {status}")
        if status == 401:
            raise SearchError(
                "search service refused the request (HTTP 401): set MASKSEARCH_RETRIEVER_TOKEN "
                "(or token_file) to the server's token"
            )
        if status != 200:
            raise SearchError(f"search request rejected (HTTP {status}): {response.text[:200]}")
        try:
            hits = RetrieveResponse.model_validate_json(response.content).to_hits()
        except ValidationError as exc:
            raise SearchError(
                f"search service sent an unexpected response ({exc.error_count()} errors)"
            ) from None
        if len(hits) != n_queries:
            raise SearchError(f"search service answered {len(hits)} of {n_queries} queries")
        return hits

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            import httpx

            raise httpx.TimeoutException("deadline exceeded")
        return remaining

    def fetch(self, queries: list[str], topk: int) -> list[list[Hit]]:
        import httpx
        from tenacity import Retrying

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.config.timeout_s, headers=self.headers)
        deadline = time.monotonic() + self.config.timeout_s
        payload = self._payload(queries, topk)
        for attempt in Retrying(**self._retrying_kwargs()):
            with attempt:
                response = self._client.post(self.url, json=payload, timeout=self._remaining(deadline))
                return self._parse(response, len(queries))
        raise AssertionError("unreachable")  # pragma: no cover

    async def afetch(self, queries: list[str], topk: int) -> list[list[Hit]]:
        import httpx
        from tenacity import AsyncRetrying

        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = httpx.AsyncClient(
                timeout=self.config.timeout_s, headers=self.headers
            )
        deadline = time.monotonic() + self.config.timeout_s
        payload = self._payload(queries, topk)
        async for attempt in AsyncRetrying(**self._retrying_kwargs()):
            with attempt:
                response = await client.post(self.url, json=payload, timeout=self._remaining(deadline))
                return self._parse(response, len(queries))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class SearchClient:
    """See the module docstring. Build with :func:`make_search_client` or :func:`from_config`."""

    config: SearchClientConfig
    _backend: Any = field(default=None, init=False, repr=False)
    _cache: _LRU | None = field(default=None, init=False, repr=False)
    _init_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def _ensure(self):
        if self._backend is None:
            with self._init_lock:
                if self._backend is None:
                    self._cache = _LRU(self.config.cache_size)
                    self._backend = _InProcess(self.config) if self.config.index else _Http(self.config)
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    # -- searching -------------------------------------------------------------------------------

    def _prepare(self, queries: Sequence[str], topk: int | None):
        """The backend (started on first use, with the cache), and the queries normalised and split
        into ready outcomes (blank, cached) and ones to fetch."""
        backend = self._ensure()
        topk = self.config.topk if topk is None else int(topk)
        outcomes: list[SearchOutcome | None] = [None] * len(queries)
        todo: dict[str, list[int]] = {}
        if topk <= 0:
            error = f"invalid topk {topk}"
            return backend, topk, [SearchOutcome([], error, 0.0) for _ in queries], todo
        cache = self._cache
        for row, query in enumerate(queries):
            text = query if isinstance(query, str) else ("" if query is None else str(query))
            text = text[: self.config.max_query_chars]
            if not text.strip():
                outcomes[row] = SearchOutcome([], EMPTY_QUERY_ERROR, 0.0)
                continue
            hits = cache.get((text, topk)) if cache is not None else None
            if hits is not None:
                outcomes[row] = SearchOutcome(list(hits), None, 0.0, cached=True)
            else:
                todo.setdefault(text, []).append(row)
        return backend, topk, outcomes, todo

    def _failed(self, outcomes, todo, topk, exc: Exception, started: float) -> list[SearchOutcome]:
        """Every query still to fetch gets the one-line reason the batch failed."""
        error = _short_error(exc, self.config.url, self.config.timeout_s)
        logger.warning("search failed for %d queries: %s", len(todo), error)
        return self._finish(outcomes, todo, topk, None, error, started)

    def _finish(self, outcomes, todo, topk, found, error, started: float) -> list[SearchOutcome]:
        latency = time.perf_counter() - started
        for i, (text, rows) in enumerate(todo.items()):
            if error is None:
                hits = found[i]
                if self._cache is not None:
                    self._cache.put((text, topk), hits)
                outcome = SearchOutcome(list(hits), None, latency)
            else:
                outcome = SearchOutcome([], error, latency)
            for row in rows:
                outcomes[row] = outcome
        return outcomes  # type: ignore[return-value]

    def search(self, queries: Sequence[str], topk: int | None = None) -> list[SearchOutcome]:
        """One outcome per query, in order; never raises for service failures."""
        backend, topk, outcomes, todo = self._prepare(list(queries), topk)
        if not todo:
            return outcomes  # type: ignore[return-value]
        started = time.perf_counter()
        try:
            found = backend.fetch(list(todo), topk)
        except Exception as exc:
            return self._failed(outcomes, todo, topk, exc, started)
        return self._finish(outcomes, todo, topk, found, None, started)

    async def asearch(self, queries: Sequence[str], topk: int | None = None) -> list[SearchOutcome]:
        """Async twin of :meth:`search` for the agent loop's event loop."""
        backend, topk, outcomes, todo = self._prepare(list(queries), topk)
        if not todo:
            return outcomes  # type: ignore[return-value]
        started = time.perf_counter()
        try:
            found = await backend.afetch(list(todo), topk)
        except Exception as exc:
            return self._failed(outcomes, todo, topk, exc, started)
        return self._finish(outcomes, todo, topk, found, None, started)

    def wait_ready(self, wait_s: float | None = None, poll_s: float = 0.5) -> dict[str, Any]:
        """Fail-fast start-up check: load the index, or poll the server's ``/health`` until ready.

        In-process, the index is loaded (and searched once) now, so a typo'd folder fails here and
        not as "Search failed" observations for a whole run. Over HTTP, ``/health`` is polled until
        it reports ``ready`` or ``wait_s`` passes (a large index takes a while to load); default
        ``$MASKSEARCH_RETRIEVER_WAIT_S`` or 60 s.

        Returns:
            The health/describe dict.

        Raises:
            RetrieverUnavailable: one line naming the index folder or the (redacted) URL and why.
        """
        from masksearch.search_tool.manifest import IndexLoadError

        if self.config.index is not None:
            try:
                return self.health()
            except (IndexLoadError, OSError, ValueError) as exc:
                raise RetrieverUnavailable(
                    f"cannot load the search index {self.config.index}: {exc}"
                ) from None
        import httpx

        where = public_url(self.config.url)
        try:
            wait_s = retriever_wait_s() if wait_s is None else wait_s
            self._ensure()  # reads the token file
        except ValueError as exc:
            raise RetrieverUnavailable(str(exc)) from None
        deadline = time.monotonic() + wait_s
        last = "no answer"
        while True:
            try:
                health = self.health()
                if health.get("ready"):
                    return health
                last = f"status {health.get('status')!r}"
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                if status == 404:  # Search-R1's own server has no /health: one real query instead
                    try:
                        self._backend.fetch(["health check"], 1)
                        return {"status": "ok", "ready": True, "kind": "unknown (no /health)"}
                    except SearchError as search_exc:
                        raise RetrieverUnavailable(f"{where}: {search_exc}") from None
                    except Exception as search_exc:
                        last = _short_error(search_exc, self.config.url, self.config.timeout_s)
                elif 400 <= status < 500 and status != 429:
                    raise RetrieverUnavailable(
                        f"{where}/health answered HTTP {status}: not a masksearch/Search-R1 retrieval server?"
                    ) from None
                else:
                    last = f"HTTP {status}"
            except (httpx.HTTPError, ValueError) as exc:
                last = _short_error(exc, self.config.url, self.config.timeout_s)
            if time.monotonic() + poll_s > deadline:
                raise RetrieverUnavailable(
                    f"the retrieval server at {where} was not ready within {wait_s:g}s ({last}); start it "
                    "with 'masksearch retriever serve --index DIR --port N' or fix the URL"
                )
            time.sleep(poll_s)

    def health(self) -> dict[str, Any]:
        """Server ``/health`` (HTTP) or index info (in-process); raises on failure (for startup checks)."""
        backend = self._ensure()
        if isinstance(backend, _Http):
            import httpx

            url = backend.url[: -len("/retrieve")] + "/health"
            response = httpx.get(url, timeout=min(self.config.timeout_s, 5.0), headers=backend.headers)
            response.raise_for_status()
            return response.json()
        backend.fetch(["warmup"], 1)
        from masksearch.search_tool.retrievers import describe

        return {"status": "ok", "ready": True, **describe(backend._retriever)}


def make_search_client(index: str | None = None, url: str | None = None, **opts: Any) -> SearchClient:
    """``make_search_client(index="idx/")`` or ``make_search_client(url="http://127.0.0.1:8000", timeout_s=5)``."""
    return from_config({"index": index, "url": url, **opts})


def from_config(config: Mapping[str, Any]) -> SearchClient:
    """Build from a dict/DictConfig of :class:`SearchClientConfig` fields; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(SearchClientConfig)}
    values = {str(k): v for k, v in dict(config.items()).items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown search client option(s) {unknown}; known: {sorted(known)}")
    for key in ("index", "url", "corpus", "token_file"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    return SearchClient(SearchClientConfig(**values))
