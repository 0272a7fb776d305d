"""The pipeline's conformance suite on RemotingSource: rocketmq-client-python 2.0.0 over the
built librocketmq, against the fake name server and broker (consumer.testing.fake_remoting).

The broker hands out one message per pull (`max_pull_count=1`): the client calls back one
message at a time per pulled batch and holds the next ones until that callback returns, so a
test that wants five messages in hand at once needs them in five pulled batches. Sent-back
messages are due when the suite lets in-flight messages lapse, and a pull is held at most 0.2 s
so that the commit offset it carries reaches the broker soon after an ack.

The suite runs on the real SQLite sink only: the source is what is under test here, and every
sink runs the suite with the in-memory source.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config.model import RocketMqConfig, SinkConfig
from consumer.sinks import open_sink
from consumer.sources.remoting import RemotingSource
from consumer.testing.fake_remoting import FakeRemoting
from tests.conformance.harness import Store
from tests.conformance.sink_double import FaultySink
from tests.conformance.suite import SourceConformance
from tests.sources.remoting_env import librocketmq

TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_conformance"


class RemotingHarness:
    """A fresh topic and group on a fake broker; `open` starts a new PushConsumer."""

    receive_wait = 1.0

    def __init__(self, state_dir: Path) -> None:
        # Sent-back messages wait for `expire_in_flight`, as behind a real delay level: due at
        # once, they would reach a consumer that is shutting down, which can only send them
        # back again (one more reconsume) until its shutdown completes.
        self.fake = FakeRemoting(TOPIC, max_pull_count=1, long_poll_cap=0.2, retry_delay=600)
        self.fake.start()
        self._state_dir = state_dir
        self._opened: list[RemotingSource] = []

    def publish(self, body: bytes) -> None:
        self.fake.publish(body, tags="JobComplete")

    def open(self) -> RemotingSource:
        config = RocketMqConfig(
            protocol="remoting", endpoints=self.fake.namesrv, topic=TOPIC, group=GROUP
        )
        source = RemotingSource(config, state_dir=str(self._state_dir))
        self._opened.append(source)
        return source

    def expire_in_flight(self) -> None:
        # What was given back sits in the retry topic behind its delay level: make it due.
        self.fake.release_delayed()

    def drained(self) -> bool:
        # Consumer offsets reach the broker with the next pull (or the shutdown): let them.
        deadline = time.monotonic() + 2.0
        while not self.fake.drained(GROUP):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        for source in self._opened:
            source.close()
        self.fake.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    real = open_sink(SinkConfig(url=f"sqlite:///{tmp_path / 'events.db'}"))
    real.migrate()

    def event_ids() -> list[str]:
        with sqlite3.connect(tmp_path / "events.db") as db:
            return [row[0] for row in db.execute("SELECT event_id FROM call_events")]

    yield Store(FaultySink(real), event_ids, "sqlite")
    real.close()


class TestRemotingSourceConformance(SourceConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> RemotingHarness:
        librocketmq()
        return RemotingHarness(tmp_path / "state")
