"""RocketMQSource on the real rocketmq-python-client against the fake proxy (real sockets)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from consumer.config.model import RocketMqConfig, RocketMqCredentials
from consumer.errors import ConfigError, TransientError
from consumer.sources.base import Source

TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_call_consumer"


@pytest.fixture
def fake(rmq: SimpleNamespace) -> Iterator[Any]:
    with rmq.fake.FakeRocketMQ(limits=rmq.fake.ProxyLimits.relaxed()) as server:
        yield server


@pytest.fixture
def make_source(rmq: SimpleNamespace) -> Iterator[Callable[..., Any]]:
    """Build sources on a fake; every one is closed after the test."""
    made: list[Any] = []

    def make(
        server: Any,
        *,
        invisible: float = 2,
        credentials: tuple[str, str] | None = None,
        max_deliveries: int = 10,
        min_wait: int | None = 1,
        **fields: Any,
    ) -> Any:
        config = RocketMqConfig(
            endpoints=server.endpoint,
            topic=fields.pop("topic", TOPIC),
            group=fields.pop("group", GROUP),
            invisible_duration=timedelta(seconds=invisible),
            credentials=(
                RocketMqCredentials(username=credentials[0], password=SecretStr(credentials[1]))
                if credentials
                else None
            ),
            **fields,
        )
        source = rmq.source.RocketMQSource(
            config,
            max_deliveries=max_deliveries,
            min_wait=min_wait,
            location="queues[0].rocketmq",
        )
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def _receive_all(source: Any, count: int, tries: int = 5) -> list[Any]:
    got: list[Any] = []
    for _ in range(tries):
        got += source.receive(16, 1)
        if len(got) >= count:
            break
    return got


def test_is_a_source(fake: Any, make_source: Callable[..., Any]) -> None:
    source = make_source(fake)
    assert isinstance(source, Source)
    assert source.visibility_timeout == 2.0


def test_receive_then_ack_after_commit(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given two published messages
    ids = [fake.publish(TOPIC, b'{"event":"CallFinished"}'), fake.publish(TOPIC, b"second")]
    source = make_source(fake)

    # When they are received
    got = _receive_all(source, 2)

    # Then ids, raw bodies and first-delivery counts come through, and they are in flight
    assert [(m.id, m.body, m.delivery_count) for m in got] == [
        (ids[0], b'{"event":"CallFinished"}', 1),
        (ids[1], b"second", 1),
    ]
    assert fake.stats(TOPIC, GROUP).in_flight == 2

    # When they are acknowledged (as after the commit), Then they are settled for good
    source.ack(got)
    stats = fake.stats(TOPIC, GROUP)
    assert (stats.acked, stats.in_flight, stats.ready) == (2, 0, 0)


def test_reject_redelivers_after_the_delay(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given a received message whose sink write failed
    message_id = fake.publish(TOPIC, b"retry me")
    source = make_source(fake, invisible=30)
    (m,) = _receive_all(source, 1)

    # When it is rejected with a 1 s delay
    source.reject([m], 0.2)

    # Then it comes back as delivery 2 long before the 30 s invisible duration
    time.sleep(1.1)
    (again,) = _receive_all(source, 1)
    assert (again.id, again.delivery_count) == (message_id, 2)


def test_extend_keeps_the_message_and_ack_uses_the_new_handle(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a message received with a 1 s invisible duration
    fake.publish(TOPIC, b"slow sink")
    source = make_source(fake, invisible=1)
    (m,) = _receive_all(source, 1)
    first_handle = m.handle.receipt_handle

    # When it is extended by 3 s and the original second passes
    source.extend([m], 3)
    time.sleep(1.1)

    # Then it is not redelivered, and the ack (with the newest handle) settles it
    assert source.receive(16, 1) == []
    assert m.handle.receipt_handle != first_handle
    source.ack([m])
    assert fake.stats(TOPIC, GROUP).acked == 1


def test_stale_handles_are_ignored(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given a message redelivered after its invisible time lapsed
    fake.publish(TOPIC, b"late ack")
    source = make_source(fake, invisible=1)
    (first,) = _receive_all(source, 1)
    time.sleep(1.1)
    (second,) = _receive_all(source, 1)

    # When the first delivery is acked, rejected and extended, Then nothing raises
    source.ack([first])
    source.reject([first], 1)
    source.extend([first], 5)

    # And the message is still in flight under its second delivery
    assert fake.stats(TOPIC, GROUP).in_flight == 1
    source.ack([second])
    assert fake.stats(TOPIC, GROUP).acked == 1


def test_failed_extend_keeps_the_old_handle(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given a received message and a server failing ChangeInvisibleDuration with 50000
    fake.publish(TOPIC, b"x")
    source = make_source(fake, invisible=5)
    (m,) = _receive_all(source, 1)
    handle = m.handle.receipt_handle
    fake.fail("ChangeInvisibleDuration", 50000, "broker busy")

    # When extending, Then TransientError, and the client's blanked handle is restored
    with pytest.raises(TransientError, match="50000"):
        source.extend([m], 10)
    assert m.handle.receipt_handle == handle

    # And the ack still settles it
    fake.reset_faults()
    source.ack([m])
    assert fake.stats(TOPIC, GROUP).acked == 1


def test_a_settle_refused_with_a_settings_code_is_transient_and_names_it(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a received message and a broker refusing ChangeInvisibleDuration with 40011
    # (ILLEGAL_INVISIBLE_TIME: a configuration error when receiving)
    fake.publish(TOPIC, b"x")
    source = make_source(fake, invisible=5)
    (m,) = _receive_all(source, 1)
    fake.fail("ChangeInvisibleDuration", 40011, "invisible time out of range")

    # When it is rejected, Then the failure is transient (settling raises nothing else) and
    # names the broker's answer
    with pytest.raises(TransientError, match="40011") as refused:
        source.reject([m], 1)
    assert not isinstance(refused.value, ConfigError)

    # And the message is still in flight, to be settled later
    fake.reset_faults()
    source.ack([m])
    assert fake.stats(TOPIC, GROUP).acked == 1


def test_nacks_then_close_and_reopen_redeliver_exactly_those(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given A..E received; C and E rejected, the rest acknowledged, then the source closed
    for body in (b"A", b"B", b"C", b"D", b"E"):
        fake.publish(TOPIC, body)
    source = make_source(fake, invisible=30)
    got = _receive_all(source, 5)
    source.reject([m for m in got if m.body in (b"C", b"E")], 1)
    source.ack([m for m in got if m.body not in (b"C", b"E")])
    source.close()

    # When a new source on the same group receives
    reopened = make_source(fake, invisible=30)
    time.sleep(1.1)
    again = _receive_all(reopened, 2)

    # Then exactly C and E come back, as second deliveries
    assert sorted((m.body, m.delivery_count) for m in again) == [(b"C", 2), (b"E", 2)]
    assert reopened.receive(16, 1) == []


def test_tag_namespace_and_credentials_are_used(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    with rmq.fake.FakeRocketMQ(
        credentials=("rmq-user", "rmq-pass"), limits=rmq.fake.ProxyLimits.relaxed()
    ) as server:
        # Given messages in namespace rmq-cn-1 with two tags, and one outside the namespace
        server.publish(TOPIC, b"finished", tag="CallFinished", namespace="rmq-cn-1")
        server.publish(TOPIC, b"dialing", tag="Dialing", namespace="rmq-cn-1")
        server.publish(TOPIC, b"elsewhere", tag="CallFinished")

        # When a source with that namespace, tag and the right credentials receives
        source = make_source(
            server, credentials=("rmq-user", "rmq-pass"), namespace="rmq-cn-1", tag="CallFinished"
        )
        got = _receive_all(source, 1)

        # Then it gets only the matching message of its namespace
        assert [m.body for m in got] == [b"finished"]
        assert source.receive(16, 1) == []


def test_wrong_credentials_name_the_cause(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    with rmq.fake.FakeRocketMQ(credentials=("rmq-user", "rmq-pass")) as server:
        source = make_source(server, credentials=("rmq-user", "nope"))
        with pytest.raises(TransientError, match=r"40100.*credentials"):
            source.receive(16, 1)


def test_unknown_topic_names_the_cause(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    with rmq.fake.FakeRocketMQ(auto_create_topics=False) as server:
        source = make_source(server, topic="NO_SUCH_TOPIC")
        with pytest.raises(TransientError, match=r"40402.*rocketmq.topic"):
            source.receive(16, 1)


def test_unreachable_broker_is_transient_and_recovers(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    # Given a source whose broker is down
    server = rmq.fake.FakeRocketMQ(limits=rmq.fake.ProxyLimits.relaxed()).start()
    server.stop()
    source = make_source(server)

    # When it receives, Then TransientError says the broker cannot be reached
    with pytest.raises(TransientError, match="cannot reach"):
        source.receive(16, 1)

    # When the broker comes back on the same port and the loop keeps retrying (gRPC waits
    # about a second before it dials again), Then the same source receives
    server.start()
    try:
        server.publish(TOPIC, b"after outage")
        got: list[Any] = []
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            try:
                got = source.receive(16, 1)
            except TransientError:
                time.sleep(0.2)
        assert [m.body for m in got] == [b"after outage"]
    finally:
        source.close()
        server.stop()


def test_invisible_duration_under_the_proxy_minimum_is_a_config_error(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    with rmq.fake.FakeRocketMQ() as server:
        source = make_source(server, invisible=5, min_wait=None)
        with pytest.raises(ConfigError) as error:
            source.receive(16, 0)
        assert error.value.location == "queues[0].rocketmq.invisible_duration"
        assert "40011" in error.value.problem


def test_default_wait_fits_the_proxy_polling_rule(
    rmq: SimpleNamespace, make_source: Callable[..., Any]
) -> None:
    # Given the proxy's limits and a pipeline asking for a 1 s wait
    with rmq.fake.FakeRocketMQ() as server:
        source = make_source(server, invisible=10, min_wait=None)
        server.publish(TOPIC, b"x")

        # When it receives, Then the long poll is not refused (await is raised to 3 s)
        assert [m.body for m in source.receive(16, 1)] == [b"x"]


def test_corrupted_body_is_redelivered_until_past_max_deliveries(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a message whose digest does not match, and max_deliveries 1
    message_id = fake.publish(TOPIC, b"damaged", corrupt_digest=True)
    source = make_source(fake, invisible=30, max_deliveries=1)

    # When it is first received, Then it is held back and given back to the broker
    assert source.receive(16, 1) == []
    assert fake.delivery_attempts(message_id, TOPIC, GROUP) == 1

    # When it comes back past max_deliveries, Then it is passed on (to be quarantined)
    time.sleep(2.1)
    (m,) = _receive_all(source, 1)
    assert (m.id, m.body, m.delivery_count) == (message_id, b"damaged", 2)


def test_close_releases_the_client_threads(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given a source that received once
    source = make_source(fake)
    source.receive(16, 1)
    client_id = source._consumer.client_id

    # When it is closed (twice: idempotent)
    source.close()
    source.close()

    # Then the fake heard NotifyClientTermination and none of the client's threads survive
    assert any(c.client_id == client_id for c in fake.calls("NotifyClientTermination"))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(client_id in t.name for t in threading.enumerate()):
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if client_id in t.name] == []

    # And receiving afterwards is refused clearly
    with pytest.raises(TransientError, match="closed"):
        source.receive(16, 1)


def test_import_falls_back_when_home_is_not_writable(tmp_path: Path) -> None:
    # Given a HOME where ~/logs cannot be created, and a systemd cache directory
    env = dict(os.environ, HOME="/proc/no-such-home", CACHE_DIRECTORY=str(tmp_path))
    code = "from consumer.sources.rocketmq import import_client; print(import_client().__name__)"

    # When the client is imported through import_client
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it imports, logging under the cache directory
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rocketmq"
    assert (tmp_path / "logs" / "rocketmq_python").is_dir()


def test_a_batch_is_acknowledged_in_one_request(fake: Any, make_source: Callable[..., Any]) -> None:
    # Given five received messages
    for n in range(5):
        fake.publish(TOPIC, f"m{n}".encode())
    source = make_source(fake, invisible=30)
    got = _receive_all(source, 5)

    # When the batch is acknowledged
    source.ack(got)

    # Then one AckMessage settled all five
    assert [c.code for c in fake.calls("AckMessage")] == [20000]
    assert fake.stats(TOPIC, GROUP).acked == 5


def test_an_ack_with_stale_and_live_handles_settles_the_live_ones(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given two received messages: one kept invisible, the other's invisible time lapsed
    fake.publish(TOPIC, b"a")
    fake.publish(TOPIC, b"b")
    source = make_source(fake, invisible=1)
    lapsed, kept = sorted(_receive_all(source, 2), key=lambda m: m.body)
    source.extend([kept], 30)
    time.sleep(1.1)

    # When both are acknowledged together (the broker answers MULTIPLE_RESULTS)
    source.ack([lapsed, kept])

    # Then nothing raises; the live one is settled, the lapsed one is left to redelivery
    assert fake.calls("AckMessage")[-1].code == 30000
    stats = fake.stats(TOPIC, GROUP)
    assert (stats.acked, stats.ready) == (1, 1)


def test_close_gives_back_what_was_never_settled(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given two messages received with a 30 s invisible duration, only one acknowledged
    fake.publish(TOPIC, b"done")
    fake.publish(TOPIC, b"left behind")
    source = make_source(fake, invisible=30)
    done, _left = sorted(_receive_all(source, 2), key=lambda m: m.body)
    source.ack([done])

    # When the source closes (a shutdown between receive and settle)
    source.close()

    # Then the unsettled one comes back within seconds, not after 30
    reopened = make_source(fake, invisible=30)
    time.sleep(1.1)
    (again,) = _receive_all(reopened, 1)
    assert (again.body, again.delivery_count) == (b"left behind", 2)


def test_tls_on_against_a_plaintext_broker_is_transient(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a source with TLS on, and a broker that only speaks plaintext
    source = make_source(fake, tls=True)

    # When it receives, Then the handshake fails as a reachability problem, never a message
    with pytest.raises(TransientError, match="cannot reach"):
        source.receive(16, 1)
    assert fake.calls("ReceiveMessage") == []


def test_close_during_a_long_poll_ends_it_with_nothing_received(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a source in a 5 s long poll on an empty topic (a shutdown arrives meanwhile)
    fake.publish(TOPIC, b"first")
    source = make_source(fake, min_wait=5)
    source.ack(source.receive(16, 0))  # connected, and the topic is empty again
    got: list[Any] = []
    poll = threading.Thread(target=lambda: got.append(source.receive(16, 5)))
    poll.start()
    time.sleep(0.5)

    # When another thread closes it (the runtime's drain does)
    started = time.monotonic()
    source.close()
    poll.join(5)

    # Then the poll ends promptly with an empty batch rather than an error
    assert not poll.is_alive()
    assert got == [[]]
    assert time.monotonic() - started < 4


def test_a_thread_left_without_an_event_loop_still_receives(
    fake: Any, make_source: Callable[..., Any]
) -> None:
    # Given a thread whose event loop an `asyncio.run` closed and unset, as tests and embedding
    # applications do before they start a source
    asyncio.run(asyncio.sleep(0))
    fake.publish(TOPIC, b"after asyncio.run")
    source = make_source(fake)
    # When the source receives, Then the client's route lookup and telemetry stream work
    assert [m.body for m in _receive_all(source, 1)] == [b"after asyncio.run"]
    # And the thread now has a loop of its own for the client's grpc.aio calls
    assert asyncio.get_event_loop_policy().get_event_loop() is not None
