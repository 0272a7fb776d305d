"""The fake RocketMQ proxy, driven by the real rocketmq-python-client 5.x over a real socket.

The client is imported inside a fixture with `HOME` pointing at a temporary directory: its
import creates `$HOME/logs/rocketmq_python/` (sdk-notes.md 5.5). Every client made here is shut
down in teardown, including the message-decode pool the client itself never shuts down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

TOPIC = "CallEvents"
GROUP = "GID_calls"


@pytest.fixture
def fake(rmq: SimpleNamespace) -> Iterator[Any]:
    """A started fake with the proxy's minimums lifted, so second-long durations work."""
    with rmq.fake.FakeRocketMQ(limits=rmq.fake.ProxyLimits.relaxed()) as server:
        yield server


def _release(client: Any) -> None:
    if client.is_running:
        client.shutdown()
    # The consumer's decode pool is never shut down by the client (sdk-notes.md 5.5 #2).
    pool = getattr(client, "_Consumer__message_decode_executor", None)
    if pool is not None:
        pool.shutdown(wait=True)


@pytest.fixture
def clients(rmq: SimpleNamespace) -> Iterator[SimpleNamespace]:
    """Factories for started real clients; all are shut down after the test.

    The client needs an event loop in the calling thread, which an earlier test's `asyncio.run`
    may have left without one: the same guard the source applies before it receives.
    """
    rmq.source.ensure_event_loop()
    made: list[Any] = []
    c = rmq.client

    def config(server: Any, credentials: tuple[str, str], namespace: str, timeout: int) -> Any:
        return c.ClientConfiguration(
            server.endpoint,
            c.Credentials(*credentials),
            namespace=namespace,
            request_timeout=timeout,
        )

    def consumer(
        server: Any,
        *,
        group: str = GROUP,
        tags: str = "*",
        await_duration: int = 1,
        credentials: tuple[str, str] = ("", ""),
        namespace: str = "",
        request_timeout: int = 3,
    ) -> Any:
        simple = c.SimpleConsumer(
            config(server, credentials, namespace, request_timeout),
            group,
            {TOPIC: c.FilterExpression(tags)},
            await_duration=await_duration,
            tls_enable=False,
        )
        simple.startup()
        made.append(simple)
        return simple

    def producer(
        server: Any, *, credentials: tuple[str, str] = ("", ""), namespace: str = ""
    ) -> Any:
        p = c.Producer(config(server, credentials, namespace, 3), (TOPIC,))
        p.startup()
        made.append(p)
        return p

    def send(p: Any, body: bytes, tag: str | None = None, key: str | None = None) -> str:
        m = c.Message()
        m.topic = TOPIC
        m.body = body
        if tag:
            m.tag = tag
        if key:
            m.keys = key
        m.add_property("vendor", "aliyun")
        return str(p.send(m).message_id)

    yield SimpleNamespace(consumer=consumer, producer=producer, send=send)
    for client in made:
        _release(client)


def _receive_until(consumer: Any, count: int, invisible: int, tries: int = 5) -> list[Any]:
    got: list[Any] = []
    for _ in range(tries):
        got += consumer.receive(32, invisible)
        if len(got) >= count:
            break
    return got


# -- produce and consume -------------------------------------------------------------------------


def test_producer_publishes_and_consumer_receives_in_batches(
    fake: Any, clients: SimpleNamespace
) -> None:
    # Given five messages sent by the real Producer
    producer = clients.producer(fake)
    ids = [clients.send(producer, f"event {i}".encode(), tag="CallFinished") for i in range(5)]
    assert [m.message_id for m in fake.messages(TOPIC)] == ids

    # When a SimpleConsumer receives with a batch size of 3
    consumer = clients.consumer(fake)
    first = consumer.receive(3, 5)
    second = consumer.receive(3, 5)

    # Then it gets 3 then 2 messages, intact, first delivery, each with a receipt handle
    assert len(first) == 3
    assert len(second) == 2
    got = first + second
    assert [m.message_id for m in got] == ids
    assert [m.body for m in got] == [f"event {i}".encode() for i in range(5)]
    assert {m.tag for m in got} == {"CallFinished"}
    assert all(m.properties == {"vendor": "aliyun"} for m in got)
    assert all(m.delivery_attempt == 1 and m.receipt_handle for m in got)
    assert not any(m.corrupted for m in got)
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, ready=0, in_flight=5)


