"""The sink contract, run against SQLite and PostgreSQL alike (the `backend` fixture)."""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import RejectedData
from consumer.model import CallEvent, Normalized
from consumer.sinks import migrations
from consumer.sinks.base import DeadLetter, NonceClaim, StoredEvent
from consumer.sinks.merge import CallRow, MergeState
from consumer.sinks.sql import CALL_COLUMNS, SqlSink
from consumer.sinks.sql_calls import _dumps_state, _loads
from tests.sinks import reference
from tests.sinks.conftest import SinkFactory
from tests.sinks.helpers import call_row, count, query
from tests.sinks.scenarios import SCENARIOS, Scenario, at, event, stored, with_call_id
from tests.sinks.strategies import call_events


def letter(message_id: str = "m-1", **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "queue": "vms-voice-report",
        "message_id": message_id,
        "reason": "not_json",
        "error": "body is not JSON: Expecting value at line 1 column 1",
        "payload": b"\x00\xff{not json\n",
        "attempts": 1,
        "seen_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return DeadLetter(**fields)


# --- migrations -------------------------------------------------------------------------------


def test_migrate_twice_applies_each_version_once(make_sink: SinkFactory) -> None:
    # Given a migrated database
    sink = make_sink()
    # When it is migrated again, by the same sink and by another one
    sink.migrate()
    make_sink().migrate()
    # Then every known version is recorded exactly once and the tables are usable
    versions = [row[0] for row in query(sink, "SELECT version FROM schema_version")]
    assert versions == [m.version for m in migrations.load(sink.dialect)]
    assert sink.schema_version() == versions[-1]
    assert count(sink, "call_events") == 0


def test_concurrent_migrations_all_succeed(make_sink: SinkFactory) -> None:
    # Given several workers starting at once on an empty database
    sinks = [make_sink(migrate=False) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sinks))

    def start(sink: SqlSink) -> None:
        barrier.wait()
        try:
            sink.migrate()
        except BaseException as exc:
            errors.append(exc)

    # When they all migrate at the same moment
    threads = [threading.Thread(target=start, args=(sink,)) for sink in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then none fails and each version is applied once
    assert errors == []
    assert count(sinks[0], "schema_version") == len(migrations.load(sinks[0].dialect))


def test_a_newer_schema_is_refused(make_sink: SinkFactory) -> None:
    # Given a database that a newer consumer migrated to version 9999
    sink = make_sink()
    with sink._write() as cur:
        cur.execute(
            sink._sql("INSERT INTO schema_version (version, name, applied_at) VALUES (?,?,?)"),
            (9999, "future", sink._time(datetime.now(UTC))),
        )
    # When this consumer starts, Then it refuses to run on it, naming both versions
    newest = migrations.load(sink.dialect)[-1].version
    with pytest.raises(migrations.SchemaTooNew, match=rf"9999.*\({newest}\)"):
        make_sink(migrate=False).migrate()


# --- idempotency --------------------------------------------------------------------------------


def test_storing_the_same_events_twice_is_a_no_op(sink: SqlSink) -> None:
    # Given a batch of one call's events, stored once
    scenario = SCENARIOS[0]
    batch = stored(scenario.events)
    sink.store(batch, [])
    before = call_row(sink, scenario.events[0].provider, scenario.events[0].call_id or "")
    outbox = count(sink, "outbox")
    # When the same batch arrives again (a redelivery), duplicated within itself too
    sink.store(batch + batch, [])
    # Then no row is added anywhere and the calls row is unchanged but for updated_at
    after = call_row(sink, scenario.events[0].provider, scenario.events[0].call_id or "")
    assert count(sink, "call_events") == len({e.event_id for e in scenario.events})
    assert count(sink, "outbox") == outbox == len({e.event_id for e in scenario.events})
    assert before is not None
    assert after is not None
    assert {**before, "updated_at": None} == {**after, "updated_at": None}


def test_the_first_copy_of_an_event_is_kept(sink: SqlSink) -> None:
    # Given an event stored from one queue message
    e = event("call.ended", "moor7", "c-1", 10, outcome="busy")
    sink.store(stored([e], queue="first"), [])
    # When the same event_id comes again from another message
    sink.store(stored([e], queue="second"), [])
    # Then the stored row still names the first message
    rows = query(
        sink, "SELECT queue, message_id FROM call_events WHERE event_id = ?", (e.event_id,)
    )
    assert rows == [("first", f"m-{e.event_id}")]


def test_events_are_stored_with_their_payload_and_delivery(sink: SqlSink) -> None:
    # Given an event with refs, extras and a payload with Chinese text
    e = event("call.record", "aliyun_vms", "c^1", 5, refs={"task_id": "t1"}, extras={"dtmf": "12#"})
    item = StoredEvent(
        Normalized(e, {"status_msg": "执行完成", "n": [1, 2]}), "q1", "msg-9", at(99)
    )
    # When it is stored
    sink.store([item], [])
    # Then every normalized field, the payload and the delivery columns read back unchanged
    rows = query(
        sink,
        "SELECT payload, queue, message_id, received_at FROM call_events WHERE event_id = ?",
        (e.event_id,),
    )
    payload, queue, message_id, received_at = rows[0]
    assert sink._from_json(payload) == {"status_msg": "执行完成", "n": [1, 2]}
    assert (queue, message_id, sink._from_time(received_at)) == ("q1", "msg-9", at(99))
    pending = sink.outbox_pending("test-forwarder", 10)
    assert [p.event for p in pending] == [e]


# --- dead letters -------------------------------------------------------------------------------


def test_a_dead_letter_keeps_its_raw_bytes(sink: SqlSink) -> None:
    # Given a message that is not even UTF-8
    raw = bytes(range(256))
    # When it is quarantined
    sink.store([], [letter(payload=raw)])
    # Then it is listed with its bytes exactly as received
    (row,) = sink.dead_letters()
    assert row.payload == raw
    assert (row.queue, row.message_id, row.reason, row.attempts) == (
        "vms-voice-report",
        "m-1",
        "not_json",
        1,
    )
    assert row.first_seen == row.last_seen == datetime(2024, 1, 1, tzinfo=UTC)


def test_the_same_dead_letter_again_updates_its_row(sink: SqlSink) -> None:
    # Given a quarantined message
    sink.store([], [letter(attempts=3)])
    # When it is quarantined again later, with another error (and once more, out of order)
    later = datetime(2024, 1, 2, tzinfo=UTC)
    sink.store([], [letter(attempts=4, error="second try", seen_at=later)])
    sink.store(
        [], [letter(attempts=2, error="late echo", seen_at=datetime(2023, 12, 31, tzinfo=UTC))]
    )
    # Then there is still one row: attempts and last_seen only grow, the newest error is shown
    (row,) = sink.dead_letters()
    assert row.attempts == 4
    assert row.first_seen == datetime(2023, 12, 31, tzinfo=UTC)
    assert row.last_seen == later
    assert row.error == "late echo"


def test_one_batch_may_carry_the_same_dead_letter_twice(sink: SqlSink) -> None:
    # Given a batch in which the same message was quarantined twice
    first = letter(attempts=1)
    second = letter(attempts=2, seen_at=datetime(2024, 1, 3, tzinfo=UTC), error="again")
    # When it is stored
    sink.store([], [second, first])
    # Then it makes one row with the newer state
    (row,) = sink.dead_letters()
    assert (row.attempts, row.error, row.last_seen) == (2, "again", second.seen_at)


def test_dead_letters_by_id_and_discard(sink: SqlSink) -> None:
    # Given three dead letters
    sink.store([], [letter(f"m-{n}") for n in range(3)])
    ids = [row.id for row in sink.dead_letters()]
    # When one is asked for by id, and another is discarded after a replay
    chosen = sink.dead_letters([ids[1]])
    sink.discard_dead_letters([ids[0]])
    # Then the listing follows
    assert [row.message_id for row in chosen] == ["m-1"]
    assert [row.message_id for row in sink.dead_letters()] == ["m-1", "m-2"]
    assert sink.dead_letters([9_999_999]) == []


# --- atomicity ----------------------------------------------------------------------------------


def test_a_refused_batch_commits_nothing(sink: SqlSink) -> None:
    # Given a batch of good events and one dead letter the database cannot hold
    scenario = SCENARIOS[1]
    bad = letter(attempts=2**70)
    # When it is stored, Then it is refused data (the pipeline isolates it), not transient
    with pytest.raises(RejectedData) as raised:
        sink.store(stored(scenario.events), [letter("ok"), bad])
    assert isinstance(raised.value.__cause__, OverflowError | psycopg.DataError)
    # And nothing of the batch was committed: no event, no call, no outbox row, no letter
    for table in ("call_events", "calls", "outbox", "dead_letters"):
        assert count(sink, table) == 0, table
    # And the sink keeps working
    sink.store(stored(scenario.events), [letter("ok")])
    assert count(sink, "calls") == 1


def test_an_error_half_way_rolls_back_the_events(
    sink: SqlSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sink that fails after inserting the events, while merging the calls
    def broken(*args: object) -> None:
        raise RuntimeError("merge exploded")

    monkeypatch.setattr(sink, "_recompute_calls", broken)
    # When a batch is stored
    with pytest.raises(RuntimeError, match="merge exploded"):
        sink.store(stored(SCENARIOS[2].events), [])
    # Then the inserted events were rolled back with it
    assert count(sink, "call_events") == 0


# --- the calls merge ----------------------------------------------------------------------------


def _assert_row(sink: SqlSink, scenario: Scenario, call_id: str) -> dict[str, Any]:
    provider = scenario.events[0].provider
    row = call_row(sink, provider, call_id)
    assert row is not None, f"no calls row for {scenario.name}"
    for name, expected in scenario.expected.items():
        assert row[name] == expected, f"{scenario.name}: {name}"
    return row


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_calls_row_of_each_provider_whatever_the_order(sink: SqlSink, scenario: Scenario) -> None:
    # Given one call's events, delivered in several orders, batchings and with duplicates
    rng = random.Random(scenario.name)
    rows = []
    for run in range(4):
        call_id = f"{scenario.name}-run-{run}"
        events = with_call_id(scenario.events, call_id)
        if run == 1:
            events = events[::-1]
        elif run >= 2:
            events = events + rng.sample(events, k=2)
            rng.shuffle(events)
        # When they are stored in batches of one to three events
        position = 0
        while position < len(events):
            size = rng.randint(1, 3)
            sink.store(stored(events[position : position + size]), [])
            position += size
        # Then the calls row is the expected merge
        rows.append(_assert_row(sink, scenario, call_id))
    # And it is the same row every time
    ignore = {"call_id": None, "updated_at": None}
    assert all({**row, **ignore} == {**rows[0], **ignore} for row in rows)


_examples = itertools.count()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=call_events(), data=st.data())
def test_the_stored_row_is_the_full_recompute_over_any_order_and_batching(
    sink: SqlSink, events: list[CallEvent], data: st.DataObject
) -> None:
    # Given two calls with these events (ids of their own in this database)
    example = next(_examples)
    calls = [
        [
            e.model_copy(
                update={"call_id": f"x{example}-{n}", "event_id": f"x{example}-{n}-{e.event_id}"}
            )
            for e in events
        ]
        for n in range(2)
    ]
    # When both are delivered interleaved in a random order, some events twice, in random batches
    everything = calls[0] + calls[1]
    repeats = data.draw(st.lists(st.sampled_from(everything), max_size=4))
    delivered = data.draw(st.permutations(everything + repeats))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(delivered)), max_size=5)))
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        sink.store(stored(delivered[start:end]), [])
    # Then each calls row is what the sort-based recompute makes of all of the call's events
    for call in calls:
        row = call_row(sink, "huawei_privacy", call[0].call_id or "")
        expected = reference.recompute(call)
        if expected is None:
            assert row is None
            continue
        assert row is not None
        assert {k: v for k, v in row.items() if k != "updated_at"} == _columns(expected)


