"""DescribeJob through the real OutboundBot SDK, against the signature-checking peer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from consumer.formats import aliyun_outbound_bot
from consumer.model import Kind, Outcome
from consumer.reconcile.aliyun_outbound_bot import OutboundBotJob, job_complete_message
from consumer.reconcile.query import QueryError
from consumer.testing.fake_alicom import DESCRIBE_JOB, FakeAlicomServer
from tests.reconcile.peers import AK, INSTANCE, JOB, SK, bot_config, job, owed

CALL = "bot-call-1"


@pytest.fixture
def peer() -> Iterator[FakeAlicomServer]:
    with FakeAlicomServer(accounts={AK: SK}) as server:
        yield server


def test_the_task_of_the_call_becomes_its_record(peer: FakeAlicomServer) -> None:
    # Given the job of the call, with another attempt before it
    peer.add_job(INSTANCE, job(CALL))
    # When the reconciler asks with the ids the call's events carried
    call = owed("aliyun_outbound_bot", CALL, instance_id=INSTANCE, job_id=JOB)
    record = OutboundBotJob(bot_config(peer)).fetch(call)
    # Then the call's own task is its final record: outcome, times, duration
    assert record is not None
    event = record.event
    assert (event.kind, event.call_id, event.outcome) == (Kind.CALL_RECORD, CALL, Outcome.BUSY)
    assert event.started_at == datetime(2024, 5, 1, 2, 1, 0, tzinfo=UTC)
    assert event.ended_at == datetime(2024, 5, 1, 2, 1, 15, tzinfo=UTC)
    assert event.duration_seconds == 15
    assert event.refs["task_id"] == "task-1"
    assert event.extras["source"] == "reconcile"
    [request] = peer.actions(DESCRIBE_JOB)
    assert (request.params["InstanceId"], request.params["JobId"]) == (INSTANCE, JOB)
    assert (request.form, request.status) == ("acs3", 200)


def test_the_record_is_the_same_event_as_the_job_complete_push(peer: FakeAlicomServer) -> None:
    # Given the JobComplete push of the same job
    described = job(CALL)
    peer.add_job(INSTANCE, described)
    message = job_complete_message(described, described["Tasks"][1])
    pushed = aliyun_outbound_bot.parse(json.dumps({**message, "eventTime": 1714528900000}).encode())
    [pushed_record] = [n.event for n in pushed if n.event.call_id == CALL]
    # When the record is fetched
    call = owed("aliyun_outbound_bot", CALL, instance_id=INSTANCE, job_id=JOB)
    record = OutboundBotJob(bot_config(peer)).fetch(call)
    # Then a later push of that task record is the same event
    assert record is not None
    assert record.event.event_id == pushed_record.event_id


@pytest.mark.parametrize("task_status", ["Executing", None])
def test_a_task_still_running_or_missing_is_not_there_yet(
    peer: FakeAlicomServer, task_status: str | None
) -> None:
    described = job(CALL, status="Executing", task_status=task_status or "Busy")
    if task_status is None:
        described["Tasks"] = described["Tasks"][:1]  # the call's attempt is not listed yet
    peer.add_job(INSTANCE, described)
    call = owed("aliyun_outbound_bot", CALL, instance_id=INSTANCE, job_id=JOB)
    assert OutboundBotJob(bot_config(peer)).fetch(call) is None


def test_an_unknown_job_is_not_there_yet(peer: FakeAlicomServer) -> None:
    call = owed("aliyun_outbound_bot", CALL, instance_id=INSTANCE, job_id="no-such-job")
    assert OutboundBotJob(bot_config(peer)).fetch(call) is None
    assert [r.status for r in peer.actions(DESCRIBE_JOB)] == [404]


def test_a_call_without_job_ids_cannot_be_asked(peer: FakeAlicomServer) -> None:
    with pytest.raises(QueryError, match="instance_id and job_id") as failed:
        OutboundBotJob(bot_config(peer)).fetch(owed("aliyun_outbound_bot", CALL))
    assert (failed.value.result, failed.value.retry) == ("error", False)
    assert peer.requests == []


def test_a_wrong_secret_is_an_auth_error(peer: FakeAlicomServer) -> None:
    peer.add_job(INSTANCE, job(CALL))
    call = owed("aliyun_outbound_bot", CALL, instance_id=INSTANCE, job_id=JOB)
    with pytest.raises(QueryError) as refused:
        OutboundBotJob(bot_config(peer, secret="wrong")).fetch(call)
    assert (refused.value.result, refused.value.retry) == ("auth_error", False)