def fake_stats(fake: Any, **counts: int) -> Any:
    base = {"ready": 0, "in_flight": 0, "acked": 0, "dead_lettered": 0}
    return type(fake.stats(TOPIC, "__nobody__"))(**(base | counts))


def test_ack_settles_for_good(fake: Any, clients: SimpleNamespace) -> None:
    # Given two received messages
    fake.publish(TOPIC, b"a")
    fake.publish(TOPIC, b"b")
    consumer = clients.consumer(fake)
    got = consumer.receive(32, 1)

    # When both are acknowledged and their invisible time passes
    for m in got:
        consumer.ack(m)
    time.sleep(1.1)

    # Then nothing comes back: the long poll ends with no message
    assert consumer.receive(32, 1) == []
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, acked=2)
    assert [c.code for c in fake.calls("AckMessage")] == [20000, 20000]


def test_unacked_message_is_redelivered_with_attempt_2(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    # Given a message received with a 1 s invisible duration and not acknowledged
    message_id = fake.publish(TOPIC, b"call")
    consumer = clients.consumer(fake)
    (first,) = consumer.receive(32, 1)

    # When the invisible time lapses and the consumer receives again
    time.sleep(1.1)
    (again,) = _receive_until(consumer, 1, 5)

    # Then the same message comes back, delivery_attempt 2, with a new receipt handle
    assert again.message_id == first.message_id == message_id
    assert (first.delivery_attempt, again.delivery_attempt) == (1, 2)
    assert again.receipt_handle != first.receipt_handle
    assert fake.delivery_attempts(message_id, TOPIC, GROUP) == 2

    # And the first delivery's handle is stale, the new one settles the message
    with pytest.raises(rmq.exc.BadRequestException) as stale:
        consumer.ack(first)
    assert stale.value.code == 40013  # INVALID_RECEIPT_HANDLE
    consumer.ack(again)
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, acked=1)


def test_expire_in_flight_redelivers_at_once_and_staleness_follows(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    # Given two messages received with a 60 s invisible duration, one of them acknowledged
    fake.publish(TOPIC, b"a")
    fake.publish(TOPIC, b"b")
    consumer = clients.consumer(fake)
    done, held = sorted(_receive_until(consumer, 2, 60), key=lambda m: m.body)
    consumer.ack(done)
    assert fake.in_flight_ids(TOPIC, GROUP) == {held.message_id}

    # When the test lets the in-flight one's invisible time lapse
    assert fake.expire_in_flight(TOPIC, GROUP) == 1

    # Then nothing is in flight, the old handle is stale, and it is delivered again at once
    assert fake.in_flight_ids(TOPIC, GROUP) == set()
    with pytest.raises(rmq.exc.BadRequestException):
        consumer.ack(held)
    (again,) = _receive_until(consumer, 1, 60)
    assert (again.message_id, again.delivery_attempt) == (held.message_id, 2)


def test_ack_after_the_invisible_time_is_refused(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    # Given a message whose invisible time lapsed before the ack (not yet redelivered)
    fake.publish(TOPIC, b"slow")
    consumer = clients.consumer(fake)
    (m,) = consumer.receive(32, 1)
    time.sleep(1.1)

    # When it is acknowledged, Then the handle is expired and the message stays queued
    with pytest.raises(rmq.exc.BadRequestException) as expired:
        consumer.ack(m)
    assert expired.value.code == 40013
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, ready=1)


def test_change_invisible_duration_extends_and_returns_a_new_handle(
    fake: Any, clients: SimpleNamespace
) -> None:
    # Given a message received with a 1 s invisible duration
    fake.publish(TOPIC, b"long job")
    consumer = clients.consumer(fake)
    (m,) = consumer.receive(32, 1)
    old_handle = m.receipt_handle

    # When the consumer extends it to 4 s and waits past the original 1 s
    consumer.change_invisible_duration(m, 4)
    time.sleep(1.1)

    # Then the client holds a new handle, the message stays invisible, the new handle acks
    assert m.receipt_handle
    assert m.receipt_handle != old_handle
    assert consumer.receive(32, 1) == []
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, in_flight=1)
    consumer.ack(m)
    assert fake.stats(TOPIC, GROUP) == fake_stats(fake, acked=1)


