"""The fake MNS server, driven by the real aliyun-mns-sdk 1.3.0 over real sockets."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, Queue

from consumer.testing.fake_mns import EXPIRED_TOKEN_CODE, FakeMnsServer, ManualClock, sign

QUEUE = "Alicom-Queue-1234567890-VoiceReport"
AK, SK = "LTAIfake", "fake-secret"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def mns(clock: ManualClock) -> Iterator[FakeMnsServer]:
    with FakeMnsServer(clock=clock, seed=7) as server:
        server.create_queue(QUEUE, visibility_timeout=30)
        server.add_credentials(AK, SK)
        yield server


def open_queue(
    mns: FakeMnsServer, key_id: str = AK, secret: str = SK, token: str = "", name: str = QUEUE
) -> Queue:
    queue = Account(mns.endpoint, key_id, secret, token).get_queue(name)
    queue.set_encoding(False)
    return queue


@pytest.fixture
def queue(mns: FakeMnsServer) -> Queue:
    return open_queue(mns)


def test_signature_matches_the_documented_test_vectors() -> None:
    # Given the inputs of sdk-notes.md 3.3
    headers = {"date": "Thu, 07 Mar 2012 18:49:58 GMT", "x-mns-version": "2015-06-06"}
    body_headers = {
        **headers,
        "content-md5": "Mjc4N2VjMjllZGM3NzRmOTJmNTY1ZGY2YTMyMjA5ZmM=",
        "content-type": "text/xml;charset=UTF-8",
    }
    # When / Then
    resource = f"/queues/{'Alicom-Queue-123-VoiceReport'}/messages"
    assert sign("testsecret", "GET", resource + "?waitseconds=3", headers) == (
        "WVHVl58xCapUKWc/WkFLNQJRy14="
    )
    assert sign("testsecret", "DELETE", resource, body_headers) == "Ua71Samh5ee45dId5fgGjy8HBHo="


def test_send_then_batch_receive_returns_at_most_16_with_all_fields(
    mns: FakeMnsServer, queue: Queue
) -> None:
    # Given 20 messages, one sent through the SDK and 19 loaded directly as base64
    sent = queue.send_message(Message('{"call_id": "1^2", "note": "<&>"}'))
    for i in range(19):
        mns.put_message(QUEUE, f'{{"n": {i}}}'.encode())
    # When
    first = queue.batch_receive_message(16, 1)
    second = queue.batch_receive_message(16, 1)
    # Then
    assert [len(first), len(second)] == [16, 4]
    head = first[0]
    assert head.message_id == sent.message_id
    assert head.message_body == '{"call_id": "1^2", "note": "<&>"}'
    assert head.dequeue_count == 1
    assert head.enqueue_time <= head.first_dequeue_time < head.next_visible_time
    assert head.next_visible_time - head.first_dequeue_time == pytest.approx(30_000, abs=50)
    assert first[1].message_body == "eyJuIjogMH0="  # stored as base64, returned untouched
    assert all("+" in m.receipt_handle and "/" in m.receipt_handle for m in first)
    assert mns.stats(QUEUE).in_flight == 20


def test_long_poll_returns_as_soon_as_a_message_arrives(mns: FakeMnsServer, queue: Queue) -> None:
    # Given an empty queue and a message that arrives 0.3 s into a 5 s long poll
    timer = threading.Timer(0.3, mns.put_message, args=(QUEUE, "late"))
    timer.start()
    started = time.monotonic()
    # When
    messages = queue.batch_receive_message(16, 5)
    # Then
    elapsed = time.monotonic() - started
    timer.join()
    assert [m.message_body for m in messages] == ["late"]
    assert elapsed < 4.0
    assert mns.requests[-1].query == {"numOfMessages": "16", "waitseconds": "5"}


def test_empty_queue_answers_message_not_exist_after_the_wait(queue: Queue) -> None:
    started = time.monotonic()
    with pytest.raises(MNSServerException) as caught:
        queue.batch_receive_message(16, 1)
    assert caught.value.type == "MessageNotExist"
    assert caught.value.request_id
    assert time.monotonic() - started >= 0.9
    with pytest.raises(MNSServerException, match="MessageNotExist"):
        queue.receive_message(0)


def test_unsettled_message_is_redelivered_with_a_higher_dequeue_count(
    mns: FakeMnsServer, queue: Queue
) -> None:
    # Given a queue whose visibility timeout is 1 s and a message received once
    mns.create_queue("short", visibility_timeout=1)
    short = open_queue(mns, name="short")
    mns.put_message("short", "body")
    first = short.receive_message(0)
    assert mns.stats("short").in_flight == 1
    # When it is neither deleted nor extended, and the long poll outlasts the visibility
    again = short.receive_message(3)
    # Then it comes back with the same identity and a new handle
    assert again.message_id == first.message_id
    assert again.dequeue_count == 2
    assert again.enqueue_time == first.enqueue_time
    assert again.first_dequeue_time == first.first_dequeue_time
    assert again.receipt_handle != first.receipt_handle
    with pytest.raises(MNSServerException) as caught:
        short.delete_message(first.receipt_handle)
    assert caught.value.type == "ReceiptHandleError"
    short.delete_message(again.receipt_handle)
    assert mns.messages("short") == []


def test_receipt_handles_are_single_use(mns: FakeMnsServer, queue: Queue) -> None:
    # Given a received message
    mns.put_message(QUEUE, "x")
    received = queue.receive_message(0)
    # When it is deleted twice
    queue.delete_message(received.receipt_handle)
    with pytest.raises(MNSServerException) as caught:
        queue.delete_message(received.receipt_handle)
    # Then the second delete fails as on MNS, and unknown handles are ReceiptHandleError
    assert caught.value.type == "MessageNotExist"
    with pytest.raises(MNSServerException, match="ReceiptHandleError"):
        queue.delete_message("1-bm90LWEtaGFuZGxl")
    assert mns.stats(QUEUE).total == 0


def test_delete_after_the_visibility_lapsed_is_refused(mns: FakeMnsServer) -> None:
    mns.create_queue("short", visibility_timeout=1)
    short = open_queue(mns, name="short")
    mns.put_message("short", "x")
    received = short.receive_message(0)
    time.sleep(1.1)
    with pytest.raises(MNSServerException, match="ReceiptHandleError"):
        short.delete_message(received.receipt_handle)
    assert mns.stats("short").visible == 1


def test_batch_delete_reports_each_failed_handle_and_deletes_the_rest(
    mns: FakeMnsServer, queue: Queue
) -> None:
    # Given three received messages, one of whose handles went stale
    for body in ("a", "b", "c"):
        mns.put_message(QUEUE, body)
    a, b, c = queue.batch_receive_message(16, 0)
    renewed = queue.change_message_visibility(b.receipt_handle, 60)
    # When all three old handles are deleted in one batch
    with pytest.raises(MNSServerException) as caught:
        queue.batch_delete_message([a.receipt_handle, b.receipt_handle, c.receipt_handle])
    # Then the error names only the stale handle, and the others are gone
    assert caught.value.type == "ReceiptHandleError"
    assert caught.value.sub_errors == [
        {
            "ErrorCode": "ReceiptHandleError",
            "ErrorMessage": "The receipt handle you provide is not valid.",
            "ReceiptHandle": b.receipt_handle,
        }
    ]
    assert [m.id for m in mns.messages(QUEUE)] == [b.message_id]
    assert mns.requests[-1].status == 404  # the documented status of a partial failure
    queue.batch_delete_message([renewed.receipt_handle])
    assert mns.messages(QUEUE) == []


def test_batch_delete_marks_a_transient_per_handle_failure(
    mns: FakeMnsServer, queue: Queue
) -> None:
    mns.put_message(QUEUE, "a")
    mns.put_message(QUEUE, "b")
    a, b = queue.batch_receive_message(16, 0)
    mns.fail_delete_of([a.receipt_handle])
    with pytest.raises(MNSServerException) as caught:
        queue.batch_delete_message([a.receipt_handle, b.receipt_handle])
    assert [e["ErrorCode"] for e in caught.value.sub_errors] == ["InternalError"]
    assert [m.id for m in mns.messages(QUEUE)] == [a.message_id]


def test_change_visibility_returns_a_new_handle_and_retires_the_old(
    mns: FakeMnsServer, queue: Queue
) -> None:
    mns.put_message(QUEUE, "x")
    received = queue.receive_message(0)
    before = time.time()
    changed = queue.change_message_visibility(received.receipt_handle, 120)
    assert changed.receipt_handle != received.receipt_handle
    assert isinstance(changed.next_visible_time, str)  # an SDK quirk the source must handle
    assert int(changed.next_visible_time) == pytest.approx((before + 120) * 1000, abs=500)
    with pytest.raises(MNSServerException, match="ReceiptHandleError"):
        queue.change_message_visibility(received.receipt_handle, 10)
    assert mns.messages(QUEUE)[0].dequeue_count == 1  # a visibility change is no delivery
    queue.delete_message(changed.receipt_handle)
    assert mns.stats(QUEUE).total == 0


def test_change_visibility_to_one_second_redelivers_soon(mns: FakeMnsServer, queue: Queue) -> None:
    mns.put_message(QUEUE, "x")
    received = queue.receive_message(0)
    queue.change_message_visibility(received.receipt_handle, 1)
    again = queue.receive_message(3)
    assert again.dequeue_count == 2


def test_bad_secret_unknown_key_and_missing_queue_are_refused(mns: FakeMnsServer) -> None:
    mns.put_message(QUEUE, "x")
    cases = [
        (open_queue(mns, secret="wrong"), "SignatureDoesNotMatch"),
        (open_queue(mns, key_id="nobody"), "InvalidAccessKeyId"),
        (open_queue(mns, name="no-such-queue"), "QueueNotExist"),
    ]
    for queue, code in cases:
        with pytest.raises(MNSServerException) as caught:
            queue.receive_message(0)
        assert caught.value.type == code
    assert [r.status for r in mns.requests] == [403, 403, 404]
    assert mns.stats(QUEUE).visible == 1


def test_sts_token_must_be_sent_and_unexpired(mns: FakeMnsServer, clock: ManualClock) -> None:
    # Given STS credentials valid for 60 s on the shared clock, limited to one queue
    mns.add_credentials(
        "STS.a", "sts-secret", "CAIS-token", expires_at=clock() + 60, queues=[QUEUE]
    )
    mns.create_queue("other")
    mns.put_message(QUEUE, "x")
    # When / Then: the right token works, a wrong one or another queue does not
    assert open_queue(mns, "STS.a", "sts-secret", "CAIS-token").receive_message(0).message_body
    assert mns.requests[-1].security_token == "CAIS-token"
    with pytest.raises(MNSServerException, match="InvalidSecurityToken"):
        open_queue(mns, "STS.a", "sts-secret", "CAIS-other").receive_message(0)
    with pytest.raises(MNSServerException, match="AccessDenied"):
        open_queue(mns, "STS.a", "sts-secret", "CAIS-token", name="other").receive_message(0)
    # And once the clock passes the expiry, the token is refused
    clock.advance(61)
    with pytest.raises(MNSServerException) as caught:
        open_queue(mns, "STS.a", "sts-secret", "CAIS-token").receive_message(0)
    assert caught.value.type == EXPIRED_TOKEN_CODE
    assert mns.requests[-1].status == 403


def test_fail_next_and_error_rate_answer_5xx(mns: FakeMnsServer, queue: Queue) -> None:
    mns.put_message(QUEUE, "x")
    mns.fail_next(1, 503, "ServiceUnavailable")
    with pytest.raises(MNSServerException, match="ServiceUnavailable"):
        queue.receive_message(0)
    mns.set_faults(error_rate=1.0)
    with pytest.raises(MNSServerException, match="InternalError"):
        queue.receive_message(0)
    mns.set_faults(error_rate=0.0)
    assert queue.receive_message(0).dequeue_count == 1  # the failed calls consumed nothing
    assert [r.status for r in mns.requests] == [503, 500, 200]


def test_error_rate_is_a_fraction(mns: FakeMnsServer, queue: Queue) -> None:
    for _ in range(40):
        mns.put_message(QUEUE, "x")
    mns.set_faults(error_rate=0.5)
    outcomes = []
    for _ in range(40):
        try:
            queue.receive_message(0)
            outcomes.append("ok")
        except MNSServerException as exc:
            outcomes.append(exc.type)
    assert 5 < outcomes.count("InternalError") < 35
    assert set(outcomes) == {"ok", "InternalError"}
    with pytest.raises(ValueError, match="error_rate"):
        mns.set_faults(error_rate=1.5)


def test_one_dropped_connection_is_resent_by_the_sdk_two_raise(
    mns: FakeMnsServer, queue: Queue
) -> None:
    mns.put_message(QUEUE, "x")
    # Given one drop: the SDK re-sends once (sdk-notes.md 2.3 item 9)
    mns.drop_next(1)
    received = queue.receive_message(0)
    assert [r.status for r in mns.requests] == [None, 200]
    # Given two drops in a row: the SDK gives up
    mns.drop_next(2)
    with pytest.raises(MNSClientNetworkException) as caught:
        queue.delete_message(received.receipt_handle)
    assert caught.value.type == "NetWorkException"
    assert mns.stats(QUEUE).in_flight == 1  # a dropped request is never applied
    queue.delete_message(received.receipt_handle)  # the next call reconnects
    assert mns.stats(QUEUE).total == 0


def test_slow_answer_trips_the_client_timeout(mns: FakeMnsServer) -> None:
    account = Account(mns.endpoint, AK, SK)
    account.mns_client.set_connection_timeout(0.3)
    queue = account.get_queue(QUEUE)
    mns.set_faults(response_delay=1.0)
    with pytest.raises(MNSClientNetworkException) as caught:
        queue.receive_message(0)
    assert caught.value.type == "NetWorkException"
    assert "timed out" in caught.value.message


def test_damaged_answer_is_resp_data_damaged(mns: FakeMnsServer, queue: Queue) -> None:
    mns.put_message(QUEUE, "x")
    mns.damage_next()
    with pytest.raises(MNSClientNetworkException) as caught:
        queue.batch_receive_message(16, 0)
    assert caught.value.type == "RespDataDamaged"


def test_deny_next_answers_access_denied(mns: FakeMnsServer, queue: Queue) -> None:
    mns.deny_next()
    with pytest.raises(MNSServerException, match="AccessDenied"):
        queue.receive_message(0)


def test_server_limits_are_enforced(queue: Queue) -> None:
    with pytest.raises(MNSServerException, match="InvalidArgument"):
        queue.batch_receive_message(17, 0)
    with pytest.raises(MNSServerException, match="InvalidArgument"):
        queue.batch_receive_message(16, 31)


def test_bodies_are_delivered_verbatim_without_encoding(mns: FakeMnsServer, queue: Queue) -> None:
    # Given raw JSON, Chinese text and text that is not base64
    bodies = ['[{"status_msg":"用户挂机"}]', "not base64 !!", "eyJhIjoxfQ=="]
    for body in bodies:
        mns.put_message(QUEUE, body)
    # When / Then
    assert [m.message_body for m in queue.batch_receive_message(16, 0)] == bodies


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK deprecates message counts
def test_batch_send_and_queue_attributes(mns: FakeMnsServer, queue: Queue) -> None:
    queue.batch_send_message([Message("a"), Message("b", delay_seconds=60)])
    attributes = queue.get_attributes()
    assert attributes.queue_name == QUEUE
    assert attributes.visibility_timeout == 30
    assert (mns.stats(QUEUE).visible, mns.stats(QUEUE).delayed) == (1, 1)
    assert queue.peek_message().message_body == "a"


def test_knobs_change_while_a_long_poll_runs(mns: FakeMnsServer, queue: Queue) -> None:
    # Given a long poll in progress
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(queue.receive_message(3).message_body))
    worker.start()
    time.sleep(0.2)
    # When a fault is set and a message arrives meanwhile
    mns.fail_next(1)
    mns.put_message(QUEUE, "x")
    worker.join(5)
    # Then the poll in progress is answered, and the fault hits the next request
    assert result == ["x"]
    with pytest.raises(MNSServerException, match="InternalError"):
        queue.receive_message(0)


def test_stop_ends_long_polls_and_frees_the_port(clock: ManualClock) -> None:
    server = FakeMnsServer(clock=clock).start()
    server.create_queue(QUEUE)
    server.add_credentials(AK, SK)
    queue = open_queue(server)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            queue.receive_message(20)
        except Exception as exc:
            errors.append(exc)

    worker = threading.Thread(target=poll)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    worker.join(5)
    assert not worker.is_alive()
    assert time.monotonic() - started < 3
    assert len(errors) == 1
    server.stop()  # idempotent


def test_command_line_runner_serves_until_sigterm() -> None:
    # Given the emulator started as a developer would
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.testing.fake_mns", "--queue", QUEUE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().split()[-1]
        # When a client uses the printed endpoint and the default key
        queue = Account(endpoint, "LTAIlocal", "local-secret").get_queue(QUEUE)
        queue.set_encoding(False)
        queue.send_message(Message("hello"))
        assert queue.receive_message(0).message_body == "hello"
    finally:
        process.send_signal(signal.SIGTERM)
        # Then SIGTERM stops it cleanly
        assert process.wait(10) == 0


def test_a_lost_delete_answer_shows_as_message_not_exist(mns: FakeMnsServer, queue: Queue) -> None:
    # Given a received message, and MNS losing its answer to the delete
    mns.put_message(QUEUE, "x")
    received = queue.receive_message(0)
    mns.lose_answer_next()
    # When the SDK deletes (and re-sends on the dropped connection)
    with pytest.raises(MNSServerException) as caught:
        queue.delete_message(received.receipt_handle)
    # Then the first attempt did delete, and the re-send found nothing
    assert caught.value.type == "MessageNotExist"
    assert [r.status for r in mns.requests][-2:] == [204, 404]
    assert mns.stats(QUEUE).total == 0
