"""The entry point for push sources: handle these messages now, and say what became of each.

An HTTP receiver awaits `PushHandler.handle_async(messages)` and answers 200 for committed
results (stored or dead-lettered) and 503 for transient ones, so the sender retries later.
Calls run one at a time on a dedicated thread: the sink is used from a single thread (SQLite
connections refuse other threads) and the event loop never blocks on the database.
`GroupCommit` gathers the requests that arrive while a commit runs into the next one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog
from prometheus_client import Histogram

from consumer.errors import Overloaded, Reason, describe
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.results import Disposition, Result
from consumer.sources.base import Message

log = structlog.get_logger("consumer.http")


class PushHandler:
    def __init__(self, pipeline: Pipeline, budget: float | None = None) -> None:
        """`budget`: seconds of sink retries a push may wait for (below the sender's timeout)."""
        self.pipeline = pipeline
        self.budget = budget
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"push-{pipeline.queue}"
        )

    def handle(self, messages: Sequence[Message]) -> list[Result]:
        """Synchronous form, on the caller's thread (for callers that own the sink's thread)."""
        started = self.pipeline.clock()
        results = self.pipeline.handle(messages, self.budget)
        self.pipeline.settled(results, started)
        return results

    async def handle_async(self, messages: Sequence[Message]) -> list[Result]:
        loop = asyncio.get_running_loop()
        # The commit thread logs with the caller's context (the listener binds `worker`).
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self.handle, list(messages))

    def close(self) -> None:
        """Wait for the call in progress, then release the thread."""
        self._executor.shutdown(wait=True)


BATCH_MESSAGES = Histogram(
    "consumer_push_batch_messages",
    "Push requests committed together in one sink transaction (group commit)",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class GroupCommit:
    """Commits the requests that arrive while a commit is running together, in the next one.

    One `PushHandler.handle_async` call at a time (the handler runs the sink on one thread
    anyway); every waiting request joins the next call, up to `max_batch` requests or
    `max_batch_bytes` of bodies. Concurrency 64 thus costs a few transactions instead of 64.
    Each request still gets its own `Result`. What may wait is bounded too (`max_pending`
    requests, `max_pending_bytes`): past that a request is answered 503 at once.
    """

    def __init__(
        self,
        queue: str,
        handler: PushHandler,
        *,
        max_batch: int = 128,
        max_batch_bytes: int = 8 * 1_048_576,
        max_pending: int = 4096,
        max_pending_bytes: int = 64 * 1_048_576,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._pending: deque[tuple[Message, asyncio.Future[Result]]] = deque()
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self.last_failure: str | None = None
        """Why the last commit did not commit (None once one has): readiness reads it."""

    @property
    def waiting(self) -> int:
        """Requests waiting for the next commit (not counting the one in progress)."""
        return len(self._pending)

    async def submit(self, message: Message) -> Result:
        size = len(message.body)
        if self._pending and (
            len(self._pending) >= self.max_pending
            or self._pending_bytes + size > self.max_pending_bytes
        ):
            raise Overloaded(
                f"{len(self._pending)} requests ({self._pending_bytes} bytes) already wait"
            )
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        self._pending_bytes += size
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"push-commit-{self.queue}")
        # A client that hangs up does not cancel the commit its body already joined.
        return await asyncio.shield(future)

    def _next_batch(self) -> list[tuple[Message, asyncio.Future[Result]]]:
        batch: list[tuple[Message, asyncio.Future[Result]]] = []
        size = 0
        while self._pending and len(batch) < self.max_batch:
            body = len(self._pending[0][0].body)
            if batch and size + body > self.max_batch_bytes:
                break
            batch.append(self._pending.popleft())
            size += body
        self._pending_bytes -= size
        return batch

    async def _run(self) -> None:
        while self._pending:
            batch = self._next_batch()
            messages = [message for message, _ in batch]
            BATCH_MESSAGES.labels(self.queue).observe(len(messages))
            try:
                results = await self.handler.handle_async(messages)
            except Exception as exc:  # a bug in the sink: answer 503 and lose nothing
                log.exception("push pipeline failed: answering 503", queue=self.queue)
                error = describe(exc)
                results = [
                    Result(m, Disposition.TRANSIENT, 0, Reason.TRANSIENT, error) for m in messages
                ]
            failed = next((r for r in results if not r.committed), None)
            self.last_failure = None if failed is None else (failed.error or "not committed")
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def drain(self) -> None:
        """Wait until every submitted request has its result."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def close(self) -> None:
        """Release the commit thread (after `drain`)."""
        self.handler.close()


__all__ = ["BATCH_MESSAGES", "GroupCommit", "PushHandler"]
