"""What the local peers share: the `with` protocol, and the thread-served HTTP server that the
HTTP ones (MNS, the Alicom token endpoint, the recording file server, Huawei's record API) run on.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


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


class Peer(ABC):
    """A local peer: `with Peer() as peer:` is `start()`, then `stop()` whatever happens."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HttpPeer(Peer):
    """A peer served over HTTP by `serve`; `port=0` picks a free port at each start."""

    name: ClassVar[str]
    """Its serving thread's name, and what errors call it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _handler(self) -> type[QuietHandler]:
        """The peer's request handler class; each request sees the peer as `self.peer`."""

    def _wake(self, server: ThreadingHTTPServer) -> None:
        """Before the server closes: wake what would hold a request (long polls, kept-alive
        connections)."""

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already running")
        handler = self._handler()
        bound = type(handler.__name__, (handler,), {"peer": self})
        self._server, self._thread = serve(self._address, bound, self.name)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._wake(server)
        shut(server, self._thread)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running")
        return int(self._server.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        return self._address[0], self.port

    @property
    def endpoint(self) -> str:
        """`http://HOST:PORT`, without a trailing slash."""
        return f"http://{self._address[0]}:{self.port}"


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 without a log line per request (the peers keep their own records)."""

    protocol_version = "HTTP/1.1"
    peer: Any
    """The `HttpPeer` serving the request (a subclass narrows the type)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _empty(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """An answer without a body."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


__all__ = ["HttpPeer", "Peer", "QuietHandler", "serve", "shut"]
