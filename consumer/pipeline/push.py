"""The commit side of a push queue: the pull loop over its `PushSource`, on a thread of its own.

A push queue is a source like any other: one dedicated thread runs the `loop.Worker` over it
(receive what waits, `Pipeline.handle` within the push budget, settle through `settle.Settler`:
`ack` answers 200, `reject` 503). The sink is used from that single thread (SQLite connections
refuse other threads) and the event loop never blocks on the database. Besides the loop, a push
queue needs the disposition of each result in its answer, the batch sizes in
`consumer_push_batch_messages`, and the last failure for readiness: `PushCommits`, a middleware
of that worker, keeps them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence

import structlog
from prometheus_client import Histogram

from consumer.pipeline.handler import Pipeline
from consumer.pipeline.loop import Worker
from consumer.pipeline.middleware import Middleware
from consumer.pipeline.results import Result
from consumer.sources.base import Message
from consumer.sources.push import PushSource

log = structlog.get_logger("consumer.http")

BATCH_MESSAGES = Histogram(
    "consumer_push_batch_messages",
    "Push requests committed together in one sink transaction (group commit)",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
IDLE_WAIT = 5.0
"""How long one receive waits for a request (`close` wakes it sooner)."""


class PushCommits(Middleware):
    """Runs one push queue's commits: the worker thread over `source`, started at once."""

    def __init__(self, source: PushSource, pipeline: Pipeline, budget: float | None) -> None:
        """`budget`: seconds of sink retries a push may wait for (below the sender's timeout)."""
        self.source = source
        self.last_failure: str | None = None
        """Why the last commit did not commit (None once one has): readiness reads it."""
        self._batches = BATCH_MESSAGES.labels(pipeline.queue)
        self._worker = Worker(
            source,
            pipeline,
            batch_size=source.max_batch,
            wait=IDLE_WAIT,
            pause=_no_pause,  # a sender retries on its own schedule: the next batch goes now
            prefetch=False,
            middleware=[self],
            budget=budget,
        )
        # The commit thread logs with the caller's context (the listener binds `worker`).
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"push-{pipeline.queue}",
            daemon=True,
        )
        self._thread.start()

    @property
    def pipeline(self) -> Pipeline:
        return self._worker.pipeline

    def after_receive(self, messages: Sequence[Message]) -> None:
        if messages:
            self._batches.observe(len(messages))

    def after_handle(self, results: Sequence[Result]) -> None:
        self.source.record(results)
        failed = next((result for result in results if not result.committed), None)
        self.last_failure = None if failed is None else (failed.error or "not committed")

    def close(self) -> None:
        """Stop the commit thread (after the source's `drain`) and close the source."""
        self._worker.stop()
        self.source.close()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._worker.run()
        except Exception:  # a bug in the source: requests still waiting get no answer
            log.exception("push commit loop failed", queue=self.pipeline.queue)


def _no_pause(_seconds: float) -> None:
    pass


__all__ = ["BATCH_MESSAGES", "PushCommits"]
