"""What a source's test module provides to run the conformance suite against it.

A source's test module subclasses `suite.SourceConformance` and defines a `harness` fixture
returning a `SourceHarness` over a fresh queue (see tests/conformance/test_memory.py). The suite
brings the sink (`store` fixture in conftest.py: the in-memory double, and the real SQLite sink
once it exists) and the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from consumer.config.model import RetryConfig
from consumer.formats import get_format
from consumer.pipeline import Counters, Pipeline, Result, Worker
from consumer.sources.base import Message, Source
from tests.conformance.bodies import FORMAT
from tests.conformance.sink_double import FaultySink

QUEUE = "conformance"


class SourceHarness(Protocol):
    receive_wait: float
    """The `wait` to pass to `receive` when a message is expected (0 for in-memory)."""

    def publish(self, body: bytes) -> None:
        """Put one raw body on the queue, as the provider would."""

    def open(self) -> Source:
        """A new consumer connection; each call after the first is a restart."""

    def expire_in_flight(self) -> None:
        """Let the visibility of every unsettled message lapse now (advance a clock, wait it out,
        or tell the fake broker), so it is redelivered."""

    def drained(self) -> bool:
        """True when the broker holds no message, visible or in flight."""

    def close(self) -> None:
        """Release the queue (and the fake broker) at the end of a test."""


@dataclass
class Store:
    """The sink under test behind fault knobs, and a way to read back what it committed."""

    sink: FaultySink
    event_ids: Callable[[], list[str]]
    """Every committed `call_events.event_id`, duplicates included if there were any."""
    name: str = "double"


FAST_RETRY = RetryConfig(
    attempts=3,
    initial=timedelta(milliseconds=1),
    max=timedelta(milliseconds=2),
    total=timedelta(seconds=2),
)


@dataclass
class Rig:
    """A source harness, a store, and the pipeline that ties them together."""

    harness: SourceHarness
    store: Store
    max_deliveries: int = 10
    batch_size: int = 16
    counters: Counters = field(default_factory=Counters)

    def pipeline(self) -> Pipeline:
        return Pipeline(
            queue=QUEUE,
            format=get_format(FORMAT),
            sink=self.store.sink,
            retry=FAST_RETRY,
            max_deliveries=self.max_deliveries,
            metrics=self.counters,
        )

    def worker(self, source: Source) -> Worker:
        return Worker(
            source,
            self.pipeline(),
            batch_size=self.batch_size,
            wait=self.harness.receive_wait,
            pause=lambda _seconds: None,
        )

    def drain(self, source: Source, rounds: int = 50) -> list[Result]:
        """Run the worker until the broker is empty; lapses visibility whenever a round is idle
        (a rejected message would come back after its delay anyway)."""
        worker = self.worker(source)
        results: list[Result] = []
        for _ in range(rounds):
            if self.harness.drained():
                break
            got = worker.run_once()
            results.extend(got)
            if not got:
                self.harness.expire_in_flight()
        return results

    def receive(self, source: Source, count: int, rounds: int = 20) -> list[Message]:
        """Receive until `count` messages are in hand, settling nothing."""
        messages: list[Message] = []
        for _ in range(rounds):
            if len(messages) >= count:
                break
            messages.extend(source.receive(count - len(messages), self.harness.receive_wait))
        return messages

    def restart(self, source: Source) -> Source:
        """Crash-restart: drop the connection without settling anything, come back, and let
        what was in flight become visible again."""
        source.close()
        self.harness.expire_in_flight()
        return self.harness.open()
