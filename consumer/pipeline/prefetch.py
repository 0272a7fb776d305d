"""Receiving ahead while the batch in hand is handled, and handing what came as one batch.

The fetcher of aiokafka's split: short polls run in a helper thread while the batch in hand is
parsed and committed, so the broker's round trips overlap the pipeline's work. Under a backlog
(each poll came back full) it keeps polling until the worker is done with its batch, up to
`AHEAD` polls; the worker then takes everything received as one batch, so a backlog pays one
transaction (and its fsync) per few polls instead of one per poll: group commit. What it
received is kept invisible by the worker's keepalive from the moment it arrives, and given back
at once, all of it, when the worker stops.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from consumer.sources.base import Message

AHEAD = 4
"""Polls ahead at most: 64 messages of MNS's 16 per poll (at most 4 MiB of bodies, 64 KiB
each), enough for the worker to commit a backlog in a quarter of the transactions, and few
enough that a batch stays a fraction of a second of work and a stop gives back little."""


@dataclass(frozen=True, slots=True)
class Received:
    messages: list[Message]
    started: float
    """`Pipeline.clock()` when the batch arrived (the start of its processing latency)."""


class Prefetcher:
    """Polls ahead in one helper thread; `receive(wait)` is the worker's own receive."""

    def __init__(
        self, receive: Callable[[float], Received], name: str, batch_size: int, ahead: int = AHEAD
    ) -> None:
        self._receive = receive
        self._name = name
        self._batch_size = batch_size
        self._ahead = ahead
        self._executor: ThreadPoolExecutor | None = None
        self._next: Future[list[Received]] | None = None
        self._enough = threading.Event()
        self._error: Exception | None = None
        """A poll that failed after others had received: raised by the `take` after theirs."""

    def start(self) -> None:
        """Start polling for the next batches (one run of polls at a time)."""
        if self._next is not None or self._error is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{self._name}")
        self._enough.clear()
        context = contextvars.copy_context()  # the worker's log context (the runtime binds it)
        self._next = self._executor.submit(context.run, self._fill)

    @property
    def running(self) -> bool:
        """Whether a prefetch was started and not taken yet."""
        return self._next is not None

    def ready(self) -> bool:
        """Whether prefetched messages wait for the next round. Ends the polling: waits for the
        poll in progress (a short poll, mostly done by now), starts no other."""
        future = self._next
        if future is None:
            return False
        self._enough.set()
        try:
            return any(received.messages for received in future.result())
        except Exception:  # the next round raises it, after this batch is settled
            return False

    def take(self) -> Received | None:
        """Everything prefetched as one batch, None when there is none (or it came back empty).

        A failed prefetch raises here what the receive raised, as a receive in hand would.
        """
        future, self._next = self._next, None
        if future is None:
            error, self._error = self._error, None
            if error is not None:
                raise error
            return None
        self._enough.set()
        batches = [received for received in future.result() if received.messages]
        if not batches:
            return None
        if len(batches) == 1:
            return batches[0]
        messages = [message for received in batches for message in received.messages]
        return Received(messages, batches[0].started)

    def close(self) -> None:
        self._enough.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None
        self._error = None

    def _fill(self) -> list[Received]:
        batches = [self._receive(0.0)]  # its failure is the prefetch's
        while (
            len(batches) < self._ahead
            and len(batches[-1].messages) >= self._batch_size
            and not self._enough.is_set()
        ):
            try:
                batches.append(self._receive(0.0))
            except Exception as exc:  # keep what came; the round after theirs raises it
                self._error = exc
                break
        return batches


__all__ = ["AHEAD", "Prefetcher", "Received"]
