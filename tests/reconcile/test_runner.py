"""One reconciler pass at a time: states moved, overdue calls asked for, records stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from consumer.config.model import ReconcileConfig
from consumer.formats import aliyun_voice_report
from consumer.model import CallEvent, Kind, Normalized, Provider, event_id
from consumer.reconcile.aliyun_outbound_bot import OutboundBotJob
from consumer.reconcile.aliyun_vms import VmsCallDetail
from consumer.reconcile.metrics import ReconcileMetrics
from consumer.reconcile.query import Query
from consumer.reconcile.runner import Reconciler
from consumer.sinks.base import StoredEvent
from consumer.sinks.reconcile import CallStates
from consumer.sinks.sql import SqlSink
from consumer.sinks.sqlite import SqliteSink
from consumer.testing.fake_alicom import DESCRIBE_JOB, QUERY_CALL_DETAIL, FakeAlicomServer
from tests.reconcile.peers import (
    AK,
    INSTANCE,
    JOB,
    SK,
    VOICE_NOTICE,
    bot_config,
    call_detail,
    job,
    vms_config,
)
from tests.sinks.helpers import call_row

RINGING = datetime(2024, 5, 1, 2, 0, 3, tzinfo=UTC)  # 10:00:03 in Shanghai


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


@pytest.fixture
def peer() -> Iterator[FakeAlicomServer]:
    with FakeAlicomServer(accounts={AK: SK}) as server:
        yield server


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqlSink]:
    sink = SqliteSink(tmp_path / "events.db")
    sink.migrate()
    yield sink
    sink.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def intermediate(provider: str, call_id: str, **fields: object) -> CallEvent:
    return CallEvent(
        event_id=event_id("test", provider, call_id),
        provider=provider,
        kind="call.ringing",
        call_id=call_id,
        occurred_at=RINGING,
        **fields,
    )


def push(sink: SqlSink, *events: CallEvent) -> None:
    now = datetime.now(UTC)
    sink.store([StoredEvent(Normalized(e), "q", f"m-{e.event_id}", now) for e in events], [])


def reconciler(
    sink: SqlSink,
    queries: dict[Provider, Query],
    clock: Clock,
    registry: CollectorRegistry,
    **settings: object,
) -> Reconciler:
    return Reconciler(
        ReconcileConfig.model_validate(settings),
        sink,
        queries,
        metrics=ReconcileMetrics(registry),
        clock=clock,
        initial_backoff=0.001,
        max_backoff=0.002,
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def state(sink: SqlSink, provider: str, call_id: str) -> str | None:
    return CallStates(sink).state(provider, call_id)


def test_an_overdue_call_is_asked_for_and_becomes_final(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given a VMS call with only its ringing event, and a call that already has its record
    push(sink, intermediate("aliyun_vms", "vms-1"))
    final = intermediate("aliyun_vms", "vms-final").model_copy(update={"kind": Kind.CALL_RECORD})
    push(sink, final)
    peer.add_call_detail("vms-1", VOICE_NOTICE, call_detail("vms-1"))
    clock = Clock(RINGING)
    worker = reconciler(
        sink, {Provider.ALIYUN_VMS: VmsCallDetail(vms_config(peer))}, clock, registry
    )
    # When a pass runs within the deadline, Then nothing is asked and the call is open
    assert worker.run_pass() == []
    assert state(sink, "aliyun_vms", "vms-1") == "open"
    assert sample(registry, "consumer_calls_open", provider="aliyun_vms") == 1
    assert sample(registry, "consumer_calls_overdue", provider="moor7") == 0
    # When a pass runs after VMS's 15 minutes
    clock.advance(timedelta(minutes=16))
    [answer] = worker.run_pass() or []
    # Then the overdue call was asked for, once, and is final with the provider's outcome
    assert answer.result == "found"
    assert [r.params["CallId"] for r in peer.actions(QUERY_CALL_DETAIL)] == ["vms-1"]
    row = call_row(sink, "aliyun_vms", "vms-1")
    assert row is not None
    assert state(sink, "aliyun_vms", "vms-1") == "final"
    assert (row["outcome"], row["duration_seconds"]) == ("answered", 30)
    assert row["answered_at"] == datetime(2024, 5, 1, 2, 0, 6, tzinfo=UTC)
    assert row["ended_at"] == datetime(2024, 5, 1, 2, 0, 36, tzinfo=UTC)
    assert (
        sample(registry, "consumer_reconcile_queries_total", provider="aliyun_vms", result="found")
        == 1
    )
    assert sample(registry, "consumer_calls_overdue", provider="aliyun_vms") == 0
    # And the next pass asks nothing
    assert worker.run_pass() == []
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 1


def test_a_late_push_of_the_record_changes_nothing(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given a call whose record the reconciler fetched
    push(sink, intermediate("aliyun_vms", "vms-2"))
    peer.add_call_detail("vms-2", VOICE_NOTICE, call_detail("vms-2"))
    clock = Clock(RINGING + timedelta(minutes=16))
    worker = reconciler(
        sink, {Provider.ALIYUN_VMS: VmsCallDetail(vms_config(peer))}, clock, registry
    )
    worker.run_pass()
    before = call_row(sink, "aliyun_vms", "vms-2")
    # When the VoiceReport push of the same record arrives after all
    late = aliyun_voice_report.parse(
        b'{"call_id":"vms-2","originate_time":"2024-05-01 10:00:00",'
        b'"ring_time":"2024-05-01 10:00:03","start_time":"2024-05-01 10:00:06",'
        b'"end_time":"2024-05-01 10:00:36","duration":"30","status_code":"200000",'
        b'"caller":"0571000****","callee":"1380000****"}'
    )
    sink.store([StoredEvent(n, "q", "late", datetime.now(UTC)) for n in late], [])
    # Then no field of the calls row changed
    assert call_row(sink, "aliyun_vms", "vms-2") == before


def test_a_call_the_api_never_knows_is_lost_and_no_longer_asked(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given an overdue call the service has no record of
    push(sink, intermediate("aliyun_vms", "vms-ghost"))
    clock = Clock(RINGING + timedelta(minutes=16))
    query = VmsCallDetail(vms_config(peer, prod_ids=[VOICE_NOTICE]))
    worker = reconciler(sink, {Provider.ALIYUN_VMS: query}, clock, registry, give_up_after="12h")
    # When passes run until give_up_after has passed
    [answer] = worker.run_pass() or []
    assert answer.result == "not_found"
    assert state(sink, "aliyun_vms", "vms-ghost") == "overdue"
    clock.advance(timedelta(hours=12))
    assert worker.run_pass() == []
    # Then it was asked once, is lost, counted, and not asked again
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 1
    assert state(sink, "aliyun_vms", "vms-ghost") == "lost"
    assert sample(registry, "consumer_calls_lost_total", provider="aliyun_vms") == 1
    labels = {"provider": "aliyun_vms", "result": "not_found"}
    assert sample(registry, "consumer_reconcile_queries_total", **labels) == 1
    worker.run_pass()
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 1


def test_providers_without_a_query_api_are_only_marked(
    sink: SqlSink, registry: CollectorRegistry
) -> None:
    # Given a Huawei and a 7moor call with intermediate events only
    push(sink, intermediate("huawei_voice", "h-1"), intermediate("moor7", "m-1"))
    clock = Clock(RINGING + timedelta(hours=8))
    worker = reconciler(sink, {}, clock, registry)
    # When a pass runs past both deadlines, Then they are overdue, counted, asked of nobody
    assert worker.run_pass() == []
    assert state(sink, "huawei_voice", "h-1") == "overdue"
    assert state(sink, "moor7", "m-1") == "overdue"
    assert sample(registry, "consumer_calls_overdue", provider="huawei_voice") == 1
    clock.advance(timedelta(hours=72))
    worker.run_pass()
    assert state(sink, "moor7", "m-1") == "lost"
    assert sample(registry, "consumer_calls_lost_total", provider="huawei_voice") == 1


def test_a_started_reconciler_exports_its_counters_at_0(
    sink: SqlSink, registry: CollectorRegistry
) -> None:
    # Given a reconciler with no calls and no query API configured
    worker = reconciler(sink, {}, Clock(RINGING), registry, every="1h")
    # When it starts
    worker.start()
    try:
        # Then every query result of each provider with an API is a series at 0
        for provider in ("aliyun_vms", "aliyun_outbound_bot"):
            for result in ("found", "not_found", "error", "auth_error", "throttled"):
                labels = {"provider": provider, "result": result}
                assert sample(registry, "consumer_reconcile_queries_total", **labels) == 0
        queried = {
            series.labels["provider"]
            for metric in registry.collect()
            for series in metric.samples
            if series.name == "consumer_reconcile_queries_total"
        }
        assert queried == {"aliyun_vms", "aliyun_outbound_bot"}
        # And the lost calls of every provider are at 0
        for member in Provider:
            assert sample(registry, "consumer_calls_lost_total", provider=member.value) == 0
    finally:
        worker.stop(10)


def test_throttling_is_retried_and_counted(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given the service throttles the first request
    push(sink, intermediate("aliyun_vms", "vms-3"))
    peer.add_call_detail("vms-3", VOICE_NOTICE, call_detail("vms-3"))
    peer.answer_next(400, "Throttling.User", "Request was denied due to user flow control.")
    clock = Clock(RINGING + timedelta(minutes=16))
    worker = reconciler(
        sink, {Provider.ALIYUN_VMS: VmsCallDetail(vms_config(peer))}, clock, registry
    )
    # When a pass runs, Then the query is retried and the record stored
    [answer] = worker.run_pass() or []
    assert answer.result == "found"
    for result in ("throttled", "found"):
        labels = {"provider": "aliyun_vms", "result": result}
        assert sample(registry, "consumer_reconcile_queries_total", **labels) == 1


def test_a_signature_failure_is_loud_and_not_retried(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given a wrong secret
    push(sink, intermediate("aliyun_vms", "vms-4"))
    clock = Clock(RINGING + timedelta(minutes=16))
    query = VmsCallDetail(vms_config(peer, secret="wrong"))
    worker = reconciler(sink, {Provider.ALIYUN_VMS: query}, clock, registry)
    # When a pass runs
    with capture_logs() as logs:
        [answer] = worker.run_pass() or []
    # Then it is an auth error, asked once, counted and logged as an error with the reason
    assert answer.result == "auth_error"
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 1
    labels = {"provider": "aliyun_vms", "result": "auth_error"}
    assert sample(registry, "consumer_reconcile_queries_total", **labels) == 1
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert "SignatureDoesNotMatch" in error["reason"]
    assert error["call_id"] == "vms-4"
    assert state(sink, "aliyun_vms", "vms-4") == "overdue"


def test_an_outbound_bot_task_is_fetched_with_the_ids_of_its_events(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given a bot call whose Dialing event named its job
    refs = {"instance_id": INSTANCE, "job_id": JOB, "task_id": "task-1"}
    push(sink, intermediate("aliyun_outbound_bot", "bot-1", refs=refs))
    peer.add_job(INSTANCE, job("bot-1"))
    clock = Clock(RINGING + timedelta(minutes=31))
    query = OutboundBotJob(bot_config(peer))
    worker = reconciler(sink, {Provider.ALIYUN_OUTBOUND_BOT: query}, clock, registry)
    # When a pass runs
    [answer] = worker.run_pass() or []
    # Then the task is the call's final record
    assert answer.result == "found"
    assert [(r.params["InstanceId"], r.params["JobId"]) for r in peer.actions(DESCRIBE_JOB)] == [
        (INSTANCE, JOB)
    ]
    row = call_row(sink, "aliyun_outbound_bot", "bot-1")
    assert row is not None
    assert (row["outcome"], row["duration_seconds"]) == ("busy", 15)
    assert state(sink, "aliyun_outbound_bot", "bot-1") == "final"


def test_one_reconciler_at_a_time(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry, tmp_path: Path
) -> None:
    # Given two reconcilers on one database, the first holding the lease
    clock = Clock(RINGING)
    first = reconciler(sink, {}, clock, registry)
    other_sink = SqliteSink(tmp_path / "events.db")
    second = reconciler(other_sink, {}, clock, CollectorRegistry())
    assert first.states.claim("reconciler", first.owner, clock(), 60)
    # When the second runs a pass, Then it does nothing but publish the counts
    assert second.run_pass() is None
    first.states.release("reconciler", first.owner, clock())
    assert second.run_pass() == []
    other_sink.close()


def test_a_call_found_past_give_up_after_is_asked_once_before_it_is_lost(
    sink: SqlSink, peer: FakeAlicomServer, registry: CollectorRegistry
) -> None:
    # Given a call silent for longer than give_up_after already (the daemon was down)
    push(sink, intermediate("aliyun_vms", "vms-late"))
    clock = Clock(RINGING + timedelta(hours=100))
    query = VmsCallDetail(vms_config(peer, prod_ids=[VOICE_NOTICE]))
    worker = reconciler(sink, {Provider.ALIYUN_VMS: query}, clock, registry)
    # When the first pass runs, Then it is overdue and asked for
    [answer] = worker.run_pass() or []
    assert (answer.call.call_id, answer.result) == ("vms-late", "not_found")
    assert state(sink, "aliyun_vms", "vms-late") == "overdue"
    # And the next pass gives it up
    assert worker.run_pass() == []
    assert state(sink, "aliyun_vms", "vms-late") == "lost"
