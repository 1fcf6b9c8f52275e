"""The env's side of the search client: one client per worker process, and calls that never raise.

The client itself (``masksearch.search_tool.client``) owns timeouts and retries and returns errors
as values (``SearchOutcome(hits, error, latency_s)``). The wrappers here add the last guard the
loop needs: whatever a client does (raise, return the wrong number of outcomes, hang past its own
timeout in a thread), the env gets a :class:`~masksearch.search_tool.types.SearchOutcome` and turns
it into observation text.

verl builds a new agent-loop object for every sample, so the client is cached per process, keyed
by the settings that shape it (:func:`get_search_client`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from masksearch.core.errors import one_line
from masksearch.core.logs import module_logger
from masksearch.env.config import SearchEnvConfig
from masksearch.search_tool.types import SearchOutcome

logger = module_logger(__name__)

__all__ = ["asearch_one", "clear_search_client_cache", "get_search_client", "search_many"]

_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def get_search_client(config: SearchEnvConfig) -> Any:
    """The search client for ``config``, built on first use and reused by this process.

    Raises:
        ValueError: no retriever is configured (``retriever_index``/``retriever_url``, or the env
            vars ``MASKSEARCH_INDEX_DIR``/``MASKSEARCH_RETRIEVER_URL``).
    """
    if not config.has_retriever:
        raise ValueError(
            "No retriever configured for the search env: set +masksearch.env.retriever_index=DIR or "
            "+masksearch.env.retriever_url=URL (or MASKSEARCH_INDEX_DIR / MASKSEARCH_RETRIEVER_URL)"
        )
    key = (
        config.retriever_index,
        config.retriever_url,
        config.topk,
        config.search_timeout_s,
        config.search_retries,
    )
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            from masksearch.search_tool.client import make_search_client

            client = make_search_client(
                index=config.retriever_index,
                url=config.retriever_url,
                topk=config.topk,
                timeout_s=config.search_timeout_s,
                max_attempts=config.search_retries + 1,
            )
            _CLIENTS[key] = client
            logger.info("built search client %s for %s", type(client).__name__, key[:2])
        return client


def clear_search_client_cache() -> None:
    """Forget cached clients (tests; a worker that changes its retriever)."""
    with _CLIENTS_LOCK:
        _CLIENTS.clear()


def _normalise(outcomes: Any, n: int, started: float) -> list[SearchOutcome]:
    elapsed = time.perf_counter() - started
    outcomes = list(outcomes or [])
    if len(outcomes) != n:
        err = f"search client returned {len(outcomes)} results for {n} queries"
        return [SearchOutcome(error=err, latency_s=elapsed) for _ in range(n)]
    results = []
    for o in outcomes:
        latency = getattr(o, "latency_s", None)
        results.append(
            SearchOutcome(
                hits=list(getattr(o, "hits", None) or []),
                error=getattr(o, "error", None),
                latency_s=float(elapsed if latency is None else latency),
                cached=bool(getattr(o, "cached", False)),
            )
        )
    return results


def search_many(client: Any, queries: Sequence[str], topk: int) -> list[SearchOutcome]:
    """One batched ``client.search(queries, topk)``; never raises."""
    queries = list(queries)
    if not queries:
        return []
    started = time.perf_counter()
    try:
        outcomes = client.search(queries, topk)
    except Exception as exc:  # the client should not raise; the env must not either
        error = one_line(exc, None, typed=True)
        logger.warning("search client raised: %s", error)
        return [SearchOutcome(error=error, latency_s=time.perf_counter() - started) for _ in queries]
    return _normalise(outcomes, len(queries), started)


async def asearch_one(client: Any, query: str, topk: int) -> SearchOutcome:
    """One query without blocking the event loop (``client.asearch`` if it has one, else a thread)."""
    started = time.perf_counter()
    try:
        if hasattr(client, "asearch"):
            outcomes = await client.asearch([query], topk)
        else:
            outcomes = await asyncio.get_running_loop().run_in_executor(None, client.search, [query], topk)
    except Exception as exc:
        error = one_line(exc, None, typed=True)
        logger.warning("search client raised: %s", error)
        return SearchOutcome(error=error, latency_s=time.perf_counter() - started)
    return _normalise(outcomes, 1, started)[0]
