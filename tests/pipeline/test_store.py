"""One transaction per batch; transient failures retried within bounds; refused rows isolated."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from consumer.config.model import SinkConfig
from consumer.errors import RejectedData
from consumer.pipeline.metrics import Counters
from consumer.pipeline.results import Disposition
from consumer.pipeline.store import Committer
from consumer.sinks import open_sink
from consumer.sinks.base import DeadLetter, StoredEvent
from consumer.sinks.sqlite import SqliteSink
from tests.conformance import bodies
from tests.conformance.conftest import POSTGRES
from tests.conformance.sink_double import FaultySink, SinkDouble
from tests.pipeline.conftest import QUEUE, FakeTime, captured, retry, unit


def committer(
    sink: FaultySink,
    fake_time: FakeTime,
    *,
    attempts: int = 3,
    initial: float = 1,
    maximum: float = 4,
    total: float = 60,
) -> Committer:
    config = retry(attempts=attempts, initial=initial, maximum=maximum, total=total)
    return Committer(sink, config, QUEUE, Counters(), clock=fake_time, sleep=fake_time.sleep)


def test_events_and_dead_letters_commit_together_in_one_transaction(
    sink: FaultySink, double: SinkDouble, fake_time: FakeTime
) -> None:
    # Given two good messages and a poison one
    units = [unit(1), unit(2, body=bodies.NOT_JSON), unit(3)]
    # When they are committed
    results = committer(sink, fake_time).commit(units)
    # Then one store call held all of it, and each result says what it became
    assert sink.calls == 1
    assert double.commits == 1
    assert [r.disposition for r in results] == [
        Disposition.STORED,
        Disposition.DEAD_LETTERED,
        Disposition.STORED,
    ]
    assert [r.events for r in results] == [1, 0, 1]
    assert results[1].reason == "not_json"
    assert len(double.events) == 2
    assert len(double.letters) == 1


def test_nothing_to_commit_touches_nothing(sink: FaultySink, fake_time: FakeTime) -> None:
    assert committer(sink, fake_time).commit([]) == []
    assert sink.calls == 0


def test_a_transient_failure_is_retried_with_growing_waits(
    sink: FaultySink, double: SinkDouble, fake_time: FakeTime
) -> None:
    # Given a database locked for the next three attempts
    sink.lock_errors = 3
    # When a batch is committed with 5 attempts, waits from 1 s up to 3 s
    c = committer(sink, fake_time, attempts=5, initial=1, maximum=3)
    (result,) = c.commit([unit(1)])
    # Then it committed on the 4th attempt after waits of about 1, 2 and 3 (capped) seconds
    assert result.disposition is Disposition.STORED
    assert sink.calls == 4
    assert len(double.events) == 1
    assert [int(s) for s in fake_time.sleeps] == [1, 2, 3]
    assert isinstance(c.metrics, Counters)
    assert c.metrics[QUEUE].retries == 3


def test_when_attempts_run_out_nothing_is_committed(
    sink: FaultySink, double: SinkDouble, fake_time: FakeTime
) -> None:
    # Given a database that stays down
    sink.outage = True
    # When a batch is committed with 3 attempts
    with captured() as logs:
        results = committer(sink, fake_time, attempts=3).commit([unit(1), unit(2)])
    # Then both are transient, with the cause, after exactly three attempts
    assert sink.calls == 3
    assert {r.disposition for r in results} == {Disposition.TRANSIENT}
    assert all("database is down" in (r.error or "") for r in results)
    assert double.commits == 0
    retries = [line for line in logs if line["event"] == "sink unavailable: retrying"]
    assert [line["attempt"] for line in retries] == [1, 2]


def test_retries_stop_before_the_total_time_runs_out(sink: FaultySink, fake_time: FakeTime) -> None:
    # Given many attempts but 10 s in total, waits of 2 s
    sink.outage = True
    started = fake_time.now
    results = committer(sink, fake_time, attempts=100, initial=2, maximum=2, total=10).commit(
        [unit(1)]
    )
    # Then it gave up without sleeping past the deadline
    assert results[0].disposition is Disposition.TRANSIENT
    assert fake_time.now - started < 10
    assert 3 <= sink.calls <= 5


def test_a_budget_shorter_than_total_caps_the_retries(
    sink: FaultySink, fake_time: FakeTime
) -> None:
    sink.outage = True
    c = committer(sink, fake_time, attempts=100, initial=1, maximum=1, total=60)
    started = fake_time.now
    results = c.commit([unit(1)], budget=3)
    assert results[0].disposition is Disposition.TRANSIENT
    assert fake_time.now - started < 3
    assert sink.calls <= 3


def test_a_refused_row_is_isolated_and_quarantined_with_its_bytes(
    sink: FaultySink, double: SinkDouble, fake_time: FakeTime
) -> None:
    # Given a batch in which the database refuses message 2's event
    refused = bodies.call_id(2)
    sink.refuse = lambda event: event.normalized.event.call_id == refused
    units = [unit(1), unit(2), unit(3, body=bodies.NOT_JSON), unit(4)]
    # When it is committed
    with captured() as logs:
        results = committer(sink, fake_time).commit(units)
    # Then the others are stored one by one and message 2 became a sink_rejected dead letter
    assert [r.disposition for r in results] == [
        Disposition.STORED,
        Disposition.DEAD_LETTERED,
        Disposition.DEAD_LETTERED,
        Disposition.STORED,
    ]
    assert [r.reason for r in results] == [None, "sink_rejected", "not_json", None]
    assert {e.normalized.event.call_id for e in double.events.values()} == {
        bodies.call_id(1),
        bodies.call_id(4),
    }
    letter = next(row for row in double.letters.values() if row.reason == "sink_rejected")
    assert letter.payload == bodies.voice_report(2)
    assert letter.message_id == "m-2"
    assert letter.error.startswith("RefusedRow: value refused")
    assert any(line["log_level"] == "error" and line["message_id"] == "m-2" for line in logs)


def test_a_lone_refused_message_is_quarantined_without_storing_it_twice(
    sink: FaultySink, double: SinkDouble, fake_time: FakeTime
) -> None:
    sink.refuse = lambda event: True
    (result,) = committer(sink, fake_time).commit([unit(1)])
    assert (result.disposition, result.reason) == (Disposition.DEAD_LETTERED, "sink_rejected")
    assert sink.calls == 2  # the refused store, then the dead letter alone
    assert [row.payload for row in double.letters.values()] == [bodies.voice_report(1)]


def test_an_outage_during_isolation_leaves_the_rest_for_redelivery(
    double: SinkDouble, fake_time: FakeTime
) -> None:
    # Given a sink that refuses the batch, then goes down after storing one message alone
    class Flaky(FaultySink):
        def store(self, events: list[StoredEvent], letters: list[DeadLetter]) -> None:  # type: ignore[override]
            if len(events) > 1:
                raise RejectedData("refused")
            if self.calls >= 1:
                self.outage = True
            super().store(events, letters)

    sink = Flaky(double)
    # When a batch of three is committed
    results = committer(sink, fake_time, attempts=2).commit([unit(1), unit(2), unit(3)])
    # Then the first is stored and the rest are transient
    assert [r.disposition for r in results] == [
        Disposition.STORED,
        Disposition.TRANSIENT,
        Disposition.TRANSIENT,
    ]
    assert len(double.events) == 1


def test_when_even_the_dead_letter_is_refused_the_message_is_left_for_redelivery(
    double: SinkDouble, fake_time: FakeTime
) -> None:
    class Refusing(FaultySink):
        def store(self, events: list[StoredEvent], letters: list[DeadLetter]) -> None:  # type: ignore[override]
            raise RejectedData("everything refused")

    results = committer(Refusing(double), fake_time).commit([unit(1)])
    assert results[0].disposition is Disposition.TRANSIENT
    assert results[0].reason == "sink_error"
    assert results[0].error == "RejectedData: everything refused"
    assert double.commits == 0


def test_a_real_sqlite_lock_is_retried_until_it_is_released(
    tmp_path: Path, fake_time: FakeTime
) -> None:
    # Given the real SQLite sink with a 50 ms busy timeout, and another writer holding the lock
    path = tmp_path / "events.db"
    real = SqliteSink.from_url(f"sqlite:///{path}?timeout=0.05")
    real.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")

    def sleep_then_release(seconds: float) -> None:
        fake_time.sleep(seconds)
        if len(fake_time.sleeps) == 2 and other.in_transaction:
            other.execute("COMMIT")

    # When a batch is committed with up to 5 attempts
    c = Committer(
        real, retry(attempts=5), QUEUE, Counters(), clock=fake_time, sleep=sleep_then_release
    )
    try:
        (result,) = c.commit([unit(1)])
    finally:
        other.close()
        real.close()
    # Then the lock was a transient failure, retried twice, and the batch committed
    assert result.disposition is Disposition.STORED
    assert len(fake_time.sleeps) == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM call_events").fetchone() == (1,)


@pytest.mark.postgres
def test_a_row_postgresql_refuses_is_quarantined_and_the_rest_stored(
    fake_time: FakeTime,
) -> None:
    # Given the real PostgreSQL sink and a receipt whose out_id holds a NUL character, which
    # PostgreSQL text and jsonb refuse (SQLite takes it)
    refused_body = bodies.voice_report(2).replace(b'"order-2"', b'"order\\u00002"')
    schema = f"pipeline_store_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    real = open_sink(SinkConfig(url=f"{POSTGRES}?options=-csearch_path%3D{schema}"))
    try:
        real.migrate()
        # When a batch holding it is committed
        c = Committer(real, retry(), QUEUE, clock=fake_time, sleep=fake_time.sleep)
        results = c.commit([unit(1), unit(2, body=refused_body), unit(3)])
        letters = real.dead_letters()
        stored = admin.execute(f'SELECT message_id FROM "{schema}".call_events').fetchall()
    finally:
        real.close()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
    # Then the two good ones are stored and the refused one is quarantined with its bytes
    assert [r.disposition for r in results] == [
        Disposition.STORED,
        Disposition.DEAD_LETTERED,
        Disposition.STORED,
    ]
    assert sorted(row[0] for row in stored) == ["m-1", "m-3"]
    (letter,) = letters
    assert (letter.reason, letter.payload) == ("sink_rejected", refused_body)
    assert letter.error.startswith("RejectedData: PostgreSQL: "), letter.error
    assert "NUL" in letter.error or "Untranslatable" in letter.error, letter.error
