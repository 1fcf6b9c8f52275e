"""HTTP retrieval server speaking Search-R1's ``POST /retrieve`` protocol (see ``protocol.py``).

Built by :func:`create_app` from a retriever and :class:`ServerLimits`, with no module globals,
so tests and benchmarks can run several apps in one process. Behaviour at the edges:

* ``topk`` outside ``1..max_topk`` or more than ``max_queries_per_request`` queries -> 422 with a
  message; an omitted ``topk`` uses ``default_topk`` (as Search-R1 does).
* A query longer than ``max_query_chars`` is truncated and counted (``truncated_queries`` in
  ``/health``), never rejected: a model that emits a 1 MB query should get an answer, not a crash.
* A blank query gets ``[]`` for its slot without reaching the retriever.
* Concurrent requests are merged by a :class:`~masksearch.search_tool.batcher.MicroBatcher`;
  when its bounded queue is full the server answers 503 with ``Retry-After`` (our client retries).
* Every body is counted as it arrives (declared ``Content-Length`` or chunked): above
  ``max_body_bytes`` the server answers 413 and stops reading. The body is then parsed and
  validated in a worker thread (the schema caps ``queries`` at ``MAX_QUERIES``), and the response
  JSON is built in a worker thread too, so a large request never stalls the event loop.
* With a ``token`` every route except ``/health`` needs ``Authorization: Bearer <token>`` (401
  otherwise). ``/health`` stays open and shows no local paths.
* ``limit_concurrency`` (uvicorn) answers 503 above that many open connections.

:func:`serve` runs on a socket from :func:`bind_socket`, bound before the index loads: a port in
use or a wrong host fails at once, and ``on_ready`` gets the real address (``--port 0`` too) only
after uvicorn's startup (app lifespan with its warm-up query, then listening) has completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from masksearch.core.logs import module_logger
from masksearch.search_tool.batcher import MicroBatcher, QueueFull
from masksearch.search_tool.protocol import (
    MAX_QUERIES,
    HealthResponse,
    RetrieveRequest,
    RetrieveResponse,
    public_index_info,
)
from masksearch.search_tool.retrievers import Retriever, describe

logger = module_logger(__name__, default=None)


@dataclass(frozen=True)
class ServerLimits:
    """Request limits and batching knobs; defaults suit a single CPU retriever process."""

    default_topk: int = 3
    max_topk: int = 100
    max_queries_per_request: int = 512
    max_query_chars: int = 4096
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_queries: int = 256
    max_pending_queries: int = 4096
    batch_wait_s: float = 0.0
    limit_concurrency: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.default_topk <= self.max_topk:
            raise ValueError("default_topk must be between 1 and max_topk")
        if self.max_queries_per_request > self.max_pending_queries:
            raise ValueError("max_queries_per_request must not exceed max_pending_queries")
        if self.max_queries_per_request > MAX_QUERIES:
            raise ValueError(f"max_queries_per_request must not exceed the protocol's cap of {MAX_QUERIES}")
        if (
            min(self.max_query_chars, self.max_body_bytes, self.max_batch_queries, self.limit_concurrency)
            <= 0
        ):
            raise ValueError("limits must be positive")


async def _send_json(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """Pure ASGI middleware: bearer token on every path but ``/health``, and a real body byte limit.

    The body is read here, chunk by chunk, and counted whatever ``Content-Length`` says (a chunked
    body declares none): past ``max_bytes`` the client gets 413 and the rest is never read. The
    app then sees the buffered body, so it cannot be made to read more.
    """

    def __init__(self, app, max_bytes: int, token: str | None):
        self.app = app
        self.max_bytes = max_bytes
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        if self.token is not None and scope.get("path") != "/health":
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token):
                await _send_json(
                    send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
                )
                return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, f"request body over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, f"request body over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _parse_request(body: bytes) -> RetrieveRequest:
    try:
        return RetrieveRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


def create_app(
    retriever: Retriever, limits: ServerLimits | None = None, *, token: str | None = None
) -> FastAPI:
    """Build the FastAPI app around one retriever; all state lives in this closure and ``app.state``.

    ``token``: when set, ``/retrieve`` needs ``Authorization: Bearer <token>``.
    """
    limits = limits or ServerLimits()
    counters = {"truncated_queries": 0, "blank_queries": 0, "failed_requests": 0}
    index_info = public_index_info(describe(retriever))
    state: dict[str, Any] = {"batcher": None, "ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = MicroBatcher(
            retriever.search,
            max_batch_queries=limits.max_batch_queries,
            max_pending_queries=limits.max_pending_queries,
            max_wait_s=limits.batch_wait_s,
        )
        batcher.start()
        # Warm up (numba kernels, encoder) before reporting ready, so the first caller is not slow.
        await batcher.submit(["warmup query"], 1)
        state["batcher"] = batcher
        state["ready"] = True
        logger.debug("app started: %s index, %d passages, warm-up done", retriever.kind, retriever.doc_count)
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop()

    app = FastAPI(title="masksearch retriever", lifespan=lifespan)
    app.state.retriever = retriever
    app.state.limits = limits

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        batcher: MicroBatcher | None = state["batcher"]
        metrics = dict(counters)
        if batcher is not None:
            metrics.update(batcher.metrics.as_dict(), pending_queries=batcher.pending_queries)
        return HealthResponse(
            status="ok" if state["ready"] else "starting",
            ready=state["ready"],
            kind=retriever.kind,
            doc_count=retriever.doc_count,
            index=index_info,
            limits=asdict(limits),
            metrics=metrics,
        )

    @app.post(
        "/retrieve",
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": RetrieveRequest.model_json_schema()}},
                "required": True,
            }
        },
    )
    async def retrieve(http_request: Request) -> Response:
        # Parse and validate off the event loop; the schema's list cap fails a huge list early.
        request = await asyncio.to_thread(_parse_request, await http_request.body())
        topk = limits.default_topk if request.topk is None else request.topk
        if not 1 <= topk <= limits.max_topk:
            raise HTTPException(422, f"topk must be between 1 and {limits.max_topk}, got {topk}")
        if len(request.queries) > limits.max_queries_per_request:
            raise HTTPException(
                422,
                f"{len(request.queries)} queries in one request; the limit is {limits.max_queries_per_request}",
            )
        batcher: MicroBatcher | None = state["batcher"]
        if batcher is None:
            raise HTTPException(503, "retriever is starting", headers={"Retry-After": "1"})
        rows: list[int] = []
        queries: list[str] = []
        for row, query in enumerate(request.queries):
            if len(query) > limits.max_query_chars:
                query = query[: limits.max_query_chars]
                counters["truncated_queries"] += 1
            if query.strip():
                rows.append(row)
                queries.append(query)
            else:
                counters["blank_queries"] += 1
        hits: list[list] = [[] for _ in request.queries]
        try:
            found = await batcher.submit(queries, topk)
        except QueueFull:
            raise HTTPException(
                503, "retriever queue is full; retry later", headers={"Retry-After": "1"}
            ) from None
        except Exception as exc:
            counters["failed_requests"] += 1
            raise HTTPException(500, f"retrieval failed: {type(exc).__name__}: {exc}") from None
        for row, row_hits in zip(rows, found, strict=True):
            hits[row] = row_hits
        body = await asyncio.to_thread(
            lambda: RetrieveResponse.from_hits(hits, request.return_scores).model_dump_json()
        )
        return Response(content=body, media_type="application/json")

    app.add_middleware(_Guard, max_bytes=limits.max_body_bytes, token=token)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), not yet listening.

    Bound before the index loads, so a taken port or a wrong ``host`` fails at once instead of
    after minutes of loading; the caller reads the real port from ``getsockname()``. Until
    :func:`serve` listens, a connection to it is refused, as if nothing were there. Uses
    ``SO_REUSEADDR`` as uvicorn does, so a restart is not blocked by the last run's closed
    connections (a port that something listens on still fails).

    Raises:
        ValueError: ``port`` outside 0..65535.
        OSError: the address cannot be resolved (``socket.gaierror``) or bound.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def http_address(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    retriever: Retriever,
    *,
    sock: socket.socket | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits | None = None,
    log_level: str = "warning",
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run uvicorn around a loaded retriever until interrupted (``masksearch retriever serve``).

    Args:
        sock: a socket from :func:`bind_socket` (default: one bound to ``host``:``port`` now).
        on_ready: called with the server's ``http://host:port`` once it listens and the app's
            startup (the warm-up query) has finished, i.e. when requests are answered.

    Raises:
        OSError: the socket cannot listen (another process took the port meanwhile).
    """
    import uvicorn

    if sock is None:
        sock = bind_socket(host, port)
    # Move the loaded index's objects (vocab dicts, model) out of the GC's reach: otherwise each
    # full collection walks them and stalls every in-flight request (measured on 2 cores: p99
    # under 32 saturating clients fell from ~80-150 ms to ~17-33 ms). A process-wide choice, so
    # it lives here and not in create_app.
    gc.collect()
    gc.freeze()
    limits = limits or ServerLimits()
    # Access logs cost throughput and flood training logs; /health has the counters.
    config = uvicorn.Config(
        create_app(retriever, limits, token=token),
        log_level=log_level,
        access_log=False,
        limit_concurrency=limits.limit_concurrency,
    )

    class ReadyServer(uvicorn.Server):
        """Calls ``on_ready`` once startup (app lifespan, then listening) has completed."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None and sockets:
                on_ready(http_address(sockets[0]))

    with sock:
        sock.listen(config.backlog)  # fails here, not inside uvicorn, if the port was taken meanwhile
        ReadyServer(config).run(sockets=[sock])
