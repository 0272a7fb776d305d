"""SQLite specifics: URLs, WAL, worker processes writing at once, a locked database."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import ConfigError, TransientError
from consumer.sinks import migrations
from consumer.sinks.merge import merge_call
from consumer.sinks.sqlite import SqliteSink, _raise_mapped, parse_url
from tests.sinks.helpers import call_row, count
from tests.sinks.scenarios import SCENARIOS, stored, with_call_id

# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path", "timeout"),
    [
        ("sqlite:///var/events.db", Path("var/events.db"), None),
        ("sqlite:////var/lib/consumer/events.db", Path("/var/lib/consumer/events.db"), None),
        ("sqlite:///events.db?timeout=2.5", Path("events.db"), 2.5),
    ],
)
def test_urls_follow_the_sqlalchemy_convention(url: str, path: Path, timeout: float | None) -> None:
    # Given a URL, When parsed, Then three slashes mean relative and four mean absolute
    assert parse_url(url) == (path, timeout)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///", "needs a database file"),
        ("sqlite:///:memory:", "needs a database file"),
        ("sqlite:///x.db?mode=ro", "unknown SQLite URL option 'mode'"),
        ("sqlite:///x.db?timeout=soon", "timeout must be seconds"),
        ("postgresql://h/db", "not a SQLite URL"),
    ],
)
def test_bad_urls_are_named(url: str, problem: str) -> None:
    # Given a bad URL, When parsed, Then the error names the key and the problem
    with pytest.raises(ConfigError, match=problem) as raised:
        parse_url(url)
    assert raised.value.location == "sink.url"


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    # Given a database path in a directory that does not exist, Then opening says so
    with pytest.raises(ConfigError, match="directory of the SQLite database does not exist"):
        SqliteSink(tmp_path / "nope" / "events.db")


def test_a_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a relative URL, When a sink is opened in some working directory
    monkeypatch.chdir(tmp_path)
    sink = SqliteSink.from_url("sqlite:///events.db")
    sink.migrate()
    sink.close()
    # Then the file is there, in WAL mode
    assert (tmp_path / "events.db").exists()
    mode = sqlite3.connect(tmp_path / "events.db").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)


# --- locking ------------------------------------------------------------------------------------


def test_a_locked_database_is_transient_and_commits_nothing(tmp_path: Path) -> None:
    # Given a sink with a short busy timeout, and another process-like writer holding the lock
    path = tmp_path / "events.db"
    sink = SqliteSink(path, busy_timeout=0.2)
    sink.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    events = stored(SCENARIOS[0].events)
    # When a batch is stored, Then it is a TransientError
    with pytest.raises(TransientError, match="database is locked"):
        sink.store(events, [])
    # And once the lock is released the retry stores everything, once
    holder.execute("ROLLBACK")
    holder.close()
    sink.store(events, [])
    assert count(sink, "call_events") == len(SCENARIOS[0].events)
    sink.close()


def test_a_sink_serves_several_threads(tmp_path: Path) -> None:
    # Given one sink shared by threads (each gets its own connection)
    import threading

    sink = SqliteSink(tmp_path / "events.db")
    sink.migrate()
    scenario = SCENARIOS[4]

    def work(n: int) -> None:
        sink.store(stored(with_call_id(scenario.events, f"t{n}")), [])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then every thread's call is there
    assert count(sink, "calls") == 4
    sink.close()


# --- worker processes ---------------------------------------------------------------------------

_PROCESSES = 4
_CALLS = 12


def _worker(path: str, index: int, start: multiprocessing.synchronize.Barrier) -> None:
    """One worker process: migrate, then store its share of every call's events."""
    sink = SqliteSink(path, forwarders=["f"])
    start.wait()
    sink.migrate()
    for call in range(_CALLS):
        for scenario in SCENARIOS:
            events = with_call_id(scenario.events, f"{scenario.name}-{call}")
            # Each process gets every other event, so every event arrives twice.
            share = [e for n, e in enumerate(events) if n % 2 == index % 2]
            sink.store(stored(share[::-1] if index >= 2 else share), [])
    sink.close()


