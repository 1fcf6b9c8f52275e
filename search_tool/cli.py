"""CLI for the retrieval stack: ``index build``, ``search`` and ``retriever serve``.

Listed in ``masksearch.cli.main.COMMAND_MODULES``; also runnable alone as
``python -m masksearch.search_tool.cli ...`` (the integration tests start the server that way,
so they do not depend on every other subcommand module importing).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from masksearch.core.cli_support import add_command, add_group, add_option, flag_values, settings_from_args
from masksearch.core.errors import UserFacingError, one_line

KINDS = ("bm25", "dense", "hybrid")
BACKENDS = ("auto", "numba", "numpy")
BACKEND_HELP = (
    "BM25 scoring backend: numba (compiled kernels, fastest on batches; the first run on a machine "
    "spends some seconds compiling them, later runs load them from numba's disk cache), numpy (no "
    "compiling, slower on large batches), auto (numba when it imports, else numpy) (default: auto). "
    "Dense indexes ignore it."
)
DEVICE_HELP = "torch device for a dense or hybrid index's encoder, e.g. cpu, cuda:1 (default: cuda if available, else cpu)."


def _port(value: str) -> int:
    """argparse type for ``--port``: an integer in 0..65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 0 to 65535 (0 picks a free port)")
    return port


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_index(subparsers)
    _register_search(subparsers)
    _register_retriever(subparsers)


def _register_index(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "index", "Build retrieval indexes.", "index_command", required=True)
    build = add_command(sub, "build", _index_build)
    build.add_argument(
        "--corpus", required=True, help="Corpus file, or 'embedded' for the built-in Wikipedia corpus."
    )
    add_option(build, "--retriever", "bm25", "Retriever kind", choices=KINDS)
    build.add_argument("--out", required=True, help="Output index folder.")
    add_option(build, "--overwrite", False, "Replace an existing, non-empty --out folder.")
    bm25 = build.add_argument_group("bm25")
    add_option(bm25, "--k1", 1.5, "BM25 k1")
    add_option(bm25, "--b", 0.75, "BM25 b")
    dense = build.add_argument_group("dense")
    add_option(
        dense,
        "--model",
        "default",
        "sentence-transformers model folder or HF name",
        shown="bundled all-MiniLM-L6-v2",
    )
    add_option(dense, "--batch-size", 64, "Encoding batch size")
    add_option(dense, "--device", None, "torch device", shown="cuda if available, else cpu")
    add_option(dense, "--query-prefix", "", "Prefix for queries, e.g. 'query: ' for e5 models", shown="none")
    add_option(dense, "--passage-prefix", "", "Prefix for passages, e.g. 'passage: ' for e5", shown="none")
    add_option(build, "--no-progress", False, "Hide progress bars", shown="shown")


