"""RemotingSource on rocketmq-client-python 2.0.0 over the built librocketmq, against the fake
name server and broker: what the conformance suite does not look at."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.config.model import RocketMqConfig, RocketMqCredentials
from consumer.errors import ConfigError
from consumer.sources.base import Message
from consumer.sources.remoting import RemotingSource
from consumer.testing.fake_remoting import FakeRemoting
from tests.sources.remoting_env import librocketmq

TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_remoting"


@pytest.fixture(autouse=True)
def _library() -> None:
    librocketmq()


@pytest.fixture
def make_source(tmp_path: Path) -> Iterator[Callable[..., RemotingSource]]:
    made: list[RemotingSource] = []

    def make(fake: FakeRemoting, **fields: Any) -> RemotingSource:
        config = RocketMqConfig(
            protocol="remoting",
            endpoints=fake.namesrv,
            topic=fields.pop("topic", TOPIC),
            group=fields.pop("group", GROUP),
            **fields,
        )
        source = RemotingSource(config, state_dir=str(tmp_path), location="queues.q.rocketmq")
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def receive_all(source: RemotingSource, count: int, rounds: int = 10) -> list[Message]:
    got: list[Message] = []
    for _ in range(rounds):
        got += source.receive(16, 1)
        if len(got) >= count:
            break
    return got


def receive_until_refused(source: RemotingSource) -> None:
    for _ in range(15):
        assert source.receive(16, 1) == []


def test_a_body_with_nul_bytes_arrives_whole(make_source: Callable[..., RemotingSource]) -> None:
    # Given a binary body with NUL bytes (the binding's own `body` stops at the first one)
    body = b"head\x00\x01\x00tail\xff"
    with FakeRemoting(TOPIC, long_poll_cap=0.2) as fake:
        fake.publish(body)
        source = make_source(fake)
        # When it is received
        (message,) = receive_all(source, 1)
        source.ack([message])
        source.close()
    # Then it is byte for byte what was published, on its first delivery
    assert message.body == body
    assert message.delivery_count == 1


def test_only_the_subscribed_tags_are_delivered(
    make_source: Callable[..., RemotingSource],
) -> None:
    # Given messages with three tags, and a consumer of two of them
    with FakeRemoting(TOPIC, long_poll_cap=0.2, max_pull_count=1) as fake:
        for n, tag in enumerate(["JobComplete", "Other", "CallRecord"] * 2):
            fake.publish(f"{tag}-{n}".encode(), tags=tag)
        source = make_source(fake, tag="JobComplete||CallRecord")
        # When it consumes
        got = receive_all(source, 4)
        source.ack(got)
        # Then exactly the four with those tags arrive, and the others are passed over
        assert sorted(m.body for m in got) == [
            b"CallRecord-2", b"CallRecord-5", b"JobComplete-0", b"JobComplete-3",
        ]  # fmt: skip
        assert source.receive(16, 0.5) == []
        source.close()


def test_a_namespace_prefixes_topic_and_group(make_source: Callable[..., RemotingSource]) -> None:
    # Given an instance whose resources carry the namespace, as Aliyun 4.x instances do
    namespaced = f"MQ_INST_1234_abcd%{TOPIC}"
    with FakeRemoting(namespaced, long_poll_cap=0.2) as fake:
        fake.publish(b"in the instance")
        source = make_source(fake, namespace="MQ_INST_1234_abcd")
        # When the consumer consumes the plain topic name in that namespace
        (message,) = receive_all(source, 1)
        source.ack([message])
        source.close()  # commits the offset
        # Then it read the namespaced topic, and committed as the namespaced group
        assert message.body == b"in the instance"
        assert fake.drained(f"MQ_INST_1234_abcd%{GROUP}")


def test_signed_requests_are_accepted(make_source: Callable[..., RemotingSource]) -> None:
    # Given a broker with ACL and a consumer with the right AccessKey pair
    with FakeRemoting(TOPIC, long_poll_cap=0.2, credentials={"LTAIak": "s3cret"}) as fake:
        fake.publish(b"signed")
        source = make_source(
            fake,
            credentials=RocketMqCredentials(username="LTAIak", password=SecretStr("s3cret")),
        )
        # When it consumes
        (message,) = receive_all(source, 1)
        source.ack([message])
        source.close()
        # Then every request carried a valid signature
        assert message.body == b"signed"
        assert fake.acl_refusals == 0


def test_wrong_credentials_fail_loudly(make_source: Callable[..., RemotingSource]) -> None:
    # Given a broker with ACL and a consumer with a wrong secret key (start() still succeeds)
    with FakeRemoting(TOPIC, long_poll_cap=0.2, credentials={"LTAIak": "s3cret"}) as fake:
        fake.publish(b"never delivered")
        source = make_source(
            fake,
            credentials=RocketMqCredentials(username="LTAIak", password=SecretStr("wrong")),
        )
        # When it receives until the broker's refusal surfaces
        with capture_logs() as logs, pytest.raises(ConfigError) as refused:
            receive_until_refused(source)
        # Then it fails with a configuration error naming the credentials and the broker's words
        assert refused.value.location == "queues.q.rocketmq.credentials"
        assert "Check signature failed for accessKey=LTAIak" in refused.value.problem
        assert fake.acl_refusals > 0
        source.close()
        # And the refusal is in the structured log
        assert any(e["event"] == "rocketmq broker refused the credentials" for e in logs)


def test_client_error_lines_reach_the_structured_log(
    make_source: Callable[..., RemotingSource],
) -> None:
    # Given a consumer of a topic the name server does not know
    with FakeRemoting(TOPIC, long_poll_cap=0.2) as fake:
        source = make_source(fake, topic="NO_SUCH_TOPIC")
        # When it runs for a while
        with capture_logs() as logs:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                "NO_SUCH_TOPIC" in str(e.get("client_line", "")) for e in logs
            ):
                assert source.receive(16, 0.5) == []
        source.close()
        # Then the client's own complaint about the topic is in the structured log
        lines = [
            e
            for e in logs
            if e["event"] == "rocketmq client" and "NO_SUCH_TOPIC" in str(e["client_line"])
        ]
        assert lines
        assert {e["log_level"] for e in lines} <= {"error", "warning"}