def test_worker_processes_migrate_and_write_at_once(tmp_path: Path) -> None:
    # Given four worker processes started together on a new database file
    path = str(tmp_path / "events.db")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(_PROCESSES)
    workers = [context.Process(target=_worker, args=(path, n, start)) for n in range(_PROCESSES)]
    # When they migrate and store interleaved, overlapping shares of the same calls
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    # Then all succeeded
    assert [worker.exitcode for worker in workers] == [0] * _PROCESSES
    # And every event is stored once, with one outbox row, and every call merged from all
    sink = SqliteSink(path)
    expected_events = {
        e.event_id
        for call in range(_CALLS)
        for scenario in SCENARIOS
        for e in with_call_id(scenario.events, f"{scenario.name}-{call}")
    }
    assert count(sink, "call_events") == len(expected_events)
    assert count(sink, "outbox") == len(expected_events)
    assert count(sink, "schema_version") == len(migrations.load("sqlite"))
    for call in range(_CALLS):
        for scenario in SCENARIOS:
            call_id = f"{scenario.name}-{call}"
            events = with_call_id(scenario.events, call_id)
            row = call_row(sink, events[0].provider, call_id)
            merged = merge_call(events)
            assert row is not None
            assert merged is not None
            assert (row["outcome"], row["event_count"], row["ended_at"]) == (
                merged.outcome,
                merged.event_count,
                merged.ended_at,
            )
    sink.close()


# --- error mapping ------------------------------------------------------------------------------


def test_an_sql_error_is_not_transient(tmp_path: Path) -> None:
    # Given a database whose calls table was dropped by hand
    sink = SqliteSink(tmp_path / "events.db")
    sink.migrate()
    with sink._write() as cur:
        cur.execute("DROP TABLE calls")
    # When a batch is stored, Then SQLite's own error propagates unchanged (the pipeline
    # isolates the message) and the events inserted before it are rolled back
    with pytest.raises(sqlite3.OperationalError, match="no such table: calls"):
        sink.store(stored(SCENARIOS[0].events), [])
    assert count(sink, "call_events") == 0
    sink.close()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (sqlite3.SQLITE_IOERR_WRITE, "disk I/O error"),
        (sqlite3.SQLITE_FULL, "database or disk is full"),
        (sqlite3.SQLITE_BUSY_SNAPSHOT, "database is locked"),
    ],
)
def test_io_and_lock_failures_are_transient(code: int, message: str) -> None:
    # Given an error SQLite raises for a failing disk or a lock (extended codes included)
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    # When it is mapped, Then it is a TransientError that names it
    with pytest.raises(TransientError, match=message):
        _raise_mapped(error, "events.db")


# --- query plans --------------------------------------------------------------------------------


def test_a_batch_looks_its_calls_up_in_the_index_instead_of_scanning(tmp_path: Path) -> None:
    # Given a sink whose connection traces every statement it runs
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    sink.migrate()
    statements: list[str] = []
    sink._connection().set_trace_callback(statements.append)
    # When a batch of two calls is stored, then more events of them, then more events of a
    # call whose row predates the merge state (recomputed once from its events)
    events = SCENARIOS[0].events
    other = with_call_id(events, "another-call")
    sink.store(stored(events[:2] + other[:2]), [])
    sink.store(stored(events[2:] + other[2:-1]), [])
    with sink._write() as cur:
        cur.execute("UPDATE calls SET merge_state = NULL WHERE call_id = 'another-call'")
    sink.store(stored(other[-1:] + SCENARIOS[1].events), [])
    sink.close()
    # Then each read looks the calls up by (provider, call_id), and none scans the table or the
    # whole index (which costs per batch what the table holds)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plain = sqlite3.connect(path)
    for statement in reads:
        details = [row[3] for row in plain.execute("EXPLAIN QUERY PLAN " + statement)]
        assert not any(detail.startswith("SCAN") for detail in details), details
        assert any("(provider=? AND call_id=?)" in d for d in details), details
    plain.close()
    # And the call's own events are read only for the row without a merge state
    event_reads = [s for s in reads if "FROM call_events" in s]
    assert len(event_reads) == 1
    assert "'another-call'" in event_reads[0]


_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]
)


@given(st.datetimes(timezones=_ZONES, allow_imaginary=False), st.booleans())
def test_a_time_is_written_as_the_format_says_cached_or_not(value: datetime, first: bool) -> None:
    # Given any aware time, in UTC or another zone, written once or after its instant was
    # already written (the cache), When written, Then _TIME_FORMAT of its instant in UTC
    sink = SqliteSink("events.db")
    try:
        instant = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 at UTC+8 has no UTC instant: no text either
        return
    if not first:
        sink._time(instant)
    text = sink._time(value)
    assert text == instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # what the sink always wrote
    assert sink._time(value) == text


def test_a_naive_time_is_refused_even_when_its_fields_were_written() -> None:
    # Given an aware time already written, When the same fields come without a zone, Then refused
    sink = SqliteSink("events.db")
    sink._time(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive datetime"):
        sink._time(datetime(2024, 5, 6, 7, 8, 9))
