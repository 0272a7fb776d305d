"""librocketmq's own log file, followed into the structured log.

The client says why it fails (a refused AccessKey, an unknown topic) only in its log file, not
to its caller. Its logger is a process-wide singleton, created by the first consumer's start
with the file then fixed for the process: `logger_home` points it under the state directory,
and `LogTailer` hands each new line of it to the source.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import structlog

from consumer.sources.client_home import home

log = structlog.get_logger("consumer.sources.remoting")

LOG_LINE_MAX = 400
_BENIGN = ("TcpRemotingClient::stopAllTcpTransportThread End",)
"""Lines the client logs as errors on every clean shutdown."""
_SETTINGS = re.compile(r"\[(logConfigs|showClientConfigs):\d+\]$")
"""The client logs its settings as warnings at every start."""
_LINE = re.compile(r"^\[(?P<time>[^\]]*)\]\((?P<level>\w+)\):(?P<text>.*)$")
_logger_file: list[Path] = []
"""The file librocketmq's logger writes to, once its first start fixed it."""


def client_log(state_dir: str | None) -> Path:
    """Where librocketmq's logger writes: `<state>/rocketmq-client/rocketmq_client.log`."""
    if _logger_file:
        return _logger_file[0]
    root = (
        state_dir
        or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        or os.path.join(tempfile.gettempdir(), f"consumer-{os.getuid()}")
    )
    directory = Path(root).absolute() / "rocketmq-client"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "rocketmq_client.log"


@contextlib.contextmanager
def logger_home(log_file: Path) -> Iterator[None]:
    """Around the first consumer's start: the logger (a process-wide singleton, created then)
    writes to `$HOME` + `$ROCKETMQ_CLIENT_LOG_DIR`; an empty HOME means the passwd entry's, so
    HOME is "/" and the directory absolute, for as long as the start takes."""
    if _logger_file:
        yield
        return
    os.environ["ROCKETMQ_CLIENT_LOG_DIR"] = f"{log_file.parent}/"
    try:
        with home("/"):
            yield
    finally:
        _logger_file.append(log_file)


def log_client_line(level: str, text: str) -> None:
    """One line of the client's log at its level; its routine noise at debug."""
    if text.startswith(_BENIGN) or _SETTINGS.search(text):
        log.debug("rocketmq client", client_line=text)
    elif level in ("error", "fatal"):
        log.error("rocketmq client", client_line=text)
    elif level == "warning":
        log.warning("rocketmq client", client_line=text)


class LogTailer:
    """Follows the client's log file from its current end; hands each line to `emit`.

    A file rotated (another file under the name) or truncated under it is read from its start,
    even when it has grown past the old offset since: the byte before the offset must still
    be the one that was there, or the file is not the one read so far.
    """

    def __init__(self, path: Path, emit: Callable[[str, str], None]) -> None:
        self._path = path
        self._emit = emit
        self._stop = threading.Event()
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._before = b""
        """The byte just before `_offset` when it was set (empty at 0)."""
        with contextlib.suppress(OSError), path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            self._identity = (stat.st_dev, stat.st_ino)
            self._offset = stat.st_size
            self._before = _byte_before(handle, self._offset)
        self._thread = threading.Thread(target=self._run, name="rocketmq-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._read()  # the lines of the shutdown itself

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            with self._path.open("rb") as handle:
                self._rewind_if_replaced(handle)
                handle.seek(self._offset)
                chunk = handle.read(1 << 20)
            end = chunk.rfind(b"\n")
            if end < 0:
                return
            self._offset += end + 1
            self._before = b"\n"
            for raw in chunk[: end + 1].splitlines():
                match = _LINE.match(raw.decode("utf-8", "replace"))
                if match:
                    self._emit(match["level"], match["text"])

    def _rewind_if_replaced(self, handle: BinaryIO) -> None:
        stat = os.fstat(handle.fileno())
        identity = (stat.st_dev, stat.st_ino)
        if (
            identity != self._identity
            or stat.st_size < self._offset
            or _byte_before(handle, self._offset) != self._before
        ):
            self._offset, self._before = 0, b""
        self._identity = identity


def _byte_before(handle: BinaryIO, offset: int) -> bytes:
    if offset == 0:
        return b""
    handle.seek(offset - 1)
    return handle.read(1)


__all__ = ["LOG_LINE_MAX", "LogTailer", "client_log", "log_client_line", "logger_home"]
