"""The pipeline's counters behind a small interface, so a Prometheus exporter can plug in later.

`Counters` keeps plain numbers per queue (what tests and `/metrics` read); an exporter implements
`Metrics` itself or reads `Counters.snapshot()`. Labels are only ever the queue and, for dead
letters, the reason code: never a call id or a phone number.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol


class Metrics(Protocol):
    def received(self, queue: str, count: int) -> None: ...
    def acknowledged(self, queue: str, count: int) -> None: ...
    def rejected(self, queue: str, count: int) -> None: ...
    def dead_lettered(self, queue: str, reason: str) -> None: ...
    def events_written(self, queue: str, count: int) -> None: ...
    def retried(self, queue: str) -> None:
        """One more sink attempt after a transient failure."""

    def in_flight(self, queue: str, delta: int) -> None:
        """Messages received and not yet settled (a gauge moved by +n / -n)."""

    def processing_latency(self, queue: str, seconds: float) -> None:
        """From receive to settlement, per message."""

    def sink_latency(self, queue: str, seconds: float) -> None:
        """One `Sink.store` call, successful or not."""


class NullMetrics:
    """Counts nothing: the default when nobody reads the numbers."""

    def received(self, queue: str, count: int) -> None:
        pass

    def acknowledged(self, queue: str, count: int) -> None:
        pass

    def rejected(self, queue: str, count: int) -> None:
        pass

    def dead_lettered(self, queue: str, reason: str) -> None:
        pass

    def events_written(self, queue: str, count: int) -> None:
        pass

    def retried(self, queue: str) -> None:
        pass

    def in_flight(self, queue: str, delta: int) -> None:
        pass

    def processing_latency(self, queue: str, seconds: float) -> None:
        pass

    def sink_latency(self, queue: str, seconds: float) -> None:
        pass


@dataclass(slots=True)
class QueueCounters:
    received: int = 0
    acknowledged: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    events_written: int = 0
    retries: int = 0
    in_flight: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    processing_seconds: list[float] = field(default_factory=list)
    sink_seconds: list[float] = field(default_factory=list)


class Counters:
    """Thread-safe in-process totals per queue; latencies keep the last `keep` observations."""

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._queues: defaultdict[str, QueueCounters] = defaultdict(QueueCounters)

    def __getitem__(self, queue: str) -> QueueCounters:
        return self.snapshot().get(queue, QueueCounters())

    def snapshot(self) -> dict[str, QueueCounters]:
        with self._lock:
            return {
                name: QueueCounters(
                    c.received,
                    c.acknowledged,
                    c.rejected,
                    c.dead_lettered,
                    c.events_written,
                    c.retries,
                    c.in_flight,
                    dict(c.dead_letter_reasons),
                    list(c.processing_seconds),
                    list(c.sink_seconds),
                )
                for name, c in self._queues.items()
            }

    def _observe(self, values: list[float], seconds: float) -> None:
        values.append(seconds)
        if len(values) > self._keep:
            del values[: len(values) - self._keep]

    def received(self, queue: str, count: int) -> None:
        with self._lock:
            self._queues[queue].received += count

    def acknowledged(self, queue: str, count: int) -> None:
        with self._lock:
            self._queues[queue].acknowledged += count

    def rejected(self, queue: str, count: int) -> None:
        with self._lock:
            self._queues[queue].rejected += count

    def dead_lettered(self, queue: str, reason: str) -> None:
        with self._lock:
            counters = self._queues[queue]
            counters.dead_lettered += 1
            counters.dead_letter_reasons[reason] = counters.dead_letter_reasons.get(reason, 0) + 1

    def events_written(self, queue: str, count: int) -> None:
        with self._lock:
            self._queues[queue].events_written += count

    def retried(self, queue: str) -> None:
        with self._lock:
            self._queues[queue].retries += 1

    def in_flight(self, queue: str, delta: int) -> None:
        with self._lock:
            self._queues[queue].in_flight += delta

    def processing_latency(self, queue: str, seconds: float) -> None:
        with self._lock:
            self._observe(self._queues[queue].processing_seconds, seconds)

    def sink_latency(self, queue: str, seconds: float) -> None:
        with self._lock:
            self._observe(self._queues[queue].sink_seconds, seconds)


__all__ = ["Counters", "Metrics", "NullMetrics", "QueueCounters"]
