"""The pipeline's conformance suite on RocketMQSource: the real client against the fake proxy.

The fake runs with the proxy's minimums lifted (`ProxyLimits.relaxed()`), so a restart can let
the invisible time lapse at once (`FakeRocketMQ.expire_in_flight`) instead of waiting it out.
Every test of the suite runs unchanged; see the class docstring for what RocketMQ adds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from consumer.config.model import RocketMqConfig
from tests.conformance import bodies
from tests.conformance.conftest import store  # noqa: F401 - the suite's sink fixture
from tests.conformance.harness import Rig
from tests.conformance.suite import SourceConformance

TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_conformance"


@pytest.fixture(scope="module")
def modules(rmq: SimpleNamespace) -> tuple[ModuleType, ModuleType]:
    return rmq.fake, rmq.source


class RocketMQHarness:
    """The conformance suite's view of a fresh topic and group on a fake proxy."""

    receive_wait = 0.0

    def __init__(self, fake_module: ModuleType, source_module: ModuleType) -> None:
        self._source_module = source_module
        self.fake: Any = fake_module.FakeRocketMQ(limits=fake_module.ProxyLimits.relaxed())
        self.fake.start()
        self.fake.create_topic(TOPIC)
        self._opened: list[Any] = []
        self.max_deliveries = 10
        """The source's own bound for corrupted bodies: the queue's `max_deliveries`."""

    def publish(self, body: bytes) -> None:
        self.fake.publish(TOPIC, body, tag="JobComplete")

    def open(self) -> Any:
        config = RocketMqConfig(
            endpoints=self.fake.endpoint,
            topic=TOPIC,
            group=GROUP,
            invisible_duration=timedelta(seconds=30),
        )
        # A 1 s long poll: an empty receive costs a second, not the proxy's minimum of five.
        source = self._source_module.RocketMQSource(
            config, max_deliveries=self.max_deliveries, min_wait=1
        )
        self._opened.append(source)
        return source

    def expire_in_flight(self) -> None:
        self.fake.expire_in_flight(TOPIC, GROUP)

    def drained(self) -> bool:
        stats = self.fake.stats(TOPIC, GROUP)
        return bool(stats.ready == 0 and stats.in_flight == 0)

    def close(self) -> None:
        for source in self._opened:
            source.close()
        self._opened.clear()
        self.fake.stop()


class TestRocketMQSourceConformance(SourceConformance):
    """The suite, unchanged, plus the one delivery rule only RocketMQ has: a body whose digest
    does not match is held back until past `max_deliveries`, then quarantined as received."""

    @pytest.fixture
    def harness(self, modules: tuple[ModuleType, ModuleType]) -> Iterator[RocketMQHarness]:
        harness = RocketMQHarness(*modules)
        yield harness
        harness.close()

    def test_a_corrupted_body_ends_in_dead_letters_after_max_deliveries(self, rig: Rig) -> None:
        # Given a good receipt, and one whose body digest does not match, max_deliveries 2
        harness: RocketMQHarness = rig.harness  # type: ignore[assignment]
        rig.max_deliveries = harness.max_deliveries = 2
        harness.publish(bodies.voice_report(1))
        damaged = harness.fake.publish(TOPIC, bodies.voice_report(2), corrupt_digest=True)
        # When the pipeline drains the topic (each idle round lets the invisible time lapse)
        rig.drain(rig.harness.open())
        # Then the good one is stored; the damaged one was given back twice, never parsed,
        # and quarantined on its third delivery with its bytes, then acknowledged
        assert len(rig.store.event_ids()) == 1
        (letter,) = rig.store.sink.dead_letters()
        assert (letter.reason, letter.attempts, letter.message_id) == ("max_deliveries", 3, damaged)
        assert letter.payload == bodies.voice_report(2)
        assert harness.fake.delivery_attempts(damaged, TOPIC, GROUP) == 3
        assert rig.harness.drained()
