"""The thread-served HTTP server both HTTP fakes (MNS, Alicom token endpoint) run on."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(
    address: tuple[str, int], handler: type[BaseHTTPRequestHandler], name: str
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start serving on a daemon thread; request threads never hold up a stop."""
    server = ThreadingHTTPServer(address, handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return server, thread


def shut(server: ThreadingHTTPServer, thread: threading.Thread | None) -> None:
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(timeout=5)
