"""The Prometheus `Metrics`: names, labels, the heartbeat, and the sum across worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.pipeline.metrics import Metrics
from consumer.runtime.metrics import (
    MULTIPROC_ENV,
    PrometheusMetrics,
    aggregated_registry,
    mark_dead,
    prepare_directory,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def q(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_every_pipeline_call_becomes_a_labelled_sample() -> None:
    # Given the exporter on a fresh registry, with a heartbeat counter
    registry = CollectorRegistry()
    beats: list[int] = []
    metrics: Metrics = PrometheusMetrics(registry, activity=lambda: beats.append(1))
    # When the pipeline reports one batch of three messages
    metrics.received("vms", 3)
    metrics.in_flight("vms", 3)
    metrics.sink_latency("vms", 0.004)
    metrics.retried("vms")
    metrics.sink_latency("vms", 0.002)
    metrics.events_written("vms", 4)
    metrics.dead_lettered("vms", "invalid_json")
    metrics.acknowledged("vms", 2)
    metrics.rejected("vms", 1)
    metrics.in_flight("vms", -3)
    for _ in range(3):
        metrics.processing_latency("vms", 0.2)
    # Then the exposition has the sdk-notes.md 7.6 names, labelled by queue only
    found = samples(registry)
    assert found[q("consumer_messages_received_total", queue="vms")] == 3
    assert found[q("consumer_messages_acked_total", queue="vms")] == 2
    assert found[q("consumer_messages_nacked_total", queue="vms")] == 1
    assert found[q("consumer_events_written_total", queue="vms")] == 4
    assert found[q("consumer_dead_letters_total", queue="vms", reason="invalid_json")] == 1
    assert found[q("consumer_sink_retries_total", queue="vms")] == 1
    assert found[q("consumer_inflight_messages", queue="vms")] == 0
    assert found[q("consumer_message_latency_seconds_count", queue="vms")] == 3
    assert found[q("consumer_message_latency_seconds_bucket", queue="vms", le="0.25")] == 3
    assert found[q("consumer_sink_latency_seconds_count", queue="vms")] == 2
    # And every observation was a heartbeat
    assert len(beats) == 13


def test_source_up_is_a_gauge_per_queue() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.source_up("bot", True)
    metrics.source_up("vms", False)
    found = samples(registry)
    assert found[q("consumer_source_up", queue="bot")] == 1
    assert found[q("consumer_source_up", queue="vms")] == 0


def test_a_declared_queue_exports_zeros_before_its_first_message() -> None:
    # Given a queue declared and nothing else done
    registry = CollectorRegistry()
    PrometheusMetrics(registry).declare("vms")
    found = samples(registry)
    # Then its counters, gauges and histograms exist, at 0
    for name in (
        "consumer_messages_received_total",
        "consumer_messages_acked_total",
        "consumer_messages_nacked_total",
        "consumer_events_written_total",
        "consumer_sink_retries_total",
        "consumer_inflight_messages",
        "consumer_message_latency_seconds_count",
        "consumer_sink_latency_seconds_count",
    ):
        assert found[q(name, queue="vms")] == 0, name


_CHILD = """
import sys
from consumer.runtime.metrics import PrometheusMetrics
m = PrometheusMetrics()
m.received("bot", int(sys.argv[1]))
m.in_flight("bot", int(sys.argv[2]))
m.source_up("bot", sys.argv[3] == "up")
"""


def test_counters_add_up_across_processes_and_dead_ones_leave_the_gauges(tmp_path: Path) -> None:
    # Given a multiprocess directory with a stale file from an earlier run
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999.db").write_bytes(b"stale")
    prepare_directory(directory)
    assert list(directory.iterdir()) == []
    # When two worker processes record into it
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    first = subprocess.run([sys.executable, "-c", _CHILD, "5", "2", "up"], env=env, check=True)
    subprocess.run([sys.executable, "-c", _CHILD, "7", "1", "down"], env=env, check=True)
    assert first.returncode == 0
    # Then the aggregated registry sums their counters and live gauges
    found = samples(aggregated_registry(directory))
    assert found[q("consumer_messages_received_total", queue="bot")] == 12
    assert found[q("consumer_inflight_messages", queue="bot")] == 3
    # And source_up is the minimum over the processes: one of them is down
    assert found[q("consumer_source_up", queue="bot")] == 0
    # When both are marked dead, their counters stay but their gauges go
    for path in directory.glob("gauge_live*_*.db"):
        mark_dead(int(path.stem.rsplit("_", 1)[1]), directory)
    found = samples(aggregated_registry(directory))
    assert found[q("consumer_messages_received_total", queue="bot")] == 12
    assert q("consumer_inflight_messages", queue="bot") not in found
