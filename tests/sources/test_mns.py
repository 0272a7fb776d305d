"""The MNS source against the fake MNS (and fake Alicom), through the real SDK over sockets."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.config.model import AccessKeyAuth, AlicomTokenAuth, MnsConfig, StsAuth
from consumer.errors import TransientError
from consumer.sources.base import Message, Source
from consumer.sources.mns import MnsHandle, MnsSource
from consumer.testing.fake_alicom import FakeAlicomServer
from consumer.testing.fake_mns import FakeMnsServer
from tests.conformance import bodies
from tests.conformance.conftest import store  # noqa: F401 - the suite's sink fixture
from tests.conformance.harness import Rig
from tests.conformance.suite import SourceConformance

QUEUE = "Alicom-Queue-1234567890-VoiceReport"
AK, SK = "LTAIown", "own-secret"


@pytest.fixture
def mns() -> Iterator[FakeMnsServer]:
    with FakeMnsServer(seed=3) as server:
        server.create_queue(QUEUE, visibility_timeout=7)
        server.add_credentials(AK, SK)
        yield server


def config(mns: FakeMnsServer, wait_seconds: int = 1) -> MnsConfig:
    return MnsConfig(
        endpoint=mns.endpoint,
        queue=QUEUE,
        auth=AccessKeyAuth(mode="access_key", access_key_id=AK, access_key_secret=SecretStr(SK)),
        wait_seconds=wait_seconds,
    )


@pytest.fixture
def source(mns: FakeMnsServer) -> Iterator[MnsSource]:
    opened = MnsSource(config(mns), name="vms-voice-report")
    yield opened
    opened.close()


def handle(message: Message) -> MnsHandle:
    assert isinstance(message.handle, MnsHandle)
    return message.handle


def test_is_a_source(source: MnsSource) -> None:
    assert isinstance(source, Source)


def test_receive_returns_raw_bodies_with_delivery_counts(
    mns: FakeMnsServer, source: MnsSource
) -> None:
    # Given a base64 body (as Alicom sends), raw JSON, and a body that is not base64
    mns.put_message(QUEUE, b'{"call_id":"1"}')
    mns.put_message(QUEUE, '{"call_id":"2","status_msg":"用户挂机"}')
    mns.put_message(QUEUE, "%%% not base64")
    # When
    messages = source.receive(16, 1)
    # Then every body arrives as the bytes that were queued, undecoded
    assert [m.body for m in messages] == [
        b"eyJjYWxsX2lkIjoiMSJ9",
        '{"call_id":"2","status_msg":"用户挂机"}'.encode(),
        b"%%% not base64",
    ]
    assert [m.delivery_count for m in messages] == [1, 1, 1]
    assert [m.id for m in messages] == [s.id for s in mns.messages(QUEUE)]
    assert source.visibility_timeout == pytest.approx(7.0)
    assert mns.requests[-1].query == {"numOfMessages": "16", "waitseconds": "1"}


def test_receive_caps_batch_and_wait_at_the_server_maxima(
    mns: FakeMnsServer, source: MnsSource
) -> None:
    for _ in range(20):
        mns.put_message(QUEUE, "x")
    assert len(source.receive(100, 60)) == 16
    assert mns.requests[-1].query == {"numOfMessages": "16", "waitseconds": "1"}


def test_empty_queue_gives_an_empty_list(source: MnsSource) -> None:
    assert source.receive(16, 1) == []


def test_immediate_message_not_exist_pauses_instead_of_spinning(
    mns: FakeMnsServer, source: MnsSource
) -> None:
    # Given MNS answering MessageNotExist at once (too many concurrent long polls)
    mns.fail_next(1, 404, "MessageNotExist")
    started = time.monotonic()
    # When / Then: no messages, but the call did not return immediately
    assert source.receive(16, 1) == []
    assert time.monotonic() - started >= 0.5
    assert len(mns.requests) == 1


def test_ack_deletes_in_batches_of_16(mns: FakeMnsServer, source: MnsSource) -> None:
    # Given 17 received messages: a batch of 16, and one deleted on its own
    for _ in range(17):
        mns.put_message(QUEUE, "x")
    messages = source.receive(16, 0) + source.receive(16, 0)
    mns.clear_requests()
    source.ack(messages)
    assert mns.stats(QUEUE).total == 0
    assert [(r.method, "ReceiptHandle" in r.query) for r in mns.requests] == [
        ("DELETE", False),
        ("DELETE", True),
    ]


def test_ack_of_a_stale_handle_does_not_raise(mns: FakeMnsServer, source: MnsSource) -> None:
    mns.put_message(QUEUE, "x")
    [message] = source.receive(16, 0)
    source.ack([message])
    source.ack([message])  # acknowledged twice: MessageNotExist, logged as redelivery
    assert mns.stats(QUEUE).total == 0


def test_ack_whose_answer_was_lost_does_not_raise(mns: FakeMnsServer, source: MnsSource) -> None:
    # Given MNS deleting two messages but losing the answer (the SDK re-sends, gets errors)
    mns.put_message(QUEUE, "a")
    mns.put_message(QUEUE, "b")
    messages = source.receive(16, 0)
    mns.lose_answer_next()
    # When / Then: the re-send's per-handle MessageNotExist is taken as done
    source.ack(messages)
    assert mns.stats(QUEUE).total == 0


def test_partial_batch_delete_is_judged_per_handle(mns: FakeMnsServer, source: MnsSource) -> None:
    # Given three received messages: one already deleted, one MNS fails to delete
    for body in ("a", "b", "c"):
        mns.put_message(QUEUE, body)
    a, b, c = source.receive(16, 0)
    source.ack([a])
    mns.fail_delete_of([handle(b).receipt_handle])
    # When all three are acknowledged
    with pytest.raises(TransientError, match="1 of 3 messages not deleted"):
        source.ack([a, b, c])
    # Then the good one is gone, the stale one is ignored, the failing one was retried alone
    assert [m.id for m in mns.messages(QUEUE)] == [b.id]
    deletes = [r for r in mns.requests if r.method == "DELETE"]
    assert deletes[-1].query == {"ReceiptHandle": handle(b).receipt_handle}
    mns.reset_faults()
    source.ack([b])
    assert mns.stats(QUEUE).total == 0


def test_extend_keeps_the_newest_handle(mns: FakeMnsServer, source: MnsSource) -> None:
    mns.put_message(QUEUE, "x")
    [message] = source.receive(16, 0)
    first = handle(message).receipt_handle
    before = time.time()
    source.extend([message], 60)
    assert handle(message).receipt_handle != first
    assert handle(message).next_visible_time == pytest.approx((before + 60) * 1000, abs=1000)
    assert mns.messages(QUEUE)[0].next_visible_time == handle(message).next_visible_time
    source.ack([message])
    assert mns.stats(QUEUE).total == 0


def test_extend_and_reject_take_more_than_16_messages(
    mns: FakeMnsServer, source: MnsSource
) -> None:
    # Given 20 received messages (a group commit handles several receives as one batch)
    for _ in range(20):
        mns.put_message(QUEUE, "x")
    messages = source.receive(16, 0) + source.receive(16, 0)
    before = time.time()
    # When all are extended, then all rejected
    source.extend(messages, 60)
    extended = {m.id: m.next_visible_time for m in mns.messages(QUEUE)}
    source.reject(messages, 120)
    # Then each was changed both times: none left at its old visibility
    assert len(messages) == 20
    assert all(t == pytest.approx((before + 60) * 1000, abs=1000) for t in extended.values())
    assert all(
        m.next_visible_time == pytest.approx((before + 120) * 1000, abs=1000)
        for m in mns.messages(QUEUE)
    )


def test_reject_redelivers_after_the_delay(mns: FakeMnsServer, source: MnsSource) -> None:
    mns.put_message(QUEUE, "x")
    [message] = source.receive(16, 0)
    source.reject([message], 0.2)  # rounded up to MNS's minimum of 1 s
    assert source.receive(16, 0) == []
    [again] = source.receive(16, 3)
    assert (again.id, again.delivery_count) == (message.id, 2)


def test_extend_of_a_lapsed_message_does_not_raise(mns: FakeMnsServer) -> None:
    mns.create_queue("short", visibility_timeout=1)
    short = MnsSource(config(mns).model_copy(update={"queue": "short"}))
    mns.put_message("short", "x")
    [message] = short.receive(16, 0)
    time.sleep(1.1)
    short.extend([message], 30)  # ReceiptHandleError: logged, left to redelivery
    assert mns.stats("short").visible == 1
    short.close()


def test_broker_failures_are_transient(mns: FakeMnsServer, source: MnsSource) -> None:
    mns.put_message(QUEUE, "x")
    mns.fail_next(1, 500, "InternalError")
    with pytest.raises(TransientError, match="InternalError"):
        source.receive(16, 0)
    mns.drop_next(2)
    with pytest.raises(TransientError, match="NetWorkException"):
        source.receive(16, 0)
    [message] = source.receive(16, 0)
    mns.drop_next(2)
    with pytest.raises(TransientError):
        source.ack([message])
    mns.fail_next(1, 503, "ServiceUnavailable")
    with pytest.raises(TransientError, match="ServiceUnavailable"):
        source.extend([message], 10)
    source.ack([message])
    assert mns.stats(QUEUE).total == 0


def test_every_request_has_a_socket_timeout(mns: FakeMnsServer) -> None:
    slow = MnsSource(config(mns, wait_seconds=0), request_timeout=0.5)
    mns.set_faults(response_delay=1.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        slow.receive(16, 0)
    assert time.monotonic() - started < 1.4
    slow.close()


def test_request_timeout_must_outlast_the_long_poll(mns: FakeMnsServer) -> None:
    with pytest.raises(ValueError, match="must exceed the long-poll wait"):
        MnsSource(config(mns, wait_seconds=30), request_timeout=30)


def test_refused_credentials_are_transient(mns: FakeMnsServer) -> None:
    wrong = config(mns).model_copy(
        update={
            "auth": AccessKeyAuth(
                mode="access_key", access_key_id=AK, access_key_secret=SecretStr("wrong")
            )
        }
    )
    with pytest.raises(TransientError, match="SignatureDoesNotMatch"):
        MnsSource(wrong).receive(16, 0)


def test_alicom_token_mode_end_to_end_with_a_revoked_token(mns: FakeMnsServer) -> None:
    with FakeAlicomServer(mns, accounts={"LTAIcustomer": "secret"}) as alicom:
        auth = AlicomTokenAuth(
            message_type="VoiceReport",
            access_key_id="LTAIcustomer",
            access_key_secret=SecretStr("secret"),
            token_endpoint=alicom.endpoint,
        )
        source = MnsSource(config(mns).model_copy(update={"auth": auth}))
        mns.put_message(QUEUE, "a")
        mns.put_message(QUEUE, "b")
        [a] = source.receive(1, 0)
        # When MNS stops accepting the token, the source refreshes it and carries on
        mns.revoke_credentials(alicom.issued[0].access_key_id)
        [b] = source.receive(1, 0)
        source.ack([a, b])
        assert (a.body, b.body) == (b"a", b"b")
        assert len(alicom.issued) == 2
        assert mns.stats(QUEUE).total == 0
        # And a token endpoint that refuses is a transient source failure with its reason
        mns.revoke_credentials(alicom.issued[1].access_key_id)
        alicom.answer_next(200, "isv.SYSTEM_ERROR", "system busy", count=2)
        with pytest.raises(TransientError, match=r"isv\.SYSTEM_ERROR"):
            source.receive(1, 0)
        source.close()


def test_closed_source_refuses_work(mns: FakeMnsServer) -> None:
    source = MnsSource(config(mns))
    source.close()
    with pytest.raises(TransientError, match="closed"):
        source.receive(16, 0)


class MnsHarness:
    """The conformance suite's view of a fresh queue on the fake MNS."""

    receive_wait = 0.0

    def __init__(self) -> None:
        self.mns = FakeMnsServer().start()
        self.mns.create_queue(QUEUE, visibility_timeout=30)
        self.mns.add_credentials(AK, SK)

    def publish(self, body: bytes) -> None:
        # MNS bodies are XML text: bytes that are not UTF-8 cannot travel raw.
        self.mns.put_message(QUEUE, body.decode("utf-8"))

    def open(self) -> MnsSource:
        return MnsSource(config(self.mns, wait_seconds=0))

    def expire_in_flight(self) -> None:
        self.mns.expire_in_flight(QUEUE)

    def drained(self) -> bool:
        return self.mns.stats(QUEUE).total == 0

    def close(self) -> None:
        self.mns.stop()


