"""Keeping received messages invisible while they are handled.

A batch that outlives its visibility would be redelivered under our feet (and handled twice),
so every received message that is not settled yet is extended every third of the source's
visibility timeout. `KeepaliveThread` is the worker's (one long-lived thread: the heartbeat of
aiokafka's split); `Keepalive` is one thread per batch, for callers that hold a batch themselves.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Sequence
from types import TracebackType

import structlog

from consumer.errors import describe
from consumer.sources.base import Message, Source

log = structlog.get_logger("consumer.pipeline")


class Keepalive:
    """Extends the visibility of in-flight messages every third of the visibility timeout.

    One thread per batch, kept for callers that hold a batch themselves; the `Worker` uses the
    long-lived `KeepaliveThread` instead (starting a thread per batch cost ~0.3 ms).

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
                    error=describe(exc),
                )


class KeepaliveThread:
    """One long-lived thread per worker that keeps every tracked message invisible.

    Messages are tracked from the moment they are received (prefetched ones included) until
    the worker settles them. Every third of the source's visibility timeout, all tracked
    messages are extended in one call, under the worker's io lock. A message tracked just
    after a round is extended at the next one, well within its visibility. `untrack` waits
    for an extension in progress, so an extension never races the settling of a message.
    The thread starts with the first tracked message and ends after `idle` seconds without
    any (or at `close`).

    Why a slow message cannot make its batch-mates come back: this thread takes only the io
    lock, which normalization never holds, so it never waits for the batch in hand; and
    normalization holds the interpreter for one C call at most, which linear decoding and the
    4 MiB body cap bound (`formats/_bodies.py`; about 0.2 s at worst, measured by
    `bench/bench_hostile.py`), so this thread gets the GIL back within that. Batch-mates are
    extended while a neighbour normalizes, never redelivered for it, and their delivery count
    (which `max_deliveries` judges before parsing) stays a count of their own failures.
    """

    def __init__(self, source: Source, queue: str, io: threading.Lock, idle: float = 5.0) -> None:
        self._source = source
        self._queue = queue
        self._io = io
        self._idle = idle
        self._cond = threading.Condition()
        self._tracked: dict[int, Message] = {}
        self._extending = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.extensions = 0
        """Successful extension rounds (tests, diagnostics)."""

    def track(self, messages: Sequence[Message]) -> None:
        if self._source.visibility_timeout is None:
            return  # nothing lapses (an HTTP push): nothing to extend
        with self._cond:
            for message in messages:
                self._tracked[id(message)] = message
            if self._thread is None and not self._closed:
                context = contextvars.copy_context()
                self._thread = threading.Thread(
                    target=context.run,
                    args=(self._run,),
                    name=f"keepalive-{self._queue}",
                    daemon=True,
                )
                self._thread.start()

    def untrack(self, messages: Sequence[Message]) -> None:
        with self._cond:
            while self._extending:
                self._cond.wait()
            for message in messages:
                self._tracked.pop(id(message), None)

    @property
    def tracked(self) -> int:
        with self._cond:
            return len(self._tracked)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            visibility = self._source.visibility_timeout
            period = max(visibility / 3, 0.01) if visibility is not None else self._idle
            tick = time.monotonic() + period
            with self._cond:
                while not self._closed and (left := tick - time.monotonic()) > 0:
                    self._cond.wait(left)  # woken early only by close()
                if self._closed:
                    self._thread = None
                    return
                if not self._tracked or visibility is None:
                    now = time.monotonic()
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= self._idle:
                        self._thread = None  # decided under the lock: track() starts anew
                        return
                    continue
                idle_since = None
                messages = list(self._tracked.values())
                self._extending = True
            try:
                self._extend(messages, visibility)
            finally:
                with self._cond:
                    self._extending = False
                    self._cond.notify_all()

    def _extend(self, messages: list[Message], visibility: float) -> None:
        try:
            with self._io:
                self._source.extend(messages, visibility)
            self.extensions += 1
        except Exception as exc:  # redelivery and dedupe cover a failed extension
            log.warning(
                "could not extend visibility; the batch may be redelivered",
                queue=self._queue,
                messages=len(messages),
                error=describe(exc),
            )


__all__ = ["Keepalive", "KeepaliveThread"]
