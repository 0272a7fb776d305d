"""The cuttable TCP proxy, against a local echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from consumer.testing.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):  # the proxy resets its side when cut
        while data := conn.recv(4096):
            conn.sendall(data)


def _exchange(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(4096)


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return _exchange(sock, payload)


def _dead(attempt: Callable[[], bytes]) -> bool:
    """Whether the exchange fails: a reset, or an end of stream instead of the echo."""
    try:
        return attempt() == b""
    except (ConnectionError, TimeoutError):
        return True


def test_bytes_pass_until_cut_and_again_after_restore(echo_port: int) -> None:
    with TcpProxy("127.0.0.1", echo_port) as proxy:
        # Given a connection through the proxy that works
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"ping")
        assert live.recv(4096) == b"ping"
        # When the proxy is cut, Then the live connection is reset
        proxy.cut()
        assert _dead(lambda: _exchange(live, b"again"))
        live.close()
        # And new connections fail
        assert _dead(lambda: _roundtrip(proxy.port, b"x"))
        # When it is restored, Then new connections work again on the same port
        proxy.restore()
        assert _roundtrip(proxy.port, b"pong") == b"pong"
