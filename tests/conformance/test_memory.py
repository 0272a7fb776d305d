"""The conformance suite on the in-memory source, with a fake clock for visibility."""

from __future__ import annotations

import pytest

from consumer.sources.memory import MemoryQueue, MemorySource
from tests.conformance.suite import SourceConformance


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryHarness:
    receive_wait = 0.0

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.queue = MemoryQueue(visibility_timeout=30, clock=self.clock)

    def publish(self, body: bytes) -> None:
        self.queue.publish(body)

    def open(self) -> MemorySource:
        return MemorySource(self.queue)

    def expire_in_flight(self) -> None:
        self.clock.now += self.queue.visibility_timeout + 1

    def drained(self) -> bool:
        return self.queue.drained()

    def close(self) -> None:
        pass


class TestMemorySourceConformance(SourceConformance):
    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()
