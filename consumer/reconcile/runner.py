"""The reconciler: every `reconcile.every`, move call states and ask for overdue records.

One pass, under the `reconcile_state` lease (one reconciler per database at a time, renewed
before each query so that a pass longer than the lease never overlaps another daemon's):
1. per provider, overdue calls (of an earlier pass) older than `give_up_after` become `lost`
   (logged, counted), and open calls whose last event is older than the provider's deadline
   become `overdue`;
2. each overdue call of a provider with a configured query API is asked for; what comes back is
   stored as an ordinary `call.record` through the sink's store transaction (the calls merge,
   the outbox, `state = final`), so nothing downstream can tell it from a push.
Failed queries are retried with backoff (tenacity) when a retry may help, logged with the
reason and counted; a signature or credential failure is logged as an error on every pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
import tenacity

from consumer.background import Background, lease_owner
from consumer.config.model import Config, ReconcileConfig
from consumer.errors import describe
from consumer.model import Normalized, Provider
from consumer.reconcile.metrics import ReconcileMetrics, default_metrics
from consumer.reconcile.query import Query, QueryError, Result
from consumer.reconcile.rules import State
from consumer.sinks.base import StoredEvent
from consumer.sinks.reconcile import CallStates, OwedCall
from consumer.sinks.sql import SqlSink

log = structlog.get_logger("consumer.reconcile")

LEASE = "reconciler"
QUEUE = "reconcile"
"""`call_events.queue` of what the reconciler stores."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What asking for one call gave."""

    call: OwedCall
    result: Result
    record: Normalized | None = None
    reason: str | None = None


def build_queries(config: ReconcileConfig) -> dict[Provider, Query]:
    """The query clients of the configured providers."""
    queries: dict[Provider, Query] = {}
    if config.aliyun_vms is not None:
        from consumer.reconcile.aliyun_vms import VmsCallDetail  # noqa: PLC0415

        queries[Provider.ALIYUN_VMS] = VmsCallDetail(config.aliyun_vms)
    if config.aliyun_outbound_bot is not None:
        from consumer.reconcile.aliyun_outbound_bot import OutboundBotJob  # noqa: PLC0415

        queries[Provider.ALIYUN_OUTBOUND_BOT] = OutboundBotJob(config.aliyun_outbound_bot)
    return queries


class Reconciler(Background):
    thread_name = "consumer-reconcile"

    def __init__(
        self,
        config: ReconcileConfig,
        sink: SqlSink,
        queries: Mapping[Provider, Query],
        *,
        metrics: ReconcileMetrics | None = None,
        clock: Callable[[], float] = time.time,
        attempts: int = 4,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        super().__init__()
        self.config = config
        self.sink = sink
        self.states = CallStates(sink)
        self.queries = dict(queries)
        self.metrics = metrics or default_metrics()
        self.clock = clock
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.every = config.every.total_seconds()
        self.lease_seconds = max(60.0, 3 * self.every)
        self.owner = lease_owner()

    # -- one pass ----------------------------------------------------------------------------

    def run_pass(self) -> list[Answer] | None:
        """One pass; the answers, or None when another reconciler holds the lease."""
        if not self.states.claim(LEASE, self.owner, self.clock(), self.lease_seconds):
            self.publish_counts()
            return None
        answers: list[Answer] = []
        try:
            for provider in Provider:
                self._move_states(provider)
                query = self.queries.get(provider)
                if query is None:
                    continue
                for call in self.states.overdue(provider.value):
                    if self._stop.is_set() or not self._renew():
                        return answers
                    answer = self.ask(query, call)
                    if answer.record is not None:
                        self.store(answer.record)
                    answers.append(answer)
        finally:
            self.states.release(LEASE, self.owner, self.clock())
            self.publish_counts()
        return answers

    def _renew(self) -> bool:
        return self.states.claim(LEASE, self.owner, self.clock(), self.lease_seconds)

    def _move_states(self, provider: Provider) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        # Lost first: only calls overdue since an earlier pass, so that each overdue call is
        # asked for at least once (a daemon that was down past give_up_after still asks).
        lost = self.states.mark_lost(provider.value, now - self.config.give_up_after)
        deadline = getattr(self.config.deadlines, provider.value)
        overdue = self.states.mark_overdue(provider.value, now - deadline)
        if overdue:
            log.info("calls overdue", provider=provider.value, calls=overdue)
        if lost:
            self.metrics.calls_lost(provider.value, len(lost))
            log.warning(
                "calls lost: no final record within give_up_after",
                provider=provider.value,
                calls=len(lost),
                call_ids=[call_id[:64] for call_id in lost[:20]],
            )

    def publish_counts(self) -> None:
        counts = self.states.counts()
        for provider in Provider:
            self.metrics.counts(
                provider.value,
                counts.get((provider.value, State.OPEN.value), 0),
                counts.get((provider.value, State.OVERDUE.value), 0),
            )

    # -- one call ----------------------------------------------------------------------------

    def ask(self, query: Query, call: OwedCall) -> Answer:
        """Ask for one call's record, retrying what may pass; every attempt is counted."""
        provider = query.provider.value

        def attempt() -> Normalized | None:
            try:
                record = query.fetch(call)
            except QueryError as exc:
                self.metrics.query(provider, exc.result)
                raise
            except Exception as exc:  # a bug in a client must not end the pass
                self.metrics.query(provider, "error")
                raise QueryError("error", describe(exc), retry=False) from exc
            self.metrics.query(provider, "found" if record is not None else "not_found")
            return record

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, QueryError) and e.retry),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.initial_backoff, max=self.max_backoff),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            record = retrying(attempt)
        except QueryError as exc:
            fields = {"provider": provider, "call_id": call.call_id[:64], "reason": exc.reason}
            if exc.result == "auth_error":
                log.error("reconcile query refused: check the credentials", **fields)
            else:
                log.warning("reconcile query failed", result=exc.result, **fields)
            return Answer(call, exc.result, reason=exc.reason)
        if record is None:
            return Answer(call, "not_found")
        log.info(
            "final record fetched",
            provider=provider,
            call_id=call.call_id[:64],
            outcome=record.event.outcome,
        )
        return Answer(call, "found", record)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a shutdown cuts the backoff short

    def store(self, record: Normalized) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        event = record.event
        stored = StoredEvent(record, QUEUE, f"reconcile:{event.event_id}", now)
        self.sink.store([stored], [])

    # -- the thread --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Passes every `every` until `stop()`; failures are logged and never end the loop."""
        while not stop.is_set():
            try:
                self.run_pass()
            except Exception as exc:
                log.warning("reconcile pass failed", error=describe(exc))
            stop.wait(self.every)

    def start(self) -> threading.Thread:
        self.metrics.declare()
        return super().start()

    def close(self, timeout: float | None = None) -> None:
        """Stop, then close the sink (the daemon's reconciler owns its own)."""
        self.stop(timeout)
        self.sink.close()


def open_reconciler(config: Config) -> Reconciler | None:
    """The daemon's reconciler on its own sink; None without a `reconcile:` section."""
    if config.reconcile is None:
        return None
    from consumer.sinks import open_sink  # noqa: PLC0415

    return Reconciler(config.reconcile, open_sink(config.sink), build_queries(config.reconcile))


__all__ = ["LEASE", "QUEUE", "Answer", "Reconciler", "build_queries", "open_reconciler"]
