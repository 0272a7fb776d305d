"""The entry point for push sources: handle these messages now, and say what became of each.

An HTTP receiver awaits `PushHandler.handle_async(messages)` and answers 200 for committed
results (stored or dead-lettered) and 503 for transient ones, so the sender retries later.
Calls run one at a time on a dedicated thread: the sink is used from a single thread (SQLite
connections refuse other threads) and the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from consumer.pipeline.handler import Pipeline
from consumer.pipeline.results import Result
from consumer.sources.base import Message


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


__all__ = ["PushHandler"]