class TestMnsSourceConformance(SourceConformance):
    @pytest.fixture
    def harness(self) -> Iterator[MnsHarness]:
        harness = MnsHarness()
        yield harness
        harness.close()

    def test_poison_messages_are_quarantined_with_their_bytes_and_acknowledged(
        self, rig: Rig
    ) -> None:
        """MNS variant: a non-UTF-8 body can only arrive base64-encoded (MNS carries text),
        so the quarantined payload is that text, exactly as received."""
        # Given a truncated JSON body and base64 of bytes that are not UTF-8, between good ones
        encoded = base64.b64encode(bodies.NOT_UTF8)
        rig.harness.publish(bodies.voice_report(1))
        rig.harness.publish(bodies.NOT_JSON)
        rig.harness.publish(encoded)
        rig.harness.publish(bodies.voice_report(2))
        # When the pipeline drains the queue
        rig.drain(rig.harness.open())
        # Then the good ones are stored, the bad ones kept as received, and nothing is left
        assert len(rig.store.event_ids()) == 2
        letters = rig.store.sink.dead_letters()
        assert sorted(letter.payload for letter in letters) == sorted([bodies.NOT_JSON, encoded])
        assert all(letter.attempts == 1 for letter in letters)
        assert rig.harness.drained()


def test_visibility_is_estimated_from_redeliveries_until_a_first_delivery(
    mns: FakeMnsServer,
) -> None:
    # Given a queue with a 5 s visibility that holds only a redelivered message
    mns.create_queue("five", visibility_timeout=5)
    mns.put_message("five", "old")
    first = MnsSource(config(mns).model_copy(update={"queue": "five"}))
    first.receive(16, 0)
    first.close()
    mns.expire_in_flight("five")
    source = MnsSource(config(mns).model_copy(update={"queue": "five"}))
    assert source.visibility_timeout == 30.0  # the MNS default, before anything is known
    # When it is received again, the budget comes from its NextVisibleTime
    [again] = source.receive(16, 0)
    assert again.delivery_count == 2
    assert source.visibility_timeout == pytest.approx(5.0, abs=0.5)
    source.close()


