"""The archive's Prometheus series (names fixed for dashboards), per provider.

Recorded into the process's multiprocess files like every other metric (`runtime/metrics.py`),
so the listener's `/metrics` serves them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry

from consumer.model import Provider
from consumer.prometheus import Collectors, declare
from consumer.sinks.recordings import STATUSES

DOWNLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
FINISHED = tuple(status for status in STATUSES if status != "pending")
"""The `status` label of `consumer_recordings_finished_total`: every final status."""


class ArchiveMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        make = Collectors("provider", registry)
        self.finished = make.counter(
            "consumer_recordings_finished",
            "Recordings that reached a final status: archived, failed, expired, refused",
            "status",
        )
        self.pending = make.gauge(
            "consumer_recordings_pending", "Recordings waiting to be archived", "livemax"
        )
        self.bytes = make.counter("consumer_recording_bytes", "Bytes of archived recordings")
        self.download = make.histogram(
            "consumer_recording_download_seconds",
            "Download and store of one archived recording",
            DOWNLOAD_BUCKETS,
        )

    def declare(self) -> None:
        """Export every provider's counters and histogram at 0 when the archiver starts."""
        providers = [provider.value for provider in Provider]
        declare(self.finished, providers, FINISHED)
        declare(self.bytes, providers)
        declare(self.download, providers)

    def set_pending(self, counts: dict[str, int], providers: Iterable[str]) -> None:
        for provider in {*providers, *counts}:
            self.pending.labels(provider).set(counts.get(provider, 0))


__all__ = ["FINISHED", "ArchiveMetrics"]
