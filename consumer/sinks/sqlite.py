"""The default sink: one SQLite file in WAL mode, shared by every worker process.

Each write is `BEGIN IMMEDIATE`, so writers queue on SQLite's single write lock (up to the busy
timeout) instead of failing half-way through a transaction; readers never block. A lock held
longer than the busy timeout, or an I/O failure, is a `TransientError`: the pipeline retries it.
`synchronous=FULL` makes a commit durable before `store` returns, which the pipeline's
acknowledge-after-commit depends on.

Connections are per thread (and per process: a forked child opens its own).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

from consumer.errors import ConfigError, RejectedData, TransientError
from consumer.sinks.sql import Cursor, SqlSink, dumps

# Primary result codes that a retry may cure: busy or locked, out of memory, I/O, disk full,
# cannot open (a vanished mount), locking protocol.
_TRANSIENT_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)
_TRANSIENT_TEXT = ("database is locked", "database is busy", "disk i/o error", "unable to open")
# After these the connection may be unusable: open a new one for the next transaction.
_BROKEN_CODES = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM})
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_url(url: str) -> tuple[Path, float | None]:
    """The file and the optional busy timeout (`?timeout=SECONDS`) of a `sqlite:///` URL.

    SQLAlchemy's convention: `sqlite:///rel/path.db` is relative to the working directory,
    `sqlite:////abs/path.db` is absolute.
    """
    if not url.startswith("sqlite:///"):
        raise ConfigError("sink.url", f"not a SQLite URL (sqlite:///path): {url!r}")
    parts = urlsplit(url)
    path = parts.path[1:]  # drop the '/' that separates the empty host from the path
    if not path or path == ":memory:":
        raise ConfigError(
            "sink.url", f"needs a database file, e.g. sqlite:///var/events.db: {url!r}"
        )
    timeout: float | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "timeout":
            raise ConfigError("sink.url", f"unknown SQLite URL option {key!r} (known: timeout)")
        try:
            timeout = float(value)
        except ValueError:
            raise ConfigError("sink.url", f"timeout must be seconds, not {value!r}") from None
        if timeout < 0:
            raise ConfigError("sink.url", f"timeout must not be negative: {value!r}")
    return Path(path), timeout


class SqliteSink(SqlSink):
    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        forwarders: Sequence[str] = (),
        busy_timeout: float = 10.0,
    ) -> None:
        super().__init__(forwarders)
        self.path = Path(path).absolute()  # relative to the working directory at start-up
        if not self.path.parent.is_dir():
            raise ConfigError(
                "sink.url",
                f"the directory of the SQLite database does not exist: {self.path.parent}",
            )
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    @classmethod
    def from_url(cls, url: str, *, forwarders: Sequence[str] = ()) -> SqliteSink:
        path, timeout = parse_url(url)
        if timeout is None:
            return cls(path, forwarders=forwarders)
        return cls(path, forwarders=forwarders, busy_timeout=timeout)

    def __repr__(self) -> str:
        return f"SqliteSink({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            _raise_mapped(exc, f"cannot open {self.path}")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL, waiting out other processes doing the same.

        Workers that start together race to convert the new file, and SQLite answers "locked"
        at once (without its busy handler) to all but one of them.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if _code(exc) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(0.02)

    def _discard(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        conn = self._connection()
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            self._after_error(conn, exc)
            _raise_mapped(exc, str(self.path))
        try:
            yield conn.cursor()
            conn.execute("COMMIT")
        except BaseException as exc:
            # No transaction may be left (SQLite rolled back itself), or the file is gone.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._after_error(conn, exc)
                _raise_mapped(exc, str(self.path))
            if isinstance(exc, OverflowError):  # an integer beyond SQLite's 64 bits
                raise RejectedData(f"SQLite {self.path}: {exc}") from exc
            raise

    def _after_error(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
        if _code(exc) in _BROKEN_CODES:
            self._discard(conn)

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN IMMEDIATE")

    def _migration(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN")

    def _schema_version_ddl(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )

    # -- values ------------------------------------------------------------------------------

    def _time(self, value: datetime) -> object:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the sink: {value!r}")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        if value.year < 1000:  # strftime does not pad the year to four digits; isoformat would
            return value.strftime(_TIME_FORMAT)
        # _TIME_FORMAT, spelled by isoformat (several times faster than strftime): in UTC it
        # always ends in +00:00, which becomes the Z
        return value.isoformat(timespec="microseconds")[:-6] + "Z"

    def _from_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(str(value))

    def _json(self, value: Any) -> object:
        return dumps(value)

    def _from_json(self, value: Any) -> Any:
        return json.loads(value)


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _raise_mapped(exc: sqlite3.Error, where: str) -> NoReturn:
    """`TransientError` for what a retry may cure, `RejectedData` for refused values, else as is."""
    code = _code(exc)
    text = str(exc).lower()
    if code in _TRANSIENT_CODES or (code is None and any(t in text for t in _TRANSIENT_TEXT)):
        raise TransientError(f"SQLite {where}: {exc}") from exc
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        raise RejectedData(f"SQLite {where}: {exc}") from exc
    raise exc


__all__ = ["SqliteSink", "parse_url"]