def test_change_invisible_duration_to_zero_is_a_nack(fake: Any, clients: SimpleNamespace) -> None:
    # Given a received message
    message_id = fake.publish(TOPIC, b"transient failure")
    consumer = clients.consumer(fake)
    (m,) = consumer.receive(32, 10)

    # When it is given back with a zero invisible duration
    consumer.change_invisible_duration(m, 0)

    # Then it is redelivered at once as attempt 2
    (again,) = consumer.receive(32, 10)
    assert (again.message_id, again.delivery_attempt) == (message_id, 2)


def test_tag_expression_filters_per_group(fake: Any, clients: SimpleNamespace) -> None:
    # Given messages tagged CallFinished, Dialing and untagged
    fake.publish(TOPIC, b"finished", tag="CallFinished")
    fake.publish(TOPIC, b"dialing", tag="Dialing")
    fake.publish(TOPIC, b"untagged")

    # When one group subscribes to "CallFinished || JobComplete" and another to "*"
    picky = clients.consumer(fake, group="GID_picky", tags="CallFinished || JobComplete")
    everything = clients.consumer(fake, group="GID_all")

    # Then each group gets its own copy of what its expression matches
    assert [m.body for m in _receive_until(picky, 1, 5)] == [b"finished"]
    assert picky.receive(32, 5) == []
    assert sorted(m.body for m in _receive_until(everything, 3, 5)) == [
        b"dialing",
        b"finished",
        b"untagged",
    ]


def test_long_poll_returns_when_a_message_arrives(fake: Any, clients: SimpleNamespace) -> None:
    # Given a consumer long-polling for up to 10 s on an empty topic
    consumer = clients.consumer(fake, await_duration=10)
    threading.Timer(0.3, fake.publish, args=(TOPIC, b"late")).start()

    # When a message is published during the poll
    started = time.monotonic()
    got = consumer.receive(32, 5)

    # Then the poll returns it well before the await duration
    assert [m.body for m in got] == [b"late"]
    assert time.monotonic() - started < 8


def test_namespace_isolates_topics(fake: Any, clients: SimpleNamespace) -> None:
    # Given a message sent by a producer in namespace rmq-cn-test
    producer = clients.producer(fake, namespace="rmq-cn-test")
    clients.send(producer, b"namespaced")

    # When consumers with and without the namespace receive
    inside = clients.consumer(fake, namespace="rmq-cn-test")
    outside = clients.consumer(fake, group="GID_other")

    # Then only the namespaced consumer sees it, and the message carries the namespace
    (m,) = _receive_until(inside, 1, 5)
    assert (m.body, m.namespace) == (b"namespaced", "rmq-cn-test")
    assert outside.receive(32, 5) == []
    assert [x.body for x in fake.messages(TOPIC, namespace="rmq-cn-test")] == [b"namespaced"]


def test_gzip_body_is_inflated_and_bad_digest_marks_corrupted(
    fake: Any, clients: SimpleNamespace
) -> None:
    # Given a gzip-encoded message and one whose digest does not match its body
    fake.publish(TOPIC, b"compressed " * 50, gzip_body=True)
    fake.publish(TOPIC, b"damaged", corrupt_digest=True)

    # When they are received
    got = _receive_until(clients.consumer(fake), 2, 5)

    # Then the body is inflated and only the damaged one is flagged corrupted
    assert [(m.body, m.corrupted) for m in got] == [
        (b"compressed " * 50, False),
        (b"damaged", True),
    ]


# -- credentials ---------------------------------------------------------------------------------


