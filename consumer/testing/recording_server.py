"""A local file server for recording links: redirects, flaky, gone, oversized and slow files.

Bodies are generated from the path (a 64 KiB block repeated), so a 200 MB file costs no memory
on either side and its checksum is known (`sha256`). `hits` counts the requests per path: a
link the archive must refuse is proven never contacted when its count stays 0.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from consumer.testing._http import HttpPeer, QuietHandler

BLOCK = 65536


@dataclass
class File:
    size: int = 0
    content_type: str = "audio/mpeg"
    fail_first: int = 0
    """Answer `fail_status` to this many requests before serving the file."""
    fail_status: int = 503
    status: int | None = None
    """Always answer this status (404, 410, ...) instead of the file."""
    redirect: str | None = None
    """Answer 302 to this Location (absolute, or a path on this server)."""
    chunk_delay: float = 0.0
    """Seconds to sleep after each 64 KiB: a slow server."""
    declare_length: bool = True


def block(path: str) -> bytes:
    seed = hashlib.sha256(path.encode()).digest()
    return (seed * (BLOCK // len(seed) + 1))[:BLOCK]


def chunks(path: str, size: int) -> list[int]:
    """The sizes of the 64 KiB pieces of a file of `size` bytes."""
    return [min(BLOCK, size - offset) for offset in range(0, size, BLOCK)]


def sha256(path: str, size: int) -> str:
    """The checksum of the body served at `path` with `size` bytes."""
    digest = hashlib.sha256()
    data = block(path)
    for length in chunks(path, size):
        digest.update(data[:length])
    return digest.hexdigest()


class RecordingServer(HttpPeer):
    name = "recording-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.files: dict[str, File] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.endpoint

    def add(self, path: str, file: File) -> str:
        """Serve `file` at `path`; its URL."""
        self.files[path] = file
        return self.base + path

    def _handler(self) -> type[_Handler]:
        return _Handler


class _Handler(QuietHandler):
    peer: RecordingServer

    def handle(self) -> None:
        # A client that cuts a download (max_bytes) resets the connection: not a server error.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        state = self.peer
        path = urlsplit(self.path).path
        with state._lock:
            state.hits[path] += 1
            count = state.hits[path]
        file = state.files.get(path)
        if file is None:
            self._empty(404)
            return
        if file.status is not None:
            self._empty(file.status)
            return
        if count <= file.fail_first:
            self._empty(file.fail_status)
            return
        if file.redirect is not None:
            self._empty(302, {"Location": file.redirect})
            return
        self.send_response(200)
        self.send_header("Content-Type", file.content_type)
        if file.declare_length:
            self.send_header("Content-Length", str(file.size))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        data = block(path)
        try:
            for length in chunks(path, file.size):
                self.wfile.write(data[:length])
                if file.chunk_delay:
                    self.wfile.flush()
                    time.sleep(file.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


__all__ = ["BLOCK", "File", "RecordingServer", "block", "sha256"]
