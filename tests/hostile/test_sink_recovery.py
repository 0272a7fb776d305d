"""Storage faults: writes resume on their own once the fault is gone, nothing lost or doubled.

The faults are real: SQLite files made immutable (`chattr +i`: the tests run as root, which
permission bits do not stop), a 1 MiB tmpfs filled to the last block, a PostgreSQL role whose
sessions are read-only. Each test lifts the fault from the committer's retry wait, so the
retry that follows is the sink recovering by itself, without a restart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumer.errors import RejectedData, TransientError
from consumer.pipeline.metrics import Counters
from consumer.pipeline.normalize import Unit
from consumer.pipeline.results import Disposition
from consumer.pipeline.store import Committer
from consumer.sinks.faults import Fault
from consumer.sinks.postgres import PostgresSink
from consumer.sinks.postgres import fault as postgres_fault
from consumer.sinks.sqlite import SqliteSink
from consumer.sinks.sqlite import fault as sqlite_fault
from tests.conformance.bodies import FORMAT, call_id
from tests.pipeline.conftest import QUEUE, FakeTime, retry, unit
from tests.runtime.helpers import Daemon, free_port, push
from tests.sinks.conftest import POSTGRES, schema_url
from tests.sinks.helpers import count, query

# -- faults ----------------------------------------------------------------------------------


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The files cannot be written or opened for writing, even by root, until the block ends.

    Not the -shm file: SQLite maps it into memory, and a mapped file turned immutable kills
    the process with SIGBUS on its next write (a crash, not the fault under test).
    """
    if shutil.which("chattr") is None:
        pytest.fail("these tests need chattr (Debian package e2fsprogs)")
    names = [str(path) for path in paths]
    done = subprocess.run(["chattr", "+i", *names], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"chattr +i failed (a file system without the immutable flag?): {done.stderr}")
    try:
        yield
    finally:
        lift_immutable(*paths)


