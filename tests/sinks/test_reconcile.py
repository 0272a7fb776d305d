"""Call states kept by the store transaction, and the reconciler's statements (both databases)."""

from __future__ import annotations

import pytest

from consumer.reconcile.rules import State
from consumer.sinks.reconcile import CallStates
from consumer.sinks.sql import SqlSink
from tests.sinks.conftest import SinkFactory
from tests.sinks.helpers import query
from tests.sinks.scenarios import SCENARIOS, Scenario, at, event, stored


def state(sink: SqlSink, provider: str, call_id: str) -> tuple[str, object]:
    [(value, final_at)] = query(
        sink,
        "SELECT state, final_at FROM calls WHERE provider = ? AND call_id = ?",
        (provider, call_id),
    )
    return str(value), final_at


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_call_is_final_once_its_final_record_is_stored(sink: SqlSink, scenario: Scenario) -> None:
    # Given a provider's call: its intermediate events first
    finals = {"call.record"} | ({"call.ended"} if scenario.name == "aliyun_outbound_bot" else set())
    calls = [e for e in scenario.events if e.call_id is not None]
    provider, call_id = calls[0].provider.value, str(calls[0].call_id)
    early = [e for e in calls if e.kind.value not in finals]
    late = [e for e in calls if e.kind.value in finals]
    assert late, "every provider's scenario has a final record"
    sink.store(stored(early), [])
    # Then the call is open
    assert state(sink, provider, call_id) == ("open", None)
    # When the final record is stored
    sink.store(stored(late), [])
    # Then the call is final, with the time it became so
    value, final_at = state(sink, provider, call_id)
    assert value == "final"
    assert final_at is not None


def test_a_late_final_record_closes_an_overdue_or_lost_call(make_sink: SinkFactory) -> None:
    sink = make_sink()
    states = CallStates(sink)
    # Given two VMS calls with only a ringing event, one overdue and one lost
    for call_id in ("c-overdue", "c-lost"):
        sink.store(stored([event("call.ringing", "aliyun_vms", call_id, 0)]), [])
    assert states.mark_overdue("aliyun_vms", at(60)) == 2
    assert states.mark_lost("aliyun_vms", at(60)) == ["c-lost", "c-overdue"]
    sink.store(stored([event("call.ringing", "aliyun_vms", "c-overdue", 1)]), [])
    # (a newer intermediate event does not reopen a lost call)
    assert state(sink, "aliyun_vms", "c-overdue")[0] == "lost"
    # When their final records arrive late
    for call_id in ("c-overdue", "c-lost"):
        sink.store(stored([event("call.record", "aliyun_vms", call_id, 30, outcome="busy")]), [])
    # Then both are final
    assert state(sink, "aliyun_vms", "c-overdue")[0] == "final"
    assert state(sink, "aliyun_vms", "c-lost")[0] == "final"


def test_a_newer_intermediate_event_reopens_an_overdue_call(make_sink: SinkFactory) -> None:
    sink = make_sink()
    states = CallStates(sink)
    # Given an overdue call
    sink.store(stored([event("call.ringing", "moor7", "m1", 0)]), [])
    states.mark_overdue("moor7", at(10))
    assert [c.call_id for c in states.overdue("moor7")] == ["m1"]
    # When another intermediate event of it arrives
    sink.store(stored([event("call.answered", "moor7", "m1", 20)]), [])
    # Then its deadline counts again from that event
    assert state(sink, "moor7", "m1")[0] == "open"
    assert states.mark_overdue("moor7", at(10)) == 0
    assert states.mark_overdue("moor7", at(30)) == 1


def test_deadlines_are_per_provider_and_final_calls_never_move(make_sink: SinkFactory) -> None:
    sink = make_sink()
    states = CallStates(sink)
    # Given an open VMS call, an open Huawei call and a final VMS call, all silent since t=0
    sink.store(stored([event("call.ringing", "aliyun_vms", "v-open", 0)]), [])
    sink.store(stored([event("call.ringing", "huawei_voice", "h-open", 0)]), [])
    sink.store(stored([event("call.record", "aliyun_vms", "v-final", 0)]), [])
    # When only VMS's deadline has passed
    assert states.mark_overdue("aliyun_vms", at(1)) == 1
    assert states.mark_overdue("huawei_voice", at(0)) == 0
    # Then only the open VMS call is overdue, and the counts say so
    assert [c.call_id for c in states.overdue()] == ["v-open"]
    assert states.counts() == {("aliyun_vms", "overdue"): 1, ("huawei_voice", "open"): 1}
    past = states.past_deadline({"aliyun_vms": at(1), "huawei_voice": at(1)})
    assert [(c.provider, c.call_id, c.state) for c in past] == [
        ("aliyun_vms", "v-open", "overdue"),
        ("huawei_voice", "h-open", "open"),
    ]
    assert state(sink, "aliyun_vms", "v-final")[0] == State.FINAL


def test_one_lease_holder_at_a_time(make_sink: SinkFactory) -> None:
    # Given two reconcilers on one database
    one, two = CallStates(make_sink()), CallStates(make_sink())
    # When the first takes the lease, Then the second cannot until it is released or expires
    assert one.claim("reconciler", "a", now=100.0, lease=60.0)
    assert not two.claim("reconciler", "b", now=101.0, lease=60.0)
    assert one.claim("reconciler", "a", now=102.0, lease=60.0)  # renewing
    assert not two.claim("reconciler", "b", now=161.0, lease=60.0)
    assert two.claim("reconciler", "b", now=163.0, lease=60.0)  # a's lease ran out
    two.release("reconciler", "b", now=170.0)
    assert one.claim("reconciler", "a", now=171.0, lease=60.0)


def test_the_migration_backfills_calls_that_have_their_final_record(
    make_sink: SinkFactory,
) -> None:
    # Given a database at version 1 with a final and an open call
    sink = make_sink()
    sink.store(stored([event("call.record", "huawei_voice", "h1", 0)]), [])
    sink.store(stored([event("call.ringing", "huawei_voice", "h2", 0)]), [])
    # (dropping what 0005 added stands for a database migrated before it)
    with sink._write() as cur:
        cur.execute("DROP INDEX calls_state")
        cur.execute("ALTER TABLE calls DROP COLUMN state")
        cur.execute("ALTER TABLE calls DROP COLUMN final_at")
        cur.execute("DROP TABLE reconcile_state")
        cur.execute(sink._sql("DELETE FROM schema_version WHERE version = ?"), (5,))
    # When the migration runs
    sink.migrate()
    # Then the call with its fee record is final and the other open
    assert state(sink, "huawei_voice", "h1")[0] == "final"
    assert state(sink, "huawei_voice", "h2") == ("open", None)


def test_one_batch_closes_one_call_and_reopens_another(make_sink: SinkFactory) -> None:
    sink = make_sink()
    states = CallStates(sink)
    # Given two overdue calls of one provider
    sink.store(stored([event("call.ringing", "moor7", c, 0) for c in ("a", "b")]), [])
    assert states.mark_overdue("moor7", at(10)) == 2
    # When one batch brings a newer intermediate event of one and the final record of the other
    sink.store(
        stored([event("call.answered", "moor7", "a", 20), event("call.record", "moor7", "b", 30)]),
        [],
    )
    # Then the first is open again and the second final, with the time it became so
    assert state(sink, "moor7", "a") == ("open", None)
    value, final_at = state(sink, "moor7", "b")
    assert value == "final"
    assert final_at is not None
