"""The `recordings` rows: written with the events that name them, one per recording, leased
by one archiver at a time (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.model import CallEvent
from consumer.sinks.recordings import RecordingTable
from consumer.sinks.sql import SqlSink
from tests.sinks.scenarios import event, stored

LINK = "https://vms-record.example.aliyuncs.com/rec/100.mp3"


def _ready(call_id: str, url: str, seconds: float, **extras: str) -> CallEvent:
    return event(
        "recording.ready", "aliyun_vms", call_id, seconds, recording_url=url, extras=extras
    )


def test_an_event_naming_a_recording_adds_one_pending_row(sink: SqlSink) -> None:
    # Given a recording.ready event with a link
    sink.store(stored([_ready("c1", LINK + "?Expires=1&Signature=a", 1)]), [])
    # When the table is read
    rows = RecordingTable(sink).rows()
    # Then there is one pending row with the link as its source
    assert [(r.provider, r.call_id, r.status, r.attempts) for r in rows] == [
        ("aliyun_vms", "c1", "pending", 0)
    ]
    assert rows[0].source == LINK + "?Expires=1&Signature=a"


def test_the_same_recording_named_twice_is_one_row(sink: SqlSink) -> None:
    # Given the same link re-signed (another query) in two events, in two transactions
    sink.store(stored([_ready("c1", LINK + "?Signature=a", 1)]), [])
    sink.store(stored([_ready("c1", LINK + "?Signature=b", 2)]), [])
    # And a Huawei object named by two fee records of one call
    huawei = [
        event(
            "call.record",
            "huawei_privacy",
            "s1",
            seconds,
            extras={"recordDomain": "obs.example.com", "recordObjectName": "a.wav"},
        )
        for seconds in (1, 2)
    ]
    sink.store(stored(huawei), [])
    # Then there is one row per recording
    rows = RecordingTable(sink).rows()
    assert sorted(r.source for r in rows) == [LINK + "?Signature=a", "obs.example.com/a.wav"]


def test_another_call_with_the_same_link_is_another_row(sink: SqlSink) -> None:
    # Given one link named by two calls
    sink.store(stored([_ready("c1", LINK, 1), _ready("c2", LINK, 1)]), [])
    # Then each call has its row
    assert sorted(r.call_id or "" for r in RecordingTable(sink).rows()) == ["c1", "c2"]


def test_a_lease_is_held_by_one_archiver_until_it_lapses(sink: SqlSink) -> None:
    # Given two pending rows
    sink.store(stored([_ready("c1", LINK, 1), _ready("c2", LINK, 1)]), [])
    table = RecordingTable(sink)
    # When archiver a claims them
    claimed = table.claim("a", now=1000.0, lease=10.0, limit=5)
    # Then b gets nothing while the lease holds, and both once it has lapsed
    assert [r.attempts for r in claimed] == [1, 1]
    assert table.claim("b", now=1005.0, lease=10.0, limit=5) == []
    again = table.claim("b", now=1011.0, lease=10.0, limit=5)
    assert [r.id for r in again] == [r.id for r in claimed]
    assert [r.attempts for r in again] == [2, 2]


def test_archived_points_the_call_at_the_object(sink: SqlSink) -> None:
    # Given a call with a recording, leased
    sink.store(stored([_ready("c1", LINK, 1)]), [])
    table = RecordingTable(sink)
    (row,) = table.claim("a", now=1.0, lease=10.0, limit=1)
    # When it is archived by its lease holder
    done = table.archived(
        "a",
        row,
        uri="file:///r/x.mp3",
        sha256="ab" * 32,
        size=5,
        content_type="audio/mpeg",
        now=datetime.now(UTC),
    )
    # Then the row and the call point at the object
    assert done
    (after,) = table.rows()
    assert (after.status, after.archive_uri, after.bytes) == ("archived", "file:///r/x.mp3", 5)
    with sink._read() as cur:
        cur.execute(sink._sql("SELECT recording_archive_uri FROM calls WHERE call_id = 'c1'"))
        assert cur.fetchall()[0][0] == "file:///r/x.mp3"


def test_a_lost_lease_cannot_archive(sink: SqlSink) -> None:
    # Given a row leased by a, whose lease lapsed and was taken by b
    sink.store(stored([_ready("c1", LINK, 1)]), [])
    table = RecordingTable(sink)
    (row,) = table.claim("a", now=1.0, lease=1.0, limit=1)
    table.claim("b", now=5.0, lease=10.0, limit=1)
    # When a finishes late, Then its result is not taken
    assert not table.archived(
        "a", row, uri="u", sha256="s", size=1, content_type=None, now=datetime.now(UTC)
    )
    assert table.rows()[0].status == "pending"


def test_retry_puts_final_failures_back_in_line(sink: SqlSink) -> None:
    # Given one expired and one archived-pending row
    sink.store(stored([_ready("c1", LINK, 1), _ready("c2", LINK, 1)]), [])
    table = RecordingTable(sink)
    first, _ = table.claim("a", now=1.0, lease=10.0, limit=2)
    table.ended("a", first.id, "expired", "HTTP 404", 404)
    # When all are retried
    moved = table.retry()
    # Then only the expired one moved, with a fresh budget
    assert moved == [first.id]
    again = {r.id: r for r in table.rows()}[first.id]
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, "HTTP 404")
    assert table.pending_counts() == {"aliyun_vms": 2}
