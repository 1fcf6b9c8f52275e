"""Merge concurrent search requests into one retriever call, with a bounded queue.

During RL rollouts hundreds of agent loops each send one query at a time. Scoring them one call
at a time wastes the retriever's batch speed (numba BM25 is ~100x faster per query in batches,
a dense encoder more so). The batcher runs one worker task: it takes every request queued while
the previous call ran (up to ``max_batch_queries``), makes one ``search`` call in a worker
thread, and splits the results. A lone request is served at once (``max_wait_s=0`` adds no
delay), so batching costs nothing when the server is idle.

The queue is bounded in *queries*: past ``max_pending_queries`` a submit raises
:class:`QueueFull` (the server answers 503 + Retry-After) instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from masksearch.core.logs import module_logger
from masksearch.search_tool.types import Hit

logger = module_logger(__name__, default=None)

SearchFn = Callable[[Sequence[str], int], list[list[Hit]]]


class QueueFull(Exception):
    """The batcher already holds ``max_pending_queries`` queries."""


@dataclass
class _Job:
    queries: list[str]
    topk: int
    future: asyncio.Future


@dataclass
class BatcherMetrics:
    """Counters for ``/health``; ``retriever_seconds`` is time inside the retriever."""

    requests: int = 0
    queries: int = 0
    batches: int = 0
    largest_batch: int = 0
    rejected_full: int = 0
    errors: int = 0
    retriever_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        mean = self.queries / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "queries": self.queries,
            "batches": self.batches,
            "mean_batch_queries": round(mean, 2),
            "largest_batch": self.largest_batch,
            "rejected_full": self.rejected_full,
            "errors": self.errors,
            "retriever_seconds": round(self.retriever_seconds, 4),
        }


class MicroBatcher:
    """Create inside a running event loop (the server's lifespan), then ``await submit(...)``."""

    def __init__(
        self,
        search_fn: SearchFn,
        *,
        max_batch_queries: int = 256,
        max_pending_queries: int = 4096,
        max_wait_s: float = 0.0,
    ):
        if max_batch_queries <= 0 or max_pending_queries <= 0:
            raise ValueError("max_batch_queries and max_pending_queries must be positive")
        self._search = search_fn
        self.max_batch_queries = max_batch_queries
        self.max_pending_queries = max_pending_queries
        self.max_wait_s = max_wait_s
        self.metrics = BatcherMetrics()
        self._pending_queries = 0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        # One thread: retriever calls never overlap (numba's thread count is process-global).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retriever")
        self._worker: asyncio.Task | None = None

    @property
    def pending_queries(self) -> int:
        return self._pending_queries

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """Queue queries and wait for their hits; raises :class:`QueueFull` when saturated."""
        if not queries:
            return []
        if self._pending_queries + len(queries) > self.max_pending_queries:
            self.metrics.rejected_full += 1
            raise QueueFull(
                f"{self._pending_queries} queries already queued (max {self.max_pending_queries})"
            )
        future = asyncio.get_running_loop().create_future()
        self._pending_queries += len(queries)
        self.metrics.requests += 1
        self._queue.put_nowait(_Job(queries, topk, future))
        return await future

    async def _next_batch(self) -> list[_Job]:
        batch = [await self._queue.get()]
        size = len(batch[0].queries)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch_queries:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout=remaining)
                except TimeoutError:
                    break
            batch.append(job)
            size += len(job.queries)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [job for job in batch if not job.future.done()]  # skip callers that gave up
            queries = [q for job in live for q in job.queries]
            try:
                if queries:
                    topk = max(job.topk for job in live)
                    started = time.perf_counter()
                    hits = await loop.run_in_executor(self._executor, self._search, queries, topk)
                    self.metrics.retriever_seconds += time.perf_counter() - started
                    self.metrics.batches += 1
                    self.metrics.queries += len(queries)
                    self.metrics.largest_batch = max(self.metrics.largest_batch, len(queries))
                    start = 0
                    for job in live:
                        part = hits[start : start + len(job.queries)]
                        start += len(job.queries)
                        if not job.future.done():
                            job.future.set_result([row[: job.topk] for row in part])
            except asyncio.CancelledError:
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("server shutting down"))
                raise
            except Exception as exc:
                self.metrics.errors += 1
                logger.exception("retriever call failed for a batch of %d queries", len(queries))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                self._pending_queries -= sum(len(job.queries) for job in batch)
