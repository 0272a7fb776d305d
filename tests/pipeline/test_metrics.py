"""The counters an exporter will read."""

from __future__ import annotations

from consumer.pipeline.metrics import Counters, Metrics, NullMetrics


def test_counters_total_per_queue() -> None:
    counters: Metrics = Counters()
    counters.received("a", 3)
    counters.acknowledged("a", 2)
    counters.rejected("a", 1)
    counters.dead_lettered("a", "not_json")
    counters.dead_lettered("a", "not_json")
    counters.events_written("a", 4)
    counters.retried("a")
    counters.in_flight("a", 3)
    counters.in_flight("a", -2)
    counters.received("b", 1)
    assert isinstance(counters, Counters)
    a = counters["a"]
    assert (a.received, a.acknowledged, a.rejected, a.dead_lettered) == (3, 2, 1, 2)
    assert (a.events_written, a.retries, a.in_flight) == (4, 1, 1)
    assert a.dead_letter_reasons == {"not_json": 2}
    assert counters["b"].received == 1
    assert counters["unknown"].received == 0


def test_latencies_keep_the_latest_observations() -> None:
    counters = Counters(keep=3)
    for n in range(5):
        counters.processing_latency("a", float(n))
        counters.sink_latency("a", n / 10)
    assert counters["a"].processing_seconds == [2.0, 3.0, 4.0]
    assert counters["a"].sink_seconds == [0.2, 0.3, 0.4]


def test_a_snapshot_does_not_move_with_later_counts() -> None:
    counters = Counters()
    counters.received("a", 1)
    before = counters.snapshot()
    counters.received("a", 1)
    assert before["a"].received == 1
    assert counters["a"].received == 2


def test_null_metrics_accepts_everything() -> None:
    metrics: Metrics = NullMetrics()
    metrics.received("a", 1)
    metrics.processing_latency("a", 0.1)
    assert isinstance(metrics, NullMetrics)
