"""The default sink: one SQLite file in WAL mode, shared by every worker process.

Each write is `BEGIN IMMEDIATE`, so writers queue on SQLite's single write lock (up to the busy
timeout) instead of failing half-way through a transaction; readers never block. A lock held
longer than the busy timeout, or a storage fault (read-only files, a full disk, I/O), is a
`TransientError`: the pipeline retries it, after a storage fault on a new connection, since one
opened while the files were read-only stays read-only (`_FAULTS` says which code is what).
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
from consumer.sinks.faults import Fault
from consumer.sinks.sql import Cursor, SqlSink, dumps

# Every SQLite result code the sink can meet, by extended code where one differs from its
# primary code, else by primary code (`sqlite_errorcode & 0xFF`). Unlisted codes are bugs.
_FAULTS: dict[int, Fault] = {
    # lock contention: another writer holds the file; the connection is fine
    sqlite3.SQLITE_BUSY: Fault.BUSY,
    sqlite3.SQLITE_LOCKED: Fault.BUSY,
    sqlite3.SQLITE_SCHEMA: Fault.BUSY,  # another process migrated: prepare again
    # the files cannot be written now (read-only, full, I/O, gone): a retry on a NEW
    # connection may succeed once the fault is over; the old one may be stuck in read-only
    # mode, or hold a broken file descriptor or WAL index, for good
    sqlite3.SQLITE_READONLY: Fault.OUTAGE,  # and SQLITE_READONLY_* (recovery, cantlock, ...)
    sqlite3.SQLITE_FULL: Fault.OUTAGE,
    sqlite3.SQLITE_IOERR: Fault.OUTAGE,  # and SQLITE_IOERR_* (write, fsync, shmmap, ...)
    sqlite3.SQLITE_CANTOPEN: Fault.OUTAGE,
    sqlite3.SQLITE_NOMEM: Fault.OUTAGE,
    sqlite3.SQLITE_PROTOCOL: Fault.OUTAGE,
    sqlite3.SQLITE_PERM: Fault.OUTAGE,
    sqlite3.SQLITE_NOLFS: Fault.OUTAGE,
    # a value of the batch that SQLite refuses
    sqlite3.SQLITE_CONSTRAINT: Fault.REJECTED,
    sqlite3.SQLITE_MISMATCH: Fault.REJECTED,
    sqlite3.SQLITE_TOOBIG: Fault.REJECTED,
    sqlite3.SQLITE_RANGE: Fault.REJECTED,
    # a damaged file is never retried in silence: someone must look at it
    sqlite3.SQLITE_CORRUPT: Fault.BUG,
    sqlite3.SQLITE_NOTADB: Fault.BUG,
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The text of recently written instants (`SqliteSink._time`), shared by every sink and thread
# of the process (a dict's get and set are atomic under the GIL; the text never differs).
_TIMES: dict[datetime, str] = {}
_TIMES_KEPT = 4096


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
        if not fault(exc).keep_connection:
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
        """The stored text of an instant, from a cache: a transaction writes the same few
        instants many times (an event's time again in its call's row, the batch's received_at
        and now in every row), and a lookup costs a twentieth of the formatting.

        Only times in UTC are kept, and an aware datetime equals (and hashes like) one of them
        exactly when it is the same instant, which is all the text depends on; a naive one
        never does, so it misses and is refused by `_format_time`.
        """
        text = _TIMES.get(value)
        if text is None:
            text = _format_time(value)
            if value.tzinfo is UTC:
                if len(_TIMES) >= _TIMES_KEPT:
                    _TIMES.clear()  # older instants rarely come back: start over, bounded
                _TIMES[value] = text
        return text

    def _from_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(str(value))

    def _json(self, value: Any) -> object:
        return dumps(value)

    def _from_json(self, value: Any) -> Any:
        return json.loads(value)


def _format_time(value: datetime) -> str:
    """`_TIME_FORMAT` of the instant in UTC."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime given to the sink: {value!r}")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:  # strftime does not pad the year to four digits; isoformat would
        return value.strftime(_TIME_FORMAT)
    # _TIME_FORMAT, spelled by isoformat (several times faster than strftime): in UTC it
    # always ends in +00:00, which becomes the Z
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def fault(exc: sqlite3.Error) -> Fault:
    """What an error from SQLite means, from its result code (Python 3.11's `sqlite_errorcode`)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        known = _FAULTS.get(code) or _FAULTS.get(code & 0xFF)
        if known is not None:
            return known
    elif isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return Fault.REJECTED
    return Fault.BUG


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _raise_mapped(exc: sqlite3.Error, where: str) -> NoReturn:
    """`TransientError` for what a retry may cure, `RejectedData` for refused values, else as is."""
    kind = fault(exc)
    name = getattr(exc, "sqlite_errorname", None)
    text = f"SQLite {where}: {exc} ({name})" if name else f"SQLite {where}: {exc}"
    if kind.transient:
        raise TransientError(text) from exc
    if kind is Fault.REJECTED:
        raise RejectedData(text) from exc
    raise exc


__all__ = ["SqliteSink", "parse_url"]
