"""Settling handled batches: acknowledge what committed, give the rest back with a delay.

The commit step of aiokafka's split: the settler runs in one helper thread, so a batch's ack
overlaps the handling of the next one (a prefetched batch). Settling is only ever called after
the sink committed, and it takes the source's settling lock (the worker's io lock, unless the
source declares `concurrent_settle`).
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from consumer.errors import TransientError
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.keepalive import KeepaliveThread
from consumer.pipeline.results import Result
from consumer.sources.base import Message, Source

log = structlog.get_logger("consumer.pipeline")


class Settler:
    """One helper thread that settles batches in the order they were handled."""

    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        lock: threading.Lock,
        keepalive: Callable[[], KeepaliveThread],
        settled: Callable[[int], None],
    ) -> None:
        """`lock` guards every ack and reject; `settled(n)` is told when n messages are done."""
        self._source = source
        self._pipeline = pipeline
        self._lock = lock
        self._keepalive = keepalive
        self._settled = settled
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def submit(self, results: Sequence[Result], started: float, delay: float) -> None:
        """Settle a handled batch in the helper thread; `delay` is the redelivery of a reject."""
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # raise a bug in a source's ack now
        if self._executor is None:
            name = f"settle-{self._pipeline.queue}"
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        context = contextvars.copy_context()
        self._pending.append(self._executor.submit(context.run, self._run, results, started, delay))

    def settle(self, results: Sequence[Result], started: float, delay: float) -> None:
        """Settle a handled batch now, on the caller's thread, after those submitted before:
        with nothing to overlap (no prefetched batch), the helper thread would only add a
        hand-over between threads (each one a wait for the GIL)."""
        self.flush()
        self._run(results, started, delay)

    def flush(self) -> None:
        """Wait until every submitted batch is settled; raises what a settling raised (a bug)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None

    def give_back(self, messages: Sequence[Message]) -> None:
        """Reject messages that were never handled (a prefetched batch), for redelivery now."""
        try:
            with self._lock:
                self._source.reject(messages, 0.0)
        except TransientError as exc:  # the visibility lapses instead
            log.warning(
                "reject failed; visibility will lapse", queue=self._pipeline.queue, error=str(exc)
            )

    def _run(self, results: Sequence[Result], started: float, delay: float) -> None:
        # Kept alive until now (the ack may wait for a receive in progress); no extension may
        # race the settling (it would renew a handle the ack is about to use): untrack waits
        # for an extension in progress, and later rounds no longer include these messages.
        self._keepalive().untrack([result.message for result in results])
        try:
            acknowledged = self._settle(results, delay)
        finally:
            self._settled(len(results))
        self._pipeline.settled(results, started, acknowledged)

    def _settle(self, results: Sequence[Result], delay: float) -> bool:
        queue = self._pipeline.queue
        done = [result.message for result in results if result.committed]
        retry = [result.message for result in results if not result.committed]
        acknowledged = True
        if done:
            try:
                with self._lock:
                    self._source.ack(done)
            except TransientError as exc:
                acknowledged = False
                log.warning(
                    "ack failed; committed messages will be redelivered and deduplicated",
                    queue=queue,
                    messages=len(done),
                    error=str(exc),
                )
        if retry:
            log.warning(
                "sink unavailable: messages left for redelivery",
                queue=queue,
                messages=len(retry),
                redelivery_in_seconds=round(delay, 3),
                error=next(result.error for result in results if not result.committed),
            )
            try:
                with self._lock:
                    self._source.reject(retry, delay)
            except TransientError as exc:
                log.warning("reject failed; visibility will lapse", queue=queue, error=str(exc))
        return acknowledged


__all__ = ["Settler"]