def _columns(row: CallRow) -> dict[str, Any]:
    """A CallRow as `call_row` reads it back from the table."""
    values = {name: getattr(row, name) for name in CALL_COLUMNS if name != "updated_at"}
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}


def test_a_row_from_before_the_merge_state_is_recomputed_once(make_sink: SinkFactory) -> None:
    # Given calls stored by a consumer before migration 0003 (no merge_state column)
    sink = make_sink()
    scenario = SCENARIOS[0]
    events = with_call_id(scenario.events, "legacy")
    sink.store(stored(events[:-1]), [])
    with sink._write() as cur:
        cur.execute("ALTER TABLE calls DROP COLUMN merge_state")
        cur.execute(sink._sql("DELETE FROM schema_version WHERE version = 3"))
    # When this consumer migrates, Then the rows are kept, their merge state not yet
    make_sink().migrate()
    assert query(sink, "SELECT merge_state FROM calls") == [(None,)]
    # When the call's last event arrives
    sink.store(stored(events[-1:]), [])
    # Then the row is recomputed from all of its events, and its state kept from then on
    _assert_row(sink, scenario, "legacy")
    assert query(sink, "SELECT count(*) FROM calls WHERE merge_state IS NULL") == [(0,)]
    row = call_row(sink, scenario.events[0].provider, "legacy")
    assert row is not None
    expected = reference.recompute(events)
    assert expected is not None
    assert {k: v for k, v in row.items() if k != "updated_at"} == _columns(expected)


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        '{"v": 9}',
        '{"v": 1, "n": 1}',
        "[1, 2]",
        '{"v": 1, "n": 1, "k": [], "s": {"caller": [3, "x"]}, "r": {}, "l": null}',
    ],
)
def test_a_damaged_merge_state_is_rebuilt_from_the_events(sink: SqlSink, damage: str) -> None:
    # Given a call whose stored merge state was damaged (by hand, say)
    scenario = SCENARIOS[1]
    events = with_call_id(scenario.events, f"damaged-{len(damage)}")
    sink.store(stored(events[:-1]), [])
    with sink._write() as cur:
        cur.execute(sink._sql("UPDATE calls SET merge_state = ?"), (damage,))
    # When the call's last event arrives, Then the row is recomputed from all of its events
    sink.store(stored(events[-1:]), [])
    row = call_row(sink, events[0].provider, events[0].call_id or "")
    expected = reference.recompute(events)
    assert row is not None
    assert expected is not None
    assert {k: v for k, v in row.items() if k != "updated_at"} == _columns(expected)


