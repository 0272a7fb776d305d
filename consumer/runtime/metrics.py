"""Prometheus metrics for the pipeline (docs/http-push.md), aggregated across worker processes.

Every worker process records into prometheus_client's multiprocess files: the supervisor sets
`PROMETHEUS_MULTIPROC_DIR` to a fresh directory before it spawns anything, so each child's
metrics are backed by its own mmap file from its first import of prometheus_client. The listener
process serves `/metrics` from `aggregated_registry()`, which sums the files of every process,
dead ones included: a counter does not go back when a worker is restarted. Gauges only count live
processes (the supervisor calls `mark_dead` when a worker exits). This needs no channel between
workers and the listener and survives any worker's crash, which a push-to-supervisor design
would have to re-invent.

Labels are only the queue and, for dead letters, the reason code: never a call id or a number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from consumer.prometheus import Collectors

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SINK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PrometheusMetrics:
    """The pipeline's `Metrics` as Prometheus collectors, plus `source_up`.

    `activity` is called on every observation: the worker's heartbeat, so that a loop that
    keeps calling the sink (even failing) counts as alive, and a wedged one does not.
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        activity: Callable[[], None] | None = None,
    ) -> None:
        self._activity = activity
        make = Collectors("queue", registry)
        self._received = make.counter(
            "consumer_messages_received", "Messages received from a source"
        )
        self._acked = make.counter(
            "consumer_messages_acked",
            "Messages acknowledged (deleted, acked, answered 200) after their commit",
        )
        self._nacked = make.counter(
            "consumer_messages_nacked",
            "Messages given back for redelivery because their commit failed",
        )
        self._events = make.counter(
            "consumer_events_written",
            "Normalized events handed to the sink in committed transactions",
        )
        self._dead = make.counter(
            "consumer_dead_letters",
            "Messages quarantined in dead_letters, by reason: alert on this",
            "reason",
        )
        self._retries = make.counter(
            "consumer_sink_retries", "Sink attempts repeated after a transient failure"
        )
        self._in_flight = make.gauge(
            "consumer_inflight_messages", "Messages received and not yet settled", "livesum"
        )
        self._latency = make.histogram(
            "consumer_message_latency_seconds",
            "From receive to settlement, per message",
            LATENCY_BUCKETS,
        )
        self._sink = make.histogram(
            "consumer_sink_latency_seconds",
            "One sink transaction, successful or not",
            SINK_BUCKETS,
        )
        self._up = make.gauge(
            "consumer_source_up",
            "1 when every live worker of the queue reached its source on its last try",
            "livemin",
        )

    def declare(self, queue: str) -> None:
        """Export the queue's counters and histograms at 0 before its first message: an alert
        on `increase()` or a silent queue needs the series to exist from the start."""
        for metric in (
            self._received,
            self._acked,
            self._nacked,
            self._events,
            self._retries,
            self._in_flight,
            self._latency,
            self._sink,
        ):
            metric.labels(queue)

    def _beat(self) -> None:
        if self._activity is not None:
            self._activity()

    def received(self, queue: str, count: int) -> None:
        self._received.labels(queue).inc(count)
        self._beat()

    def acknowledged(self, queue: str, count: int) -> None:
        self._acked.labels(queue).inc(count)
        self._beat()

    def rejected(self, queue: str, count: int) -> None:
        self._nacked.labels(queue).inc(count)
        self._beat()

    def dead_lettered(self, queue: str, reason: str) -> None:
        self._dead.labels(queue, reason).inc()
        self._beat()

    def events_written(self, queue: str, count: int) -> None:
        self._events.labels(queue).inc(count)
        self._beat()

    def retried(self, queue: str) -> None:
        self._retries.labels(queue).inc()
        self._beat()

    def in_flight(self, queue: str, delta: int) -> None:
        self._in_flight.labels(queue).inc(delta)
        self._beat()

    def processing_latency(self, queue: str, seconds: float) -> None:
        self._latency.labels(queue).observe(seconds)
        self._beat()

    def sink_latency(self, queue: str, seconds: float) -> None:
        self._sink.labels(queue).observe(seconds)
        self._beat()

    def source_up(self, queue: str, up: bool) -> None:
        self._up.labels(queue).set(1 if up else 0)


def aggregated_registry(path: str | os.PathLike[str] | None = None) -> CollectorRegistry:
    """A registry that reads every process's metric files (what `/metrics` serves)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path) if path is not None else None)  # type: ignore[no-untyped-call]
    return registry


def prepare_directory(path: str | os.PathLike[str]) -> Path:
    """Create the multiprocess directory, or empty it of a previous run's files."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def mark_dead(pid: int, path: str | os.PathLike[str]) -> None:
    """Drop a dead process's live gauges (its in-flight count, its source_up)."""
    mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


__all__ = [
    "MULTIPROC_ENV",
    "PrometheusMetrics",
    "aggregated_registry",
    "mark_dead",
    "prepare_directory",
]
