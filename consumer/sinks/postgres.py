"""PostgreSQL sink: psycopg 3 with a `psycopg_pool.ConnectionPool`.

The pool opens in the background, so a database that is down at start-up is a `TransientError`
from `migrate`/`store` rather than a crash, and the pool reconnects by itself when it comes back:
each connection is checked before it is lent, and a broken one is thrown away on return.

Writers of the same call serialize on a transaction-scoped advisory lock per (provider,
call_id), taken in sorted order, so each folds its events into the `calls` row's merge state
as the previous one left it, even when several workers store events of one call at once.

The tables live in the connection's current schema: pick one with
`postgresql://host/db?options=-csearch_path%3Dmyschema`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from consumer.errors import RejectedData, TransientError
from consumer.sinks.faults import Fault
from consumer.sinks.sql import CallKey, Cursor, SqlSink, dumps

# Every SQLSTATE the sink can meet, by full code, else by class (its first two characters).
# Unlisted states are bugs. https://www.postgresql.org/docs/current/errcodes-appendix.html
_FAULTS: dict[str, Fault] = {
    # contention: the transaction lost a race; the connection is fine
    "40001": Fault.BUSY,  # serialization_failure
    "40P01": Fault.BUSY,  # deadlock_detected
    "55P03": Fault.BUSY,  # lock_not_available
    "57014": Fault.BUSY,  # query_canceled (statement_timeout)
    "55006": Fault.BUSY,  # object_in_use
    # the server cannot write now: retry on a NEW connection (one opened on a standby or
    # during a shutdown must not outlive the fault)
    "08": Fault.OUTAGE,  # connection_exception
    "57": Fault.OUTAGE,  # operator intervention: admin/crash shutdown, cannot_connect_now, ...
    "53": Fault.OUTAGE,  # insufficient_resources: disk_full, out_of_memory, too_many_connections
    "58": Fault.OUTAGE,  # system_error: io_error, undefined_file, duplicate_file
    "25006": Fault.OUTAGE,  # read_only_sql_transaction: a standby, or read-only by setting
    "25P03": Fault.OUTAGE,  # idle_in_transaction_session_timeout
    "40003": Fault.OUTAGE,  # statement_completion_unknown (storing again is idempotent)
    "HV": Fault.OUTAGE,  # fdw errors: a remote server is away
    "F0": Fault.OUTAGE,  # config_file_error: the server is being reconfigured
    # a value of the batch that PostgreSQL refuses
    "22": Fault.REJECTED,  # data_exception: a NUL in text, a number out of range, ...
    "23": Fault.REJECTED,  # integrity_constraint_violation
    "54": Fault.REJECTED,  # program_limit_exceeded: an index row too large, ...
    # damaged data is never retried in silence
    "XX": Fault.BUG,  # internal_error, data_corrupted, index_corrupted
}
_PLACEHOLDER = re.compile(r"\?")
_MIGRATION_LOCK = "consumer.migrate"


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresSink(SqlSink):
    dialect = "postgres"
    greatest = "GREATEST"
    least = "LEAST"

    def __init__(
        self,
        url: str,
        *,
        forwarders: Sequence[str] = (),
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 5.0,
        acquire_timeout: float = 10.0,
    ) -> None:
        super().__init__(forwarders)
        self.url = url
        self.acquire_timeout = acquire_timeout
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={
                "connect_timeout": max(1, round(connect_timeout)),
                "application_name": "consumer",
                # Notice a peer that vanished without a FIN within about a minute.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
            check=psycopg_pool.ConnectionPool.check_connection,
            # Stop reconnecting in the background at once: the next request grows the pool again,
            # so recovery follows the pipeline's own retries instead of a second backoff.
            reconnect_timeout=0,
            name="consumer-sink",
        )
        self._pool.open(wait=False)

    @classmethod
    def from_url(cls, url: str, *, forwarders: Sequence[str] = ()) -> PostgresSink:
        return cls(url, forwarders=forwarders)

    def __repr__(self) -> str:
        return f"PostgresSink({_mask(self.url)!r})"

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        try:
            with self._pool.connection(timeout=self.acquire_timeout) as conn:
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        yield cur
                except psycopg.Error as exc:
                    if not fault(exc).keep_connection:
                        conn.close()  # the pool replaces a closed connection
                    raise
        except psycopg.Error as exc:
            _raise_mapped(exc)

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._transaction()

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._transaction()

    @contextmanager
    def _migration(self) -> Iterator[Cursor]:
        # One lock per schema, so that databases shared by several deployments (or test runs in
        # their own schemas) do not wait for each other.
        with self._transaction() as cur:
            cur.execute("SELECT current_schema()")
            schema = str(cur.fetchall()[0][0])
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(_MIGRATION_LOCK, schema),))
            yield cur

    def _schema_version_ddl(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
        )

    def _lock_calls(self, cur: Cursor, keys: Sequence[CallKey]) -> None:
        if not keys:
            return
        ordered = sorted({_lock_key("consumer.call", *key) for key in keys})
        cur.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)"
            " ORDER BY n",
            (ordered,),
        )

    def _sql(self, sql: str) -> Any:
        return _PLACEHOLDER.sub("%s", sql)

    def _time(self, value: datetime) -> object:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime given to the sink: {value!r}")
        return value

    def _from_time(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise TypeError(f"expected a timestamptz, got {value!r}")
        return value.astimezone(UTC)  # psycopg answers in the session's TimeZone

    def _json(self, value: Any) -> object:
        return Jsonb(value, dumps)

    def _from_json(self, value: Any) -> Any:
        return value


def fault(exc: psycopg.Error) -> Fault:
    """What an error from PostgreSQL means, from its SQLSTATE (never its message text).

    An error without one comes from the client: a refused or lost connection, a pool timeout
    (both `OperationalError`), or a value psycopg cannot send (`DataError`).
    """
    state = exc.sqlstate
    if state:
        known = _FAULTS.get(state) or _FAULTS.get(state[:2])
        return known or Fault.BUG
    if isinstance(exc, psycopg.OperationalError):
        return Fault.OUTAGE
    if isinstance(exc, psycopg.DataError):
        return Fault.REJECTED
    return Fault.BUG


def _raise_mapped(exc: psycopg.Error) -> NoReturn:
    kind = fault(exc)
    text = f"PostgreSQL: {type(exc).__name__}: {exc}".strip()
    if exc.sqlstate:
        text += f" (SQLSTATE {exc.sqlstate})"
    if kind.transient:
        raise TransientError(text) from exc
    if kind is Fault.REJECTED:
        raise RejectedData(text) from exc
    raise exc


def _mask(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


__all__ = ["PostgresSink"]
