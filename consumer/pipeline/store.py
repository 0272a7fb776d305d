"""Units to committed rows: one sink transaction per batch, transient failures retried.

- `TransientError` (database down or locked) is retried with tenacity, bounded by the queue's
  `retry` attempts and by a deadline (its `total`, or less when the caller's budget is shorter).
  When that runs out nothing of the batch is committed and every unit is `TRANSIENT`.
- `RejectedData` means some value the database refuses. One bad message must not block the
  queue, so the batch is stored again one unit at a time and the unit that still fails is
  quarantined as a `sink_rejected` dead letter.
- Anything else is a bug in the sink; it propagates, nothing is acknowledged and the batch
  comes back (quarantining good messages for a bug would be worse).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
import tenacity

from consumer.config.model import RetryConfig
from consumer.errors import Reason, RejectedData, TransientError, describe
from consumer.logs import message_context
from consumer.pipeline.metrics import Metrics, NullMetrics
from consumer.pipeline.normalize import Unit, dead_letter
from consumer.pipeline.results import Disposition, Result
from consumer.sinks.base import DeadLetter, Sink, StoredEvent

log = structlog.get_logger("consumer.pipeline")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class _BudgetExhausted(Exception):
    def __init__(self, cause: TransientError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Committer:
    """Stores units in a sink; `clock` and `sleep` are injectable so tests never wait.

    `cancel`, when set (the worker is shutting down), ends the retries at once: the batch is
    left for redelivery rather than holding up the shutdown.
    """

    sink: Sink
    retry: RetryConfig
    queue: str
    metrics: Metrics = field(default_factory=NullMetrics)
    clock: Clock = time.monotonic
    sleep: Sleep | None = None
    """None: `time.sleep`, cut short by `cancel`."""
    cancel: threading.Event | None = None

    def commit(self, units: Sequence[Unit], budget: float | None = None) -> list[Result]:
        """Store units and say what became of each, in order.

        Raises only what the sink raises besides `TransientError` and `RejectedData`: a bug.
        """
        if not units:
            return []
        total = self.retry.total.total_seconds()
        deadline = self.clock() + (total if budget is None else min(total, budget))
        try:
            self._store(units, deadline)
        except _BudgetExhausted as exc:
            return [_transient(unit, exc.cause) for unit in units]
        except RejectedData as exc:  # the database refused something: isolate it
            if len(units) == 1:
                return [self._quarantine(units[0], exc, deadline)]
            log.warning(
                "sink refused a batch: storing its messages one by one",
                queue=self.queue,
                messages=len(units),
                error=describe(exc),
            )
            return self._isolate(units, deadline)
        return [_committed(unit) for unit in units]

    def _isolate(self, units: Sequence[Unit], deadline: float) -> list[Result]:
        results: list[Result] = []
        for index, unit in enumerate(units):
            try:
                self._store([unit], deadline)
            except _BudgetExhausted as exc:
                results.extend(_transient(rest, exc.cause) for rest in units[index:])
                return results
            except RejectedData as exc:
                results.append(self._quarantine(unit, exc, deadline))
            else:
                results.append(_committed(unit))
        return results

    def _quarantine(self, unit: Unit, refused: RejectedData, deadline: float) -> Result:
        seen_at = _seen_at(unit)
        letter = dead_letter(
            self.queue, unit.message, Reason.SINK_REJECTED, describe(refused), seen_at
        )
        with message_context(queue=self.queue, message_id=unit.message.id):
            log.error("sink refused a message: quarantining it", error=letter.error)
            try:
                self._store([Unit(unit.message, dead_letter=letter)], deadline)
            except _BudgetExhausted as exc:
                return _transient(unit, exc.cause)
            except RejectedData as exc:
                # Not even the dead letter fits: leave the message to redelivery; after
                # max_deliveries it comes back as a plain dead letter without its events.
                log.error("sink refused the dead letter too", error=describe(exc))
                return Result(
                    unit.message, Disposition.TRANSIENT, 0, Reason.SINK_ERROR, describe(exc)
                )
        return Result(
            unit.message, Disposition.DEAD_LETTERED, 0, Reason.SINK_REJECTED, letter.error
        )

    def _store(self, units: Sequence[Unit], deadline: float) -> None:
        events: list[StoredEvent] = [event for unit in units for event in unit.events]
        letters: list[DeadLetter] = [u.dead_letter for u in units if u.dead_letter is not None]
        initial = self.retry.initial.total_seconds()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_attempt(self.retry.attempts)
            | _StopAt(deadline, self.clock)
            | _Cancelled(self.cancel),
            wait=tenacity.wait_exponential(multiplier=initial, max=self.retry.max.total_seconds())
            + tenacity.wait_random(0, initial / 2),
            sleep=self._pause,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        last: TransientError | None = None
        try:
            for attempt in retrying:
                with attempt:
                    if last is not None and self.cancel is not None and self.cancel.is_set():
                        raise last  # woken by a shutdown: give up without another attempt
                    started = self.clock()
                    try:
                        self.sink.store(events, letters)
                    except TransientError as exc:
                        last = exc
                        raise
                    finally:
                        self.metrics.sink_latency(self.queue, self.clock() - started)
        except TransientError as exc:
            raise _BudgetExhausted(exc) from exc
        self.metrics.events_written(self.queue, len(events))

    def _pause(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.cancel is not None:
            self.cancel.wait(seconds)
        else:
            time.sleep(seconds)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.metrics.retried(self.queue)
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "sink unavailable: retrying",
            queue=self.queue,
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
            error=describe(error),
        )


class _StopAt(tenacity.stop.stop_base):
    """Stop when the next sleep would end past the batch's deadline (the batch, not the call)."""

    def __init__(self, deadline: float, clock: Clock) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + retry_state.upcoming_sleep >= self.deadline


class _Cancelled(tenacity.stop.stop_base):
    def __init__(self, cancel: threading.Event | None) -> None:
        self.cancel = cancel

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.cancel is not None and self.cancel.is_set()


def _committed(unit: Unit) -> Result:
    if unit.dead_letter is not None:
        letter = unit.dead_letter
        return Result(unit.message, Disposition.DEAD_LETTERED, 0, letter.reason, letter.error)
    return Result(unit.message, Disposition.STORED, len(unit.events))


def _transient(unit: Unit, cause: TransientError) -> Result:
    return Result(unit.message, Disposition.TRANSIENT, 0, Reason.TRANSIENT, describe(cause))


def _seen_at(unit: Unit) -> datetime:
    if unit.events:
        return unit.events[0].received_at
    if unit.dead_letter is not None:
        return unit.dead_letter.seen_at
    raise ValueError("a unit holds events or a dead letter")


__all__ = ["Committer"]
