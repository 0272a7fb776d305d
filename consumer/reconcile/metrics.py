"""The reconciler's Prometheus series (names fixed for the product; docs/reconcile.md).

Recorded in the process that runs the reconciler (the daemon's listener), through the same
multiprocess files as every other metric (`consumer.runtime.metrics`).
"""

from __future__ import annotations

import threading
from typing import get_args

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from consumer.model import Provider
from consumer.reconcile.query import QUERYABLE, Result


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        p = ["provider"]
        self.open = Gauge(
            "consumer_calls_open",
            "Calls without their final record, within their deadline",
            p,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.overdue = Gauge(
            "consumer_calls_overdue",
            "Calls past their deadline without a final record",
            p,
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.queries = Counter(
            "consumer_reconcile_queries",
            "Queries to a provider's API for a call's final record, by result",
            ["provider", "result"],
            registry=registry,
        )
        self.lost = Counter(
            "consumer_calls_lost",
            "Calls given up after give_up_after without a final record: alert on this",
            p,
            registry=registry,
        )

    def declare(self) -> None:
        """Export the counters at 0 when the reconciler starts, so that `increase()` alerts
        work from the first scrape: every result of every provider it can query, and the lost
        calls of every provider."""
        for provider in QUERYABLE:
            for result in get_args(Result):
                self.queries.labels(provider.value, result)
        for provider in Provider:
            self.lost.labels(provider.value)

    def counts(self, provider: str, open_calls: int, overdue_calls: int) -> None:
        self.open.labels(provider).set(open_calls)
        self.overdue.labels(provider).set(overdue_calls)

    def query(self, provider: str, result: Result) -> None:
        self.queries.labels(provider, result).inc()

    def calls_lost(self, provider: str, count: int) -> None:
        self.lost.labels(provider).inc(count)


_default: ReconcileMetrics | None = None
_lock = threading.Lock()


def default_metrics() -> ReconcileMetrics:
    """The process's one set of collectors in the default registry."""
    global _default  # noqa: PLW0603 - collectors register once per process
    with _lock:
        if _default is None:
            _default = ReconcileMetrics()
        return _default


__all__ = ["ReconcileMetrics", "default_metrics"]
