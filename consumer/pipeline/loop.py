"""The pull loop: receive a batch, handle it while keeping it invisible, settle every message.

Committed messages (stored or dead-lettered) are acknowledged; the rest are rejected with a
delay and the loop backs off before receiving again, so a sink outage neither loses messages
nor spins. A batch that outlives its visibility would be redelivered under our feet (and handled
twice), so while it is in flight a keepalive thread extends its visibility.

Only a non-transient exception from `Source.receive` (a bug in a source) ends `run`: the runtime
restarts the worker, and every unsettled message comes back by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import structlog

from consumer.errors import TransientError
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.results import Disposition, Result
from consumer.sources.base import Message, Source

log = structlog.get_logger("consumer.pipeline")

Pause = Callable[[float], object]


class Keepalive:
    """Extends the visibility of in-flight messages every third of the visibility timeout.

    The thread only touches the source while the caller is busy with the sink, and it is joined
    before the caller settles the messages: the source is never used from two threads at once.
    """

    def __init__(self, source: Source, messages: Sequence[Message], queue: str) -> None:
        self._source = source
        self._messages = list(messages)
        self._queue = queue
        self._visibility = source.visibility_timeout
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0

    def __enter__(self) -> Keepalive:
        if self._visibility is not None and self._messages:
            self._thread = threading.Thread(
                target=self._run, name=f"keepalive-{self._queue}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert self._visibility is not None
        period = max(self._visibility / 3, 0.01)
        while not self._done.wait(period):
            try:
                self._source.extend(self._messages, self._visibility)
                self.extensions += 1
            except Exception as exc:  # redelivery and dedupe cover a failed extension
                log.warning(
                    "could not extend visibility; the batch may be redelivered",
                    queue=self._queue,
                    messages=len(self._messages),
                    error=f"{type(exc).__name__}: {exc}",
                )


@dataclass
class Worker:
    """Ties one source to one pipeline; `run` until `stop()` is called."""

    source: Source
    pipeline: Pipeline
    batch_size: int = 16
    wait: float = 30.0
    pause: Pause | None = None
    """How to wait between failed rounds; by default an interruptible wait on `stop()`."""
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _failures: int = field(default=0, init=False)

    def stop(self) -> None:
        """Finish the batch in hand (cutting its sink retries short), then return from `run`."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        log.info("worker started", queue=self.pipeline.queue, batch_size=self.batch_size)
        while not self._stopping.is_set():
            self.run_once()
        log.info("worker stopped", queue=self.pipeline.queue)

    def run_once(self) -> list[Result]:
        """One round: receive, handle, settle. Returns what became of each message."""
        queue = self.pipeline.queue
        try:
            messages = self.source.receive(self.batch_size, self.wait)
        except TransientError as exc:
            log.warning("source unavailable", queue=queue, error=str(exc))
            self._back_off()
            return []
        if not messages:
            return []
        started = self.pipeline.clock()
        try:
            with Keepalive(self.source, messages, queue):
                results = self.pipeline.handle(messages, cancel=self._stopping)
        except Exception as exc:
            # A bug in the pipeline itself: what committed is unknown, so nothing is acked.
            # The batch comes back; a message that keeps causing this ends in dead_letters
            # once it passes max_deliveries, before it is parsed.
            log.exception("pipeline failed: batch left for redelivery", queue=queue)
            error = f"{type(exc).__name__}: {exc}"
            results = [
                Result(message, Disposition.TRANSIENT, 0, "pipeline_error", error)
                for message in messages
            ]
        acknowledged = self._settle(results)
        self.pipeline.settled(results, started, acknowledged)
        if all(result.committed for result in results):
            self._failures = 0
        else:
            self._back_off()
        return results

    def _settle(self, results: Sequence[Result]) -> bool:
        queue = self.pipeline.queue
        done = [result.message for result in results if result.committed]
        retry = [result.message for result in results if not result.committed]
        acknowledged = True
        if done:
            try:
                self.source.ack(done)
            except TransientError as exc:
                acknowledged = False
                log.warning(
                    "ack failed; committed messages will be redelivered and deduplicated",
                    queue=queue,
                    messages=len(done),
                    error=str(exc),
                )
        if retry:
            delay = self._delay(self._failures + 1)
            log.warning(
                "sink unavailable: messages left for redelivery",
                queue=queue,
                messages=len(retry),
                redelivery_in_seconds=round(delay, 3),
                error=next(result.error for result in results if not result.committed),
            )
            try:
                self.source.reject(retry, delay)
            except TransientError as exc:
                log.warning("reject failed; visibility will lapse", queue=queue, error=str(exc))
        return acknowledged

    def _delay(self, failures: int) -> float:
        retry = self.pipeline.retry
        initial = max(retry.initial.total_seconds(), 0.001)
        return float(min(retry.max.total_seconds(), initial * 2 ** (failures - 1)))

    def _back_off(self) -> None:
        self._failures += 1
        delay = self._delay(self._failures)
        if self.pause is not None:
            self.pause(delay)
        else:
            self._stopping.wait(delay)


def run_worker(worker: Worker) -> threading.Thread:
    """Run a worker in a daemon thread (tests, the demo); `worker.stop()` then `join()`."""
    name = f"worker-{worker.pipeline.queue}"
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    return thread


__all__ = ["Keepalive", "Worker", "run_worker"]