def _add_corpus_check(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--corpus``: the index loaded by ``search`` and ``retriever serve`` must come from this file."""
    add_option(
        parser,
        "--corpus",
        None,
        f"Refuse to {verb} unless the index was built from this corpus file",
        shown="no check",
    )


def _register_search(subparsers: argparse._SubParsersAction) -> None:
    search = add_command(subparsers, "search", _search)
    search.add_argument("--index", required=True, help="Index folder (from 'masksearch index build').")
    add_option(search, "--topk", 3, "Passages per query")
    _add_corpus_check(search, "search")
    search.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    add_option(search, "--json", False, "Print Search-R1 JSON instead of text", shown="text")
    search.add_argument("queries", nargs="+", help="One or more queries.")


def _register_retriever(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "retriever", "Run the retrieval server.", "retriever_command", required=True)
    serve = add_command(sub, "serve", _serve)
    serve.add_argument("--index", required=True, help="Index folder (from 'masksearch index build').")
    add_option(serve, "--host", "127.0.0.1", "Address to listen on; 0.0.0.0 for every interface")
    serve.add_argument(
        "--port",
        type=_port,
        required=True,
        help="TCP port, 0 to 65535; 0 picks a free one. The line printed once the server is ready "
        "shows the address it really listens on.",
    )
    _add_corpus_check(serve, "start")
    serve.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    serve.add_argument("--device", default=None, help=DEVICE_HELP)
    add_option(serve, "--default-topk", 3, "topk when a request omits it")
    add_option(serve, "--max-topk", 100, "Largest accepted topk")
    add_option(serve, "--max-queries", 512, "Most queries per request")
    add_option(serve, "--max-query-chars", 4096, "Longer queries are truncated")
    add_option(serve, "--max-batch", 256, "Most queries per retriever call")
    add_option(serve, "--max-pending", 4096, "Queued queries before answering 503")
    add_option(
        serve,
        "--max-body-bytes",
        16 * 1024 * 1024,
        "Larger request bodies (chunked too) get 413",
        shown="16 MiB",
    )
    add_option(serve, "--limit-concurrency", 1024, "Open connections above this get 503")
    serve.add_argument(
        "--token-file",
        default=None,
        help="Require 'Authorization: Bearer <token>' on /retrieve, the token read from this file "
        "(default: $MASKSEARCH_RETRIEVER_TOKEN if set, else no token). /health stays open.",
    )
    add_option(
        serve,
        "--uvicorn-log-level",
        "warning",
        "uvicorn's own log level",
        type=str.lower,
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    wait = add_command(sub, "wait", _wait)
    wait.add_argument("--url", required=True, help="Server base URL, e.g. http://10.0.0.5:8000.")
    add_option(wait, "--timeout", 600.0, "Seconds to wait")
    add_option(
        wait,
        "--pid",
        None,
        "Stop waiting as soon as this process (the server) has exited",
        shown="wait the full --timeout",
        type=int,
    )


def _resolve_corpus(value: str, named: dict | None = None) -> str:
    """A corpus file, or one of the named corpora the composing CLI provides (``embedded``).

    ``masksearch`` (``cli/main.py``) passes ``named_corpora`` (name -> function returning a path):
    the embedded corpus is built by ``data``, a part above this one.
    """
    builder = (named or {}).get(value)
    return str(builder()) if builder is not None else value


def _index_build(args: argparse.Namespace) -> int:
    """Index a corpus (BM25, dense or hybrid) into a folder with manifest.json.

    Index a Search-R1 JSONL/parquet corpus. The folder stores the passages too, so searches need only the
    index.
    """
    from masksearch.search_tool.corpus import CorpusError
    from masksearch.search_tool.retrievers import build_index

    bm25 = flag_values(args, ("k1", "b"))
    dense = flag_values(args, ("model", "batch_size", "device", "query_prefix", "passage_prefix"))
    params = {"bm25": bm25, "dense": dense, "hybrid": {**bm25, **dense}}[args.retriever]
    model = str(args.model)
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1
    if (
        args.retriever != "bm25"
        and model != "default"
        and looks_local
        and not Path(model).expanduser().exists()
    ):
        raise UserFacingError(
            f"--model {model!r}: no such folder (give a sentence-transformers folder or hub name)"
        )
    try:
        manifest = build_index(
            _resolve_corpus(args.corpus, getattr(args, "named_corpora", None)),
            args.retriever,
            args.out,
            overwrite=args.overwrite,
            show_progress=not args.no_progress,
            **params,
        )
    except (FileNotFoundError, FileExistsError, CorpusError, ValueError) as exc:
        raise UserFacingError(one_line(exc, 400)) from None
    except OSError as exc:  # the encoder could not be loaded (a typo'd folder, an uncached hub name)
        first = one_line(exc)
        if args.retriever in ("dense", "hybrid"):
            raise UserFacingError(
                f"--model {args.model!r}: cannot load the encoder ({first}); give a sentence-transformers "
                "folder or a hub name in the local cache"
            ) from None
        raise UserFacingError(first) from None
    print(
        f"built {manifest.kind} index of {manifest.doc_count} passages in {manifest.build_seconds:.1f}s "
        f"-> {args.out} (corpus sha256 {manifest.corpus_sha256[:12]}…)"
    )
    return 0


def _load(index: str, corpus: str | None, backend: str = "auto", device: str | None = None):
    from masksearch.search_tool.manifest import IndexLoadError
    from masksearch.search_tool.retrievers import load_retriever

    try:
        return load_retriever(index, corpus, backend=backend, device=device)
    except IndexLoadError as exc:
        raise UserFacingError(str(exc)) from None


def _search(args: argparse.Namespace) -> int:
    """Query an index from the terminal."""
    if args.topk <= 0:
        raise UserFacingError("--topk must be a positive integer")
    retriever = _load(args.index, args.corpus, args.backend)
    results = retriever.search(args.queries, args.topk)
    try:
        _print_results(args, results)
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at exit
    except BrokenPipeError:
        _silence_stdout()
    return 0


def _print_results(args: argparse.Namespace, results: list) -> None:
    if args.json:
        from masksearch.search_tool.protocol import RetrieveResponse

        print(RetrieveResponse.from_hits(results, return_scores=True).model_dump_json(indent=2))
        return
    for query, hits in zip(args.queries, results, strict=True):
        print(f"Query: {query}")
        if not hits:
            print("  (no matching passages)")
        for rank, hit in enumerate(hits, start=1):
            print(f"  {rank}. {hit.title or '(no title)'}  [id {hit.id}, score {hit.score:.3f}]")
            snippet = textwrap.shorten(hit.text, width=300, placeholder=" …")
            print(textwrap.indent(textwrap.fill(snippet, width=96), "     "))
        print()


def _silence_stdout() -> None:
    """The reader of our stdout has gone (``masksearch search … | head -1``): stop quietly.

    The Python docs' pattern (``signal`` module, "Note on SIGPIPE"): point stdout at devnull so the
    flush at interpreter exit does not raise a second BrokenPipeError. The reader chose to stop, so
    the command still succeeds (exit 0).
    """
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _serve(args: argparse.Namespace) -> int:
    """Serve an index over HTTP (Search-R1's POST /retrieve, GET /health).

    Serve an index with Search-R1's /retrieve protocol. Binds 127.0.0.1 unless told otherwise.
    """
    from masksearch.search_tool.protocol import read_token
    from masksearch.search_tool.server import ServerLimits, serve

    try:
        limits = settings_from_args(
            ServerLimits,
            args,
            max_queries_per_request=args.max_queries,
            max_batch_queries=args.max_batch,
            max_pending_queries=args.max_pending,
        )
        token = read_token(args.token_file)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    # Bind before loading (a large index takes minutes): a taken port fails now, in one line.
    sock = _bind(args.host, args.port)
    with sock:
        retriever = _load(args.index, args.corpus, args.backend, args.device)
        auth = "bearer token required" if token else "no token"

        def ready(address: str) -> None:
            print(
                f"serving {retriever.kind} index {args.index} ({retriever.doc_count} passages) on "
                f"{address} (POST /retrieve, GET /health; {auth}): ready",
                file=sys.stderr,
                flush=True,
            )

        try:
            serve(
                retriever,
                sock=sock,
                limits=limits,
                log_level=args.uvicorn_log_level,
                token=token,
                on_ready=ready,
            )
        except OSError as exc:  # listen() failed: another process took the port while we loaded
            raise UserFacingError(_bind_error(args.host, args.port, exc)) from None
        except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and re-raised it
            return 130
    return 0


def _bind(host: str, port: int):
    from masksearch.search_tool.server import bind_socket

    try:
        return bind_socket(host, port)
    except OSError as exc:
        raise UserFacingError(_bind_error(host, port, exc)) from None


def _bind_error(host: str, port: int, exc: OSError) -> str:
    import errno
    import socket

    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return (
            f"--host {host!r}: cannot resolve it ({reason}); give an address of this machine, e.g. 127.0.0.1"
        )
    if exc.errno == errno.EADDRINUSE:
        hint = "another process listens there; choose another --port (or --port 0 for a free one)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "--host must be an address of this machine (127.0.0.1, 0.0.0.0 or one of its interfaces)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need root; choose a port from 1024 to 65535"
    else:
        hint = "check --host and --port"
    return f"cannot listen on {host}:{port}: {reason}; {hint}"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(args: argparse.Namespace) -> int:
    """Wait until a retrieval server's /health reports ready (exit 2 with the reason if not)."""
    import time

    from masksearch.search_tool.client import RetrieverUnavailable, make_search_client

    if not args.timeout > 0:
        raise UserFacingError("--timeout must be positive")
    client = make_search_client(url=args.url, timeout_s=5.0)
    deadline = time.monotonic() + args.timeout
    while True:
        remaining = max(0.1, deadline - time.monotonic())
        try:  # with --pid, wait in short windows and stop early when the server is gone
            health = client.wait_ready(min(2.0, remaining) if args.pid else remaining)
            break
        except RetrieverUnavailable as exc:
            if "not ready within" not in str(exc) or time.monotonic() >= deadline:
                raise UserFacingError(
                    str(exc).replace(f"within {min(2.0, remaining):g}s", f"within {args.timeout:g}s")
                ) from None
            if args.pid and not _alive(args.pid):
                raise UserFacingError(
                    f"the retrieval server (pid {args.pid}) exited before it was ready"
                ) from None
    print(f"retrieval server ready: {health.get('kind')} index, {health.get('doc_count')} passages")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser: ``--log-level`` plus only these subcommands."""
    from masksearch.core.cli_support import add_log_level

    parser = argparse.ArgumentParser(prog="masksearch")
    add_log_level(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry with only these subcommands (``python -m masksearch.search_tool.cli``)."""
    from masksearch.core.cli_support import configure_logging, run_handler

    args = build_parser().parse_args(argv)
    if not configure_logging(args.log_level):
        return 2
    return run_handler(args.handler, args, f"masksearch {args.command}")


if __name__ == "__main__":
    sys.exit(main())