def test_sts_mode_sends_the_security_token(mns: FakeMnsServer) -> None:
    # Given STS credentials that MNS knows, and a copy with the wrong token
    mns.add_credentials("STS.key", "sts-secret", "CAIStoken")
    auth = StsAuth(
        mode="sts",
        access_key_id="STS.key",
        access_key_secret=SecretStr("sts-secret"),
        security_token=SecretStr("CAIStoken"),
    )
    mns.put_message(QUEUE, "x")
    source = MnsSource(config(mns).model_copy(update={"auth": auth}))
    # When / Then: the token travels in `security-token` and the receive succeeds
    [message] = source.receive(16, 0)
    source.ack([message])
    assert {(r.access_key_id, r.security_token) for r in mns.requests} == {("STS.key", "CAIStoken")}
    source.close()
    wrong = auth.model_copy(update={"security_token": SecretStr("CAISold")})
    stale = MnsSource(config(mns).model_copy(update={"auth": wrong}))
    mns.clear_requests()
    # And a refused static token is a transient failure, not retried (nothing to refresh)
    with pytest.raises(TransientError, match="InvalidSecurityToken"):
        stale.receive(16, 0)
    assert len(mns.requests) == 1
    stale.close()


def test_https_endpoint_gets_a_socket_timeout_too() -> None:
    # Given an HTTPS endpoint (the SDK builds its HTTPS connection without any timeout)
    https = MnsConfig(
        endpoint="https://1943695596114318.mns.cn-hangzhou.aliyuncs.com/",
        queue=QUEUE,
        auth=AccessKeyAuth(mode="access_key", access_key_id=AK, access_key_secret=SecretStr(SK)),
        wait_seconds=30,
    )
    # When the source is opened (nothing is sent yet)
    source = MnsSource(https)
    # Then its connection carries the long poll plus 10 s, read by http.client on connect
    http = source._account.mns_client.http
    assert http.is_https
    assert http.conn.timeout == 40.0
    source.close()