def lift_immutable(*paths: Path) -> None:
    subprocess.run(["chattr", "-i", *(str(path) for path in paths)], check=True)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """An empty 1 MiB tmpfs, unmounted afterwards."""
    mountpoint = Path(tempfile.mkdtemp(prefix="consumer-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)],
        check=False,
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.fail(f"these tests mount a tmpfs (as root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def fill(directory: Path) -> Path:
    """A file that takes every free block of the file system; remove it to free them."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 1):  # the last partial block too
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def committer(sink: Any, fake_time: FakeTime, on_sleep: Callable[[int], None]) -> Committer:
    """Ten attempts; `on_sleep(n)` runs during the n-th retry wait (1, 2, ...)."""

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        on_sleep(len(fake_time.sleeps))

    return Committer(
        sink, retry(attempts=10, initial=1, maximum=2, total=600), QUEUE, Counters(),
        clock=fake_time, sleep=sleep,
    )  # fmt: skip


def units(first: int, n: int) -> list[Unit]:
    return [unit(k) for k in range(first, first + n)]


def stored_messages(sink: Any) -> list[str]:
    return sorted(row[0] for row in query(sink, "SELECT message_id FROM call_events"))


def message_ids(first: int, n: int) -> list[str]:
    return sorted(f"m-{k}" for k in range(first, first + n))


# -- SQLite ----------------------------------------------------------------------------------


def test_sqlite_writes_resume_after_the_files_were_read_only(
    tmp_path: Path, fake_time: FakeTime
) -> None:
    # Given a SQLite sink that has stored a first batch (the WAL file exists)
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    sink.migrate()
    assert all(r.disposition is Disposition.STORED for r in committer(
        sink, fake_time, lambda n: None).commit(units(0, 3)))  # fmt: skip
    files = (path, path.with_name("events.db-wal"))
    # When the database files become unwritable, and writable again during the third wait
    with immutable(*files):

        def lift(n: int) -> None:
            if n == 3:
                lift_immutable(*files)

        results = committer(sink, fake_time, lift).commit(units(3, 5))
    # Then the batch is stored by the retry after the fault, on the same sink (no restart):
    # the connections opened while the files were read-only were not kept
    assert [r.disposition for r in results] == [Disposition.STORED] * 5
    assert len(fake_time.sleeps) == 3
    # And every message is there exactly once, and the next batch needs no retry
    committer(sink, fake_time, lambda n: None).commit(units(8, 2))
    assert len(fake_time.sleeps) == 3
    assert stored_messages(sink) == message_ids(0, 10)
    assert count(sink, "calls") == 10
    sink.close()


@pytest.mark.timeout(180)
def test_the_daemon_stores_pushes_again_once_its_files_are_writable(tmp_path: Path) -> None:
    # Given `consumer run` storing pushes into SQLite, with short sink retries
    port = free_port()
    config = tmp_path / "consumer.yaml"
    config.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "sqlite:///{tmp_path}/events.db"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: vms
    source: http
    format: {FORMAT}
    http: {{path: /push/vms}}
    retry: {{attempts: 3, initial: 50ms, max: 100ms, total: 1s}}
""",
        encoding="utf-8",
    )
    daemon = Daemon(config, tmp_path)
    try:
        daemon.wait_ready()
        assert [push(port, n) for n in range(3)] == [200, 200, 200]
        files = [p for p in (tmp_path / "events.db", tmp_path / "events.db-wal") if p.exists()]
        # When the database files are unwritable, Then a push is refused (the sender keeps it)
        with immutable(*files):
            assert push(port, 3) == 503
            assert push(port, 3) == 503
        # When they are writable again, Then the same daemon stores that push and the next
        assert push(port, 3) == 200
        assert push(port, 4) == 200
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log_text()
    # And every receipt is stored once
    with sqlite3.connect(tmp_path / "events.db") as db:
        stored = sorted(row[0] for row in db.execute("SELECT call_id FROM call_events"))
    assert stored == sorted(call_id(n) for n in range(5))


def test_a_sqlite_sink_started_while_the_files_are_read_only_writes_once_they_are_not(
    tmp_path: Path,
) -> None:
    # Given a database whose files are unwritable (a worker restarted during the fault)
    path = tmp_path / "events.db"
    first = SqliteSink(path)
    first.migrate()
    first.close()
    with immutable(path):
        restarted = SqliteSink(path)
        restarted.migrate()  # nothing to apply: it writes nothing
        # When it stores, twice, Then each is a TransientError naming the code
        batch = units(0, 2)
        for _ in range(2):
            with pytest.raises(TransientError, match="SQLITE_READONLY"):
                restarted.store([e for u in batch for e in u.events], [])
    # When the fault is gone, Then the same sink stores without a restart
    restarted.store([e for u in batch for e in u.events], [])
    assert stored_messages(restarted) == message_ids(0, 2)
    restarted.close()


def test_sqlite_writes_resume_after_the_disk_was_full(
    small_disk: Path, fake_time: FakeTime
) -> None:
    # Given a SQLite sink on a 1 MiB file system, one message stored
    sink = SqliteSink(small_disk / "events.db")
    sink.migrate()
    committer(sink, fake_time, lambda n: None).commit(units(0, 1))
    # When the disk fills up, and space is freed during the second retry wait
    filler = fill(small_disk)

    def free(n: int) -> None:
        if n == 2:
            filler.unlink()

    results = committer(sink, fake_time, free).commit(units(1, 40))
    # Then the attempts on the full disk failed as transient, and the retry after stored it all
    assert [r.disposition for r in results] == [Disposition.STORED] * 40
    assert len(fake_time.sleeps) == 2
    assert stored_messages(sink) == message_ids(0, 41)
    sink.close()


def test_a_corrupt_sqlite_file_is_a_loud_error_not_a_retry(tmp_path: Path) -> None:
    # Given a "database" file that is not one
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a SQLite database, but it is long enough to look at" * 100)
    sink = SqliteSink(path)
    # When the sink migrates, Then SQLite's own error propagates: retrying cannot cure it
    with pytest.raises(sqlite3.DatabaseError) as raised:
        sink.migrate()
    assert not isinstance(raised.value, TransientError)
    assert raised.value.sqlite_errorname == "SQLITE_NOTADB"
    sink.close()


def _sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("as SQLite would say it")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (sqlite3.SQLITE_BUSY, Fault.BUSY),
        (sqlite3.SQLITE_BUSY_SNAPSHOT, Fault.BUSY),
        (sqlite3.SQLITE_LOCKED_SHAREDCACHE, Fault.BUSY),
        (sqlite3.SQLITE_READONLY, Fault.OUTAGE),
        (sqlite3.SQLITE_READONLY_DBMOVED, Fault.OUTAGE),
        (sqlite3.SQLITE_READONLY_DIRECTORY, Fault.OUTAGE),
        (sqlite3.SQLITE_FULL, Fault.OUTAGE),
        (sqlite3.SQLITE_IOERR, Fault.OUTAGE),
        (sqlite3.SQLITE_IOERR_WRITE, Fault.OUTAGE),
        (sqlite3.SQLITE_IOERR_FSYNC, Fault.OUTAGE),
        (sqlite3.SQLITE_IOERR_SHMMAP, Fault.OUTAGE),
        (sqlite3.SQLITE_CANTOPEN, Fault.OUTAGE),
        (sqlite3.SQLITE_CONSTRAINT_NOTNULL, Fault.REJECTED),
        (sqlite3.SQLITE_TOOBIG, Fault.REJECTED),
        (sqlite3.SQLITE_CORRUPT, Fault.BUG),
        (sqlite3.SQLITE_CORRUPT_INDEX, Fault.BUG),
        (sqlite3.SQLITE_NOTADB, Fault.BUG),
        (sqlite3.SQLITE_ERROR, Fault.BUG),
    ],
)
def test_each_sqlite_result_code_has_one_meaning(code: int, expected: Fault) -> None:
    # Given an error SQLite raises with this (extended) result code
    # When it is classified, Then it has the expected meaning, whatever the message says
    assert sqlite_fault(_sqlite_error(code)) is expected


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def postgres_admin() -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    yield conn
    conn.close()


