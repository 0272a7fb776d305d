"""Receiving the next batch while the current one is handled: at most one batch ahead.

The fetcher of aiokafka's split, bounded to a single batch: a short poll runs in a helper thread
while the batch in hand is parsed and committed, so the broker's round trip overlaps the
pipeline's work. What it received is kept invisible by the worker's keepalive from the moment it
arrives, and given back at once when the worker stops.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from consumer.sources.base import Message


@dataclass(frozen=True, slots=True)
class Received:
    messages: list[Message]
    started: float
    """`Pipeline.clock()` when the batch arrived (the start of its processing latency)."""


class Prefetcher:
    """One receive ahead, in one helper thread; `receive(wait)` is the worker's own receive."""

    def __init__(self, receive: Callable[[float], Received], name: str) -> None:
        self._receive = receive
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._next: Future[Received] | None = None

    def start(self) -> None:
        """Start a short poll for the next batch (never more than one ahead)."""
        if self._next is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{self._name}")
        context = contextvars.copy_context()  # the worker's log context (the runtime binds it)
        self._next = self._executor.submit(context.run, self._receive, 0.0)

    @property
    def running(self) -> bool:
        """Whether a prefetch was started and not taken yet."""
        return self._next is not None

    def ready(self) -> bool:
        """Whether a prefetched batch with messages waits for the next round (waits for the
        prefetch to finish: a short poll, mostly done by now)."""
        future = self._next
        if future is None:
            return False
        try:
            return bool(future.result().messages)
        except Exception:  # the next round raises it, after this batch is settled
            return False

    def take(self) -> Received | None:
        """The prefetched batch, None when there is none (or it came back empty).

        A failed prefetch raises here what the receive raised, as a receive in hand would.
        """
        future, self._next = self._next, None
        if future is None:
            return None
        received = future.result()
        return received if received.messages else None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None


__all__ = ["Prefetcher", "Received"]