def test_stale_delete_is_logged_as_a_redelivery(mns: FakeMnsServer, source: MnsSource) -> None:
    # Given a message whose visibility lapsed while it was being handled
    mns.put_message(QUEUE, "x")
    [message] = source.receive(16, 0)
    mns.expire_in_flight(QUEUE)
    # When it is acknowledged with its old handle
    with capture_logs() as logs:
        source.ack([message])
    # Then nothing is raised, the log says it comes back, and it does
    [line] = [entry for entry in logs if "will be redelivered" in entry["event"]]
    assert (line["code"], line["messages"]) == ("ReceiptHandleError", 1)
    assert line["queue"] == "vms-voice-report"
    [again] = source.receive(16, 0)
    assert (again.id, again.delivery_count) == (message.id, 2)


def test_concurrent_use_of_one_source_is_serialized(mns: FakeMnsServer, source: MnsSource) -> None:
    # Given 64 messages and a source used from two threads at once (a keepalive thread
    # extending while the worker settles), whose single SDK connection is not thread-safe
    for n in range(64):
        mns.put_message(QUEUE, f"m{n}")
    errors: list[BaseException] = []
    done: list[Message] = []

    def consume() -> None:
        try:
            while len(done) < 64:
                got = source.receive(4, 0)
                source.extend(got, 30)
                source.ack(got)
                done.extend(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(2)]
    # When both run
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    # Then no request was garbled and every message was deleted exactly once
    assert errors == []
    assert sorted(m.body for m in done) == sorted(f"m{n}".encode() for n in range(64))
    assert mns.stats(QUEUE).total == 0
    assert all(r.code is None for r in mns.requests if r.method in ("DELETE", "PUT"))


def test_an_ack_does_not_wait_for_a_long_poll_in_progress(
    mns: FakeMnsServer, source: MnsSource
) -> None:
    # Given a received message, and a 1 s long poll on the empty queue in another thread
    mns.put_message(QUEUE, "x")
    [message] = source.receive(16, 0)
    poll = threading.Thread(target=source.receive, args=(16, 1))
    poll.start()
    time.sleep(0.2)
    # When the message is acknowledged meanwhile
    started = time.monotonic()
    source.ack([message])
    took = time.monotonic() - started
    poll.join()
    # Then the delete went through the source's second connection without waiting
    assert source.concurrent_settle is True
    assert took < 0.5
    assert mns.stats(QUEUE).total == 0