def test_right_credentials_are_accepted(rmq: SimpleNamespace, clients: SimpleNamespace) -> None:
    with rmq.fake.FakeRocketMQ(
        credentials=("user", "secret"), limits=rmq.fake.ProxyLimits.relaxed()
    ) as server:
        # Given a fake requiring user/secret and a message sent with them
        producer = clients.producer(server, credentials=("user", "secret"))
        clients.send(producer, b"signed")

        # When a consumer with the same credentials receives
        got = _receive_until(clients.consumer(server, credentials=("user", "secret")), 1, 5)

        # Then it gets the message and no call was refused
        assert [m.body for m in got] == [b"signed"]
        assert all(c.code != 40100 for c in server.calls())


def test_wrong_credentials_are_refused(rmq: SimpleNamespace, clients: SimpleNamespace) -> None:
    with rmq.fake.FakeRocketMQ(
        credentials=("user", "secret"), limits=rmq.fake.ProxyLimits.relaxed()
    ) as server:
        server.publish(TOPIC, b"private")
        # Given a consumer signing with a wrong password (start-up does not notice)
        consumer = clients.consumer(server, credentials=("user", "wrong"))

        # When it receives, Then the route lookup was refused with UNAUTHORIZED and the client
        # reports only that it has no route
        with pytest.raises(Exception, match="failed to fetch topic"):
            consumer.receive(32, 5)
        assert {c.code for c in server.calls("QueryRoute")} == {40100}
        assert server.stats(TOPIC, GROUP) == fake_stats(server, ready=1)


def test_rotated_password_surfaces_as_unauthorized(
    rmq: SimpleNamespace, clients: SimpleNamespace
) -> None:
    with rmq.fake.FakeRocketMQ(
        credentials=("user", "secret"), limits=rmq.fake.ProxyLimits.relaxed()
    ) as server:
        # Given a connected consumer
        consumer = clients.consumer(server, credentials=("user", "secret"))
        assert consumer.receive(32, 5) == []

        # When the password changes on the server
        server.set_credentials(("user", "rotated"))

        # Then the next receive raises the typed UnauthorizedException (40100)
        with pytest.raises(rmq.exc.UnauthorizedException) as refused:
            consumer.receive(32, 5)
        assert refused.value.code == 40100


# -- proxy limits and faults ---------------------------------------------------------------------


def test_default_limits_are_the_proxy_ones(rmq: SimpleNamespace, clients: SimpleNamespace) -> None:
    with rmq.fake.FakeRocketMQ() as server:
        # Given the default (Apache proxy) limits
        short_poll = clients.consumer(server, await_duration=1, request_timeout=3)
        ok_poll = clients.consumer(server, group="GID_ok", await_duration=5)

        # When a receive leaves under 5 s for polling, Then ILLEGAL_POLLING_TIME
        with pytest.raises(rmq.exc.BadRequestException) as polling:
            short_poll.receive(32, 30)
        assert polling.value.code == 40018

        # When the invisible duration is under 10 s, Then ILLEGAL_INVISIBLE_TIME
        with pytest.raises(rmq.exc.BadRequestException) as invisible:
            ok_poll.receive(32, 5)
        assert invisible.value.code == 40011

        # When more than 32 messages are asked for, Then BAD_REQUEST
        with pytest.raises(rmq.exc.BadRequestException) as batch:
            ok_poll.receive(33, 30)
        assert batch.value.code == 40000


