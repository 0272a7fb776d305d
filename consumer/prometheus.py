"""The one way the daemon's metric sets make their Prometheus collectors.

The pipeline (`runtime/metrics.py`), the archiver and the reconciler each keep a set of
collectors in one registry, all labelled first by the same label (the queue, the provider), and
each must export its counters at 0 before the first observation. `Collectors` holds what those
sets share, so that each declares only its names, help texts and extra labels; the series names
are the product's (the Prometheus rules and the dashboard name them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

GaugeMode = Literal["livesum", "livemax", "livemin"]
"""How a gauge adds up over processes: only live ones count (a dead worker's value is dropped)."""


class Collectors:
    """Makes collectors in `registry`, each labelled `label` first, then its own `extra`."""

    def __init__(self, label: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.label = label
        self.registry = registry

    def _labels(self, extra: Sequence[str]) -> list[str]:
        return [self.label, *extra]

    def counter(self, name: str, documentation: str, *extra: str) -> Counter:
        return Counter(name, documentation, self._labels(extra), registry=self.registry)

    def gauge(self, name: str, documentation: str, mode: GaugeMode) -> Gauge:
        return Gauge(
            name, documentation, [self.label], registry=self.registry, multiprocess_mode=mode
        )

    def histogram(self, name: str, documentation: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, documentation, [self.label], registry=self.registry, buckets=buckets)


def declare(metric: MetricWrapperBase, *values: Iterable[str]) -> None:
    """Export the series of every combination of label `values` at 0: an alert on
    `increase()` or on a silent series needs it to exist before the first observation."""
    for labels in itertools.product(*values):
        metric.labels(*labels)


__all__ = ["Collectors", "GaugeMode", "declare"]