def test_events_without_a_call_make_no_calls_row(sink: SqlSink) -> None:
    # Given events of no call (job completed, agent login) and an agent state of a call
    loose = [e for scenario in SCENARIOS for e in scenario.no_call]
    # When they are stored
    sink.store(stored(loose), [])
    # Then they are kept as events, but no call is made of them
    assert count(sink, "call_events") == len(loose)
    assert count(sink, "calls") == 0


def test_concurrent_writers_of_one_call_agree(make_sink: SinkFactory) -> None:
    # Given four workers that each get a share of one call's events at the same time
    scenario = SCENARIOS[0]
    sinks = [make_sink() for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sinks))

    def work(index: int, sink: SqlSink) -> None:
        barrier.wait()
        for round_ in range(10):
            call = f"race-{round_}"
            share = with_call_id(scenario.events, call)[index::4]
            try:
                sink.store(stored(share), [])
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in enumerate(sinks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then every call's row was merged from all of its events
    assert errors == []
    for round_ in range(10):
        _assert_row(sinks[0], scenario, f"race-{round_}")


def test_updated_at_marks_the_last_write(sink: SqlSink) -> None:
    # Given a call stored now
    before = datetime.now(UTC) - timedelta(seconds=1)
    sink.store(stored(SCENARIOS[3].events[:2]), [])
    # Then updated_at is the time of the write, not of the events
    row = call_row(sink, "huawei_privacy", SCENARIOS[3].events[0].call_id or "")
    assert row is not None
    assert before <= row["updated_at"] <= datetime.now(UTC) + timedelta(seconds=1)


def test_an_empty_store_does_nothing(sink: SqlSink) -> None:
    # When nothing is stored, Then nothing happens (and no transaction is needed)
    sink.store([], [])
    assert count(sink, "call_events") == 0


def test_events_for_the_outbox_follow_the_forwarders(make_sink: SinkFactory) -> None:
    # Given a sink with two forwarders and one with none
    two = make_sink(forwarders=["a", "b"])
    none = make_sink()
    e1 = event("call.ringing", "moor7", "c", 1)
    e2 = event("call.ended", "moor7", "c", 2)
    # When each stores an event, and the first one stores it again
    two.store(stored([e1]), [])
    none.store(stored([e2]), [])
    two.store(stored([e1, e2]), [])
    # Then only new events get outbox rows, one per forwarder
    rows = query(two, "SELECT forwarder, event_id FROM outbox ORDER BY id")
    assert rows == [("a", e1.event_id), ("b", e1.event_id)]


def test_event_round_trip_is_exact(sink: SqlSink) -> None:
    # Given an event with every field set
    full = CallEvent(
        event_id="full-1",
        provider="huawei_privacy",
        kind="call.record",
        call_id="s-1",
        occurred_at=at(9.123),
        caller="+861",
        callee="+862",
        direction="inbound",
        started_at=at(0),
        ringing_at=at(1.5),
        answered_at=at(2),
        ended_at=at(9.123),
        duration_seconds=7,
        outcome="answered",
        provider_status="0",
        hangup_by="caller",
        recording_url="https://r",
        correlation_id="biz",
        refs={"icid": "x"},
        extras={"nested": {"a": [1, None, "二"]}, "n": 1.5},
    )
    # When it is stored and read back for a forwarder
    sink.store(stored([full]), [])
    (pending,) = sink.outbox_pending("test-forwarder", 10)
    # Then it is the same event
    assert pending.event == full


def test_a_large_batch_is_stored_in_one_transaction(sink: SqlSink) -> None:
    # Given more events, calls and dead letters than one statement takes
    events = [event("call.ringing", "huawei_voice", f"big-{n}", n) for n in range(450)]
    letters = [letter(f"big-{n}") for n in range(210)]
    # When they are stored at once
    sink.store(stored(events), letters)
    # Then all of it is there
    assert count(sink, "call_events") == 450
    assert count(sink, "calls") == 450
    assert count(sink, "outbox") == 450
    assert len(sink.dead_letters()) == 210
    assert len(sink.dead_letters([row.id for row in sink.dead_letters()])) == 210


# --- push nonces (replay protection of signed pushes) -----------------------------------------


def claimed(message_id: str, key: str, expires_in: float = 300.0) -> NonceClaim:
    return NonceClaim(message_id, "privacy", key, time.time() + expires_in)


def test_a_nonce_is_stored_with_its_events_and_refused_at_another_sink(
    make_sink: SinkFactory,
) -> None:
    # Given a request's events stored with its nonce by one daemon's sink
    first, second = make_sink(), make_sink()
    message = "original"
    original = [
        replace(s, message_id=message) for s in stored(with_call_id(original_events(), "o"))
    ]
    assert first.store_claimed(original, [], [claimed(message, "nonce-1")]) == set()
    # When another daemon's sink gets a forged body (events and a dead letter) under that nonce,
    # in one batch with a fresh request
    forged = [replace(s, message_id="forged") for s in stored(with_call_id(original_events(), "x"))]
    fresh = [replace(s, message_id="fresh") for s in stored(with_call_id(original_events(), "y"))]
    claims = [claimed("forged", "nonce-1"), claimed("fresh", "nonce-2")]
    refused = second.store_claimed([*forged, *fresh], [letter("forged")], claims)
    # Then only the forged request is refused, and nothing of it is stored
    assert refused == {"forged"}
    stored_ids = {row[0] for row in query(first, "SELECT message_id FROM call_events")}
    assert stored_ids == {message, "fresh"}
    assert count(first, "dead_letters") == 0
    assert count(first, "push_nonces") == 2


def original_events() -> list[CallEvent]:
    return SCENARIOS[0].events


def test_one_nonce_twice_in_a_batch_stores_the_first_request_only(sink: SqlSink) -> None:
    # Given two requests in one batch under the same nonce
    a = [replace(s, message_id="a") for s in stored(with_call_id(original_events(), "a"))]
    b = [replace(s, message_id="b") for s in stored(with_call_id(original_events(), "b"))]
    # When they are stored together, Then the second is refused
    assert sink.store_claimed([*a, *b], [], [claimed("a", "n"), claimed("b", "n")]) == {"b"}
    assert {row[0] for row in query(sink, "SELECT message_id FROM call_events")} == {"a"}


def test_an_expired_nonce_is_taken_over_and_purged(sink: SqlSink) -> None:
    # Given a nonce remembered until a moment that has passed
    old = [replace(s, message_id="old") for s in stored(with_call_id(original_events(), "old"))]
    assert sink.store_claimed(old, [], [claimed("old", "n", expires_in=-1)]) == set()
    # When a request brings it again (its Created could no longer pass: the sender re-used it)
    new = [replace(s, message_id="new") for s in stored(with_call_id(original_events(), "new"))]
    # Then it is stored, and the row now expires with the new request
    assert sink.store_claimed(new, [], [claimed("new", "n")]) == set()
    expiry = query(sink, "SELECT expires_at FROM push_nonces WHERE nonce = 'n'")[0][0]
    assert expiry > time.time()
    # And a nonce past its expiry is deleted by the next purge (a minute apart per sink)
    sink.store_claimed([], [], [claimed("gone", "g", expires_in=-1)])
    sink._nonces_purged_at = 0.0
    sink.store_claimed([], [], [claimed("later", "l")])
    assert {row[0] for row in query(sink, "SELECT nonce FROM push_nonces")} == {"n", "l"}


def test_the_write_probe_writes(sink: SqlSink) -> None:
    # Given a working database, When the write probe runs twice, Then it leaves one expired row
    sink.write_probe()
    sink.write_probe()
    assert query(sink, "SELECT expires_at FROM push_nonces") == [(0.0,)]


def test_a_merge_state_beyond_64_bit_integers_reads_back_exactly() -> None:
    # Given a call whose duration does not fit 64 bits (which orjson refuses to write)
    state = MergeState()
    state.fold(event("call.record", "moor7", "big", 1, duration_seconds=10**30))
    # When its state is written and read back, Then the integer is exact
    again = MergeState.from_json(_loads(_dumps_state(state.to_json())))
    assert again == state
    assert again.row("moor7", "big").duration_seconds == 10**30