def test_unavailable_knob_raises_grpc_unavailable(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    # Given a connected consumer and a server that then answers UNAVAILABLE
    consumer = clients.consumer(fake)
    assert consumer.receive(32, 5) == []
    fake.make_unavailable("ReceiveMessage")

    # When it receives, Then the client raises the raw gRPC error
    with pytest.raises(rmq.grpc.RpcError) as unavailable:
        consumer.receive(32, 5)
    assert unavailable.value.code() == rmq.grpc.StatusCode.UNAVAILABLE

    # And once the fault is cleared, receiving works again
    fake.reset_faults()
    fake.publish(TOPIC, b"back")
    assert [m.body for m in _receive_until(consumer, 1, 5)] == [b"back"]


def test_in_band_status_knob_maps_to_typed_exception(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    consumer = clients.consumer(fake)
    fake.fail("ReceiveMessage", 42900, "polling full")
    with pytest.raises(rmq.exc.TooManyRequestsException) as busy:
        consumer.receive(32, 5)
    assert busy.value.code == 42900


def test_slow_ack_beyond_request_timeout_is_deadline_exceeded(
    rmq: SimpleNamespace, fake: Any, clients: SimpleNamespace
) -> None:
    # Given a received message and acks that take longer than the 1 s request timeout
    fake.publish(TOPIC, b"x")
    consumer = clients.consumer(fake, request_timeout=1)
    (m,) = consumer.receive(32, 5)
    fake.delay("AckMessage", 1.5)

    # When it is acknowledged, Then the client gives up with DEADLINE_EXCEEDED
    with pytest.raises(rmq.grpc.RpcError) as slow:
        consumer.ack(m)
    assert slow.value.code() == rmq.grpc.StatusCode.DEADLINE_EXCEEDED

    # And the ack, still "on the wire" when its caller left, never takes effect
    time.sleep(0.7)
    assert fake.stats(TOPIC, GROUP).in_flight == 1
    assert fake.calls("AckMessage")[-1].code == 0


def test_unknown_fault_name_is_rejected(fake: Any) -> None:
    with pytest.raises(ValueError, match="unknown RPC name"):
        fake.make_unavailable("Recieve")


# -- lifecycle -----------------------------------------------------------------------------------


def test_call_sequence_and_clean_shutdown(fake: Any, clients: SimpleNamespace) -> None:
    # Given a consumer that received and acknowledged a message
    fake.publish(TOPIC, b"x")
    consumer = clients.consumer(fake)
    (m,) = consumer.receive(32, 5)
    consumer.ack(m)
    client_id = consumer.client_id

    # When it is shut down (and its decode pool released)
    _release(consumer)

    # Then the fake saw the documented call order, ending with NotifyClientTermination
    rpcs = [c.rpc for c in fake.calls() if c.client_id == client_id]
    assert rpcs[0] == "QueryRoute"
    assert rpcs.index("Telemetry") < rpcs.index("ReceiveMessage") < rpcs.index("AckMessage")
    assert rpcs[-1] == "NotifyClientTermination"
    settings = fake.client_settings()
    assert client_id not in settings  # forgotten on termination

    # And no thread of that client is left (the process-wide io loop thread is shared)
    assert [t.name for t in threading.enumerate() if client_id in t.name] == []


def test_settings_reach_the_fake(fake: Any, clients: SimpleNamespace) -> None:
    consumer = clients.consumer(fake, await_duration=2)
    consumer.receive(32, 5)
    settings = fake.client_settings()[consumer.client_id]
    assert settings.subscription.group.name == GROUP
    assert settings.subscription.long_polling_timeout.seconds == 2
    assert [s.topic.name for s in settings.subscription.subscriptions] == [TOPIC]
    assert not settings.metric.on


def test_stop_during_a_long_poll_is_prompt(rmq: SimpleNamespace, clients: SimpleNamespace) -> None:
    # Given a consumer blocked in a 10 s long poll on its own thread
    server = rmq.fake.FakeRocketMQ(limits=rmq.fake.ProxyLimits.relaxed()).start()
    consumer = clients.consumer(server, await_duration=10)
    outcome: list[object] = []
    poller = threading.Thread(target=lambda: outcome.append(_try(consumer.receive, 32, 5)))
    poller.start()
    time.sleep(0.3)

    # When the fake stops
    server.stop()
    poller.join(timeout=8)

    # Then the poll ends long before its await duration, empty or with an error
    assert not poller.is_alive()
    assert outcome
    assert outcome[0] == [] or isinstance(outcome[0], Exception)


def test_unreachable_endpoint_fails_on_first_receive(
    rmq: SimpleNamespace, clients: SimpleNamespace
) -> None:
    # Given a consumer started against a fake that has gone away (start-up does not notice)
    server = rmq.fake.FakeRocketMQ().start()
    server.stop()
    consumer = clients.consumer(server)

    # When it receives, Then the client says it has no route
    with pytest.raises(Exception, match="failed to fetch topic"):
        consumer.receive(32, 5)


def _try(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except Exception as e:
        return e
