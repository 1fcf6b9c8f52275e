"""Serve a built viewer folder on 127.0.0.1 (for remote machines: ``ssh -L 8765:127.0.0.1:8765``).

The site does not need a server; this only saves copying it. Loopback only, read-only, the
folder given and nothing above it (``http.server``'s own path handling).
"""

from __future__ import annotations

import functools
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from masksearch.core.errors import UserFacingError
from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = ["make_server", "serve_forever"]

HOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def make_server(directory: str | os.PathLike[str], port: int = 0) -> ThreadingHTTPServer:
    """A server for ``directory`` bound to 127.0.0.1:``port`` (0: a free port); not started."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise UserFacingError(f"{root}: not a folder")
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise UserFacingError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; choose another --port"
        ) from exc


def serve_forever(directory: str | os.PathLike[str], port: int = 8765) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(directory, port)
    host, bound = server.server_address[:2]
    print(
        f"serving {Path(directory).resolve()} on http://{host}:{bound}/index.html (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
