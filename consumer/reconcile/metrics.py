"""The reconciler's Prometheus series (names fixed for the product; docs/reconcile.md).

Recorded in the process that runs the reconciler (the daemon's listener), through the same
multiprocess files as every other metric (`consumer.runtime.metrics`).
"""

from __future__ import annotations

import threading
from typing import get_args

from prometheus_client import REGISTRY, CollectorRegistry

from consumer.model import Provider
from consumer.prometheus import Collectors, declare
from consumer.reconcile.query import QUERYABLE, Result


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        make = Collectors("provider", registry)
        self.open = make.gauge(
            "consumer_calls_open",
            "Calls without their final record, within their deadline",
            "livemax",
        )
        self.overdue = make.gauge(
            "consumer_calls_overdue", "Calls past their deadline without a final record", "livemax"
        )
        self.queries = make.counter(
            "consumer_reconcile_queries",
            "Queries to a provider's API for a call's final record, by result",
            "result",
        )
        self.lost = make.counter(
            "consumer_calls_lost",
            "Calls given up after give_up_after without a final record: alert on this",
        )

    def declare(self) -> None:
        """Export the counters at 0 when the reconciler starts: every result of every provider
        it can query, and the lost calls of every provider."""
        declare(self.queries, [provider.value for provider in QUERYABLE], get_args(Result))
        declare(self.lost, [provider.value for provider in Provider])

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