@pytest.fixture
def writer_role(postgres_admin: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """A login role and a schema it owns, so a setting can target the sink's sessions alone."""
    schema = f"hostile_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    role = f"{schema}_writer"
    postgres_admin.execute(f'CREATE ROLE "{role}" LOGIN')
    postgres_admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    yield role, schema
    postgres_admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
    )
    postgres_admin.execute(f'DROP OWNED BY "{role}" CASCADE')
    postgres_admin.execute(f'DROP ROLE "{role}"')


def _as_role(role: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(POSTGRES)
    return f"postgresql://{role}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/" + str(
        info.get("dbname", "test")
    )


@pytest.mark.postgres
def test_postgres_writes_resume_after_sessions_were_read_only(
    writer_role: tuple[str, str],
    postgres_admin: psycopg.Connection[Any],
    fake_time: FakeTime,
) -> None:
    role, schema = writer_role
    # Given a PostgreSQL sink that has stored a first batch
    sink = PostgresSink(schema_url(schema, _as_role(role)), acquire_timeout=5)
    sink.migrate()
    committer(sink, fake_time, lambda n: None).commit(units(0, 3))
    # When its sessions turn read-only (as on a standby) and its connections are dropped,
    # so the pool reconnects during the fault (the server ends them: admin shutdown, 57P01)
    postgres_admin.execute(
        f'ALTER ROLE "{role}" SET default_transaction_read_only = on'
    )  # fmt: skip
    postgres_admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
        (role,),
    )

    def lift(n: int) -> None:
        if n == 2:
            postgres_admin.execute(
                f'ALTER ROLE "{role}" RESET default_transaction_read_only'
            )  # fmt: skip

    results = committer(sink, fake_time, lift).commit(units(3, 5))
    # Then the read-only attempts were transient, and a retry after the fault stored the batch
    # on a fresh connection (the ones opened read-only were closed, not returned to the pool)
    assert [r.disposition for r in results] == [Disposition.STORED] * 5
    assert len(fake_time.sleeps) >= 2
    assert stored_messages(sink) == message_ids(0, 8)
    # And the batches after it are stored too, each message once
    for first in range(8, 14):
        (result,) = committer(sink, fake_time, lambda n: None).commit(units(first, 1))
        assert result.disposition is Disposition.STORED
    assert stored_messages(sink) == message_ids(0, 14)
    sink.close()


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("40001", Fault.BUSY),  # serialization_failure
        ("40P01", Fault.BUSY),  # deadlock_detected
        ("55P03", Fault.BUSY),  # lock_not_available
        ("08006", Fault.OUTAGE),  # connection_failure
        ("08001", Fault.OUTAGE),  # sqlclient_unable_to_establish_sqlconnection
        ("57P01", Fault.OUTAGE),  # admin_shutdown
        ("57P03", Fault.OUTAGE),  # cannot_connect_now
        ("57000", Fault.OUTAGE),  # operator_intervention
        ("57014", Fault.BUSY),  # query_canceled
        ("53100", Fault.OUTAGE),  # disk_full
        ("53200", Fault.OUTAGE),  # out_of_memory
        ("53300", Fault.OUTAGE),  # too_many_connections
        ("25006", Fault.OUTAGE),  # read_only_sql_transaction
        ("58030", Fault.OUTAGE),  # io_error
        ("22021", Fault.REJECTED),  # character_not_in_repertoire
        ("23505", Fault.REJECTED),  # unique_violation
        ("54000", Fault.REJECTED),  # program_limit_exceeded (an index row too large)
        ("XX001", Fault.BUG),  # data_corrupted
        ("42P01", Fault.BUG),  # undefined_table
    ],
)
def test_each_sqlstate_has_one_meaning(sqlstate: str, expected: Fault) -> None:
    # Given the exception psycopg raises for this SQLSTATE
    error = psycopg.errors.lookup(sqlstate)("as the server would say it")
    # When it is classified, Then it has the expected meaning
    assert postgres_fault(error) is expected


def test_client_side_errors_without_a_sqlstate() -> None:
    # Given errors psycopg raises before any server answered
    refused = psycopg.OperationalError("connection refused")
    unsendable = psycopg.DataError("integer out of range for int8")
    misuse = psycopg.ProgrammingError("the query has 2 placeholders but 1 parameters were passed")
    # When classified, Then a lost or refused connection is an outage, an unsendable value is
    # refused data, and misuse of the driver is a bug
    assert postgres_fault(refused) is Fault.OUTAGE
    assert postgres_fault(unsendable) is Fault.REJECTED
    assert postgres_fault(misuse) is Fault.BUG


def test_a_rejected_value_raises_rejected_data_and_an_outage_transient() -> None:
    # Given a disk-full error and a refused value from PostgreSQL
    from consumer.sinks.postgres import _raise_mapped

    # When they are mapped, Then the pipeline sees a retryable and an isolating error
    with pytest.raises(TransientError, match="SQLSTATE 53100"):
        _raise_mapped(psycopg.errors.lookup("53100")("could not extend file: No space left"))
    with pytest.raises(RejectedData, match="SQLSTATE 22021"):
        _raise_mapped(psycopg.errors.lookup("22021")("invalid byte sequence"))
