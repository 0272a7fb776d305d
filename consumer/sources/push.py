"""HTTP push as a `Source`: a request waits here until the commit thread receives it, and its
settlement is its answer (`ack`: 200, `reject`: 503).

The listener's handler `submit`s a request's message from the event loop and awaits its answer;
the queue's commit thread (`consumer.pipeline.push`) `receive`s whatever waits, as one batch, so
the requests that arrive while a commit runs form the next one (a group commit: concurrency 64
costs a few transactions, not 64). What may wait is bounded (`max_pending` requests,
`max_pending_bytes` of bodies): past that a request is refused at once with `Overloaded`.
There is no redelivery: a request answered 503 is retried by its sender, so `reject`'s delay and
`extend` mean nothing, and no visibility lapses (`visibility_timeout` is None).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consumer.errors import Overloaded
from consumer.sources.base import Message


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of a pushed message: committed (200) or not (503), and how."""

    committed: bool
    disposition: str
    """`stored`, `dead_lettered` or `transient` (the `X-Consumer-Result` header)."""


class Outcome(Protocol):
    """A handled message's result as `record` reads it (the pipeline's `Result`)."""

    @property
    def message(self) -> Message: ...

    @property
    def disposition(self) -> str: ...


@dataclass(slots=True, eq=False)
class Request:
    """A pushed message's `handle`: the future its HTTP handler awaits."""

    future: asyncio.Future[Answer]
    size: int
    disposition: str = ""
    """Filled by `record` before the settlement (empty: `ack`/`reject` answer their default)."""


class PushSource:
    """The requests of one push queue, between the listener and the queue's commit thread."""

    concurrent_settle = False
    visibility_timeout: float | None = None

    def __init__(
        self,
        queue: str,
        *,
        max_batch: int = 128,
        max_batch_bytes: int = 8 * 1_048_576,
        max_pending: int = 4096,
        max_pending_bytes: int = 64 * 1_048_576,
    ) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._pending: deque[Message] = deque()
        self._pending_bytes = 0
        self._ready = threading.Condition()
        self._closed = False
        self._unanswered: set[asyncio.Future[Answer]] = set()
        """Submitted and not answered yet (touched on the event loop only)."""
        self._drained: asyncio.Future[None] | None = None
        """What `drain` awaits: done once nothing is left unanswered."""
        self._wake_scheduled = False

    @property
    def waiting(self) -> int:
        """Requests waiting for the next commit (not counting the one in progress)."""
        return len(self._pending)

    # -- the listener's side (event loop) ----------------------------------------------------

    async def submit(self, message: Message) -> Answer:
        """The message's answer once settled; raises `Overloaded` at once when too much waits.

        `message.handle` is replaced: a pushed message's handle is this source's `Request`.
        """
        return await self.enqueue(message.id, message.body, message.delivery_count)

    def enqueue(
        self, message_id: str, body: bytes, delivery_count: int = 1
    ) -> asyncio.Future[Answer]:
        """`submit` for the listener: the future of the message's answer, to await (per
        request, no coroutine frame to resume and no `Message` built only to be rebuilt with
        its handle). Raises `Overloaded` at once when too much waits.

        A client that hangs up cancels only this future, never the commit its message already
        joined: the commit thread reads the message, not the future (`_resolve` skips a
        cancelled one, and `drain` still waits for its settlement). No `asyncio.shield`: its
        extra future and callback hop cost ~12% of the instructions of a request's handling.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        size = len(body)
        pushed = Message(message_id, body, delivery_count, Request(future, size))
        with self._ready:
            if self._closed:
                raise Overloaded("the queue is closing")
            if self._pending and (
                len(self._pending) >= self.max_pending
                or self._pending_bytes + size > self.max_pending_bytes
            ):
                raise Overloaded(
                    f"{len(self._pending)} requests ({self._pending_bytes} bytes) already wait"
                )
            self._pending.append(pushed)
            self._pending_bytes += size
        if not self._wake_scheduled:
            # Woken once the requests read in this turn of the event loop are all waiting, so
            # that an idle commit thread takes them as one batch rather than the first alone.
            self._wake_scheduled = True
            loop.call_soon(self._wake)
        self._unanswered.add(future)
        return future

    def _wake(self) -> None:
        self._wake_scheduled = False
        with self._ready:
            self._ready.notify()

    async def drain(self) -> None:
        """Wait until every submitted message has its answer (its settlement, also when the
        request that awaited it was cancelled: its commit may still be running)."""
        while self._unanswered:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._drained])  # shared by every drain; never cancelled by one

    # -- the commit thread's side ------------------------------------------------------------

    def receive(self, max_count: int, wait: float) -> list[Message]:
        """What waits, up to `max_batch` messages and `max_batch_bytes` (the first one always),
        waiting up to `wait` seconds for the first."""
        limit = min(max_count, self.max_batch)
        with self._ready:
            if not self._pending and not self._closed:
                self._ready.wait(wait)
            batch: list[Message] = []
            size = 0
            while self._pending and len(batch) < limit:
                body = _request(self._pending[0]).size
                if batch and size + body > self.max_batch_bytes:
                    break
                batch.append(self._pending.popleft())
                size += body
            self._pending_bytes -= size
        return batch

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Note each handled message's disposition for its answer (before `ack` / `reject`)."""
        for outcome in outcomes:
            _request(outcome.message).disposition = str(outcome.disposition)

    def ack(self, messages: Sequence[Message]) -> None:
        """Answer committed (200)."""
        self._answer(messages, committed=True, default="stored")

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        """Answer not committed (503): the sender retries, so `delay` is its business."""
        self._answer(messages, committed=False, default="transient")

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        """Nothing to extend: a request waits for its answer however long the commit takes."""

    def close(self) -> None:
        """Refuse new requests and wake a `receive` in progress (after `drain`)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _answer(self, messages: Sequence[Message], *, committed: bool, default: str) -> None:
        # One hop to the event loop per settlement, not one per message: at concurrency 64 the
        # loop's wake-ups are a visible share of each request's latency.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Answer]]] = {}
        for message in messages:
            request = _request(message)
            answer = Answer(committed, request.disposition or default)
            by_loop.setdefault(request.future.get_loop(), []).append((request.future, answer))
        for loop, answers in by_loop.items():
            if not loop.is_closed():  # else nobody is left to answer
                loop.call_soon_threadsafe(self._resolve, answers)

    def _resolve(self, answers: list[tuple[asyncio.Future[Answer], Answer]]) -> None:
        for future, answer in answers:
            self._unanswered.discard(future)
            if not future.done():  # else cancelled: its client is gone
                future.set_result(answer)
        drained = self._drained
        if drained is not None and not self._unanswered and not drained.done():
            drained.set_result(None)


def _request(message: Message) -> Request:
    handle = message.handle
    if not isinstance(handle, Request):
        raise TypeError(f"message {message.id} was not submitted to a push source")
    return handle


__all__ = ["Answer", "Outcome", "PushSource", "Request"]
