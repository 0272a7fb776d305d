"""QueryCallDetailByCallId through the real Dyvmsapi SDK, against the signature-checking peer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from consumer.formats import aliyun_voice_report
from consumer.model import Kind, Outcome
from consumer.reconcile.aliyun_vms import VmsCallDetail
from consumer.reconcile.query import QueryError
from consumer.testing.fake_alicom import QUERY_CALL_DETAIL, FakeAlicomServer
from tests.reconcile.peers import AK, IVR, SK, VOICE_NOTICE, call_detail, owed, vms_config

CALL = "100002233401^100002478812"
# Midnight 2024-05-01 in Shanghai, in epoch ms: the call's day.
DAY = int(datetime(2024, 4, 30, 16, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def peer() -> Iterator[FakeAlicomServer]:
    with FakeAlicomServer(accounts={AK: SK}) as server:
        yield server


def test_the_call_detail_becomes_the_voice_report_record(peer: FakeAlicomServer) -> None:
    # Given the service knows the call under the voice notification product
    peer.add_call_detail(CALL, VOICE_NOTICE, call_detail(CALL))
    # When the reconciler asks for it
    record = VmsCallDetail(vms_config(peer)).fetch(owed("aliyun_vms", CALL))
    # Then it is the call's final record, times converted from Asia/Shanghai to UTC
    assert record is not None
    event = record.event
    assert (event.kind, event.call_id, event.outcome) == (Kind.CALL_RECORD, CALL, Outcome.ANSWERED)
    assert event.started_at == datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)
    assert event.ringing_at == datetime(2024, 5, 1, 2, 0, 3, tzinfo=UTC)
    assert event.answered_at == datetime(2024, 5, 1, 2, 0, 6, tzinfo=UTC)
    assert event.ended_at == datetime(2024, 5, 1, 2, 0, 36, tzinfo=UTC)
    assert event.duration_seconds == 30
    assert event.extras["source"] == "reconcile"
    assert record.payload == {"QueryCallDetailByCallId": call_detail(CALL)}
    # And it went out once, with the call's day as QueryDate and the SDK's signed form
    [request] = peer.actions(QUERY_CALL_DETAIL)
    assert request.params["CallId"] == CALL
    assert (request.params["ProdId"], request.params["QueryDate"]) == (str(VOICE_NOTICE), str(DAY))
    assert (request.form, request.status) == ("acs3", 200)


def test_the_record_is_the_same_event_as_the_voice_report_push(peer: FakeAlicomServer) -> None:
    # Given the VoiceReport push of the same call
    pushed = aliyun_voice_report.normalize(
        {
            "call_id": CALL,
            "originate_time": "2024-05-01 10:00:00",
            "ring_time": "2024-05-01 10:00:03",
            "start_time": "2024-05-01 10:00:06",
            "end_time": "2024-05-01 10:00:36",
            "duration": "30",
            "status_code": "200000",
            "caller": "0571000****",
            "callee": "1380000****",
        }
    )
    peer.add_call_detail(CALL, VOICE_NOTICE, call_detail(CALL))
    # When the record is fetched
    record = VmsCallDetail(vms_config(peer)).fetch(owed("aliyun_vms", CALL))
    # Then it has the push's event id, and so a later push of it is a duplicate
    assert record is not None
    assert record.event.event_id == pushed.event_id
    fields = ("outcome", "started_at", "answered_at", "ended_at", "duration_seconds", "caller")
    assert {f: getattr(record.event, f) for f in fields} == {f: getattr(pushed, f) for f in fields}


def test_product_ids_are_tried_in_order_until_one_has_data(peer: FakeAlicomServer) -> None:
    # Given a call placed through IVR, and both products configured, voice notice first
    peer.add_call_detail(
        CALL, IVR, call_detail(CALL, state="200003", stateDesc="无人接听", duration=0)
    )
    query = VmsCallDetail(vms_config(peer, prod_ids=[VOICE_NOTICE, IVR]))
    # When asked for
    record = query.fetch(owed("aliyun_vms", CALL))
    # Then the empty answer of the first product is "not there", and the second one's is used
    assert record is not None
    assert record.event.outcome is Outcome.NO_ANSWER
    assert record.event.answered_at is None
    assert [r.params["ProdId"] for r in peer.actions(QUERY_CALL_DETAIL)] == [
        str(VOICE_NOTICE),
        str(IVR),
    ]


def test_no_data_yet_is_not_an_error(peer: FakeAlicomServer) -> None:
    # Given a call the service does not know (yet), When asked for, Then there is no record
    assert VmsCallDetail(vms_config(peer)).fetch(owed("aliyun_vms", CALL)) is None
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 5  # every documented product was tried


def test_a_wrong_secret_is_an_auth_error_that_is_not_retried(peer: FakeAlicomServer) -> None:
    # Given a wrong AccessKey secret
    query = VmsCallDetail(vms_config(peer, secret="wrong"))
    # When asking, Then the peer refuses the signature and the client says so
    with pytest.raises(QueryError) as refused:
        query.fetch(owed("aliyun_vms", CALL))
    assert (refused.value.result, refused.value.retry) == ("auth_error", False)
    assert "SignatureDoesNotMatch" in refused.value.reason
    assert [r.code for r in peer.actions(QUERY_CALL_DETAIL)] == ["SignatureDoesNotMatch"]


@pytest.mark.parametrize(
    ("status", "code", "result", "retry"),
    [
        (400, "Throttling.User", "throttled", True),
        (503, "ServiceUnavailable", "error", True),
        (200, "isv.InvalidParameter", "error", False),
    ],
)
def test_failures_say_whether_a_retry_may_help(
    peer: FakeAlicomServer, status: int, code: str, result: str, retry: bool
) -> None:
    # Given the service answers with a failure
    peer.answer_next(status, code)
    # When asked, Then the failure is classified
    with pytest.raises(QueryError) as failed:
        VmsCallDetail(vms_config(peer)).fetch(owed("aliyun_vms", CALL))
    assert (failed.value.result, failed.value.retry) == (result, retry)
    assert code in failed.value.reason
