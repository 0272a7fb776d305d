"""The pull loop: receive a batch, handle it while keeping it invisible, settle every message.

Committed messages (stored or dead-lettered) are acknowledged; the rest are rejected with a
delay and the loop backs off before receiving again, so a sink outage neither loses messages
nor spins. A batch that outlives its visibility would be redelivered under our feet (and handled
twice), so every received message that is not settled yet (the batch in hand and a prefetched
one) is covered by the worker's keepalive thread, which extends its visibility.

Under a backlog (the last batch was full) the worker prefetches: a short poll for the next batch
runs in a helper thread while the current one is parsed and committed, and the batch's ack is
sent by a second helper while the prefetched one is handled, so the broker's round trips overlap
the pipeline's work. The promises stay as they were: a message is acknowledged only after its
commit, `stop()` finishes the batch in hand and gives a prefetched batch back at
once (a reject with no delay), and a crash anywhere leaves every unsettled message to come back
by itself. The source is only ever used by one thread at a time (the worker's `io` lock), unless
it says otherwise (`concurrent_settle`, see `Worker`).

Only a non-transient exception from `Source.receive` (a bug in a source) ends `run`: the runtime
restarts the worker, and every unsettled message comes back by itself.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
                    error=f"{type(exc).__name__}: {exc}",
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
    4 MiB body cap bound (`formats/_decode.py`; about 0.2 s at worst, measured by
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
                error=f"{type(exc).__name__}: {exc}",
            )


@dataclass
class Worker:
    """Ties one source to one pipeline; `run` until `stop()` is called.

    `prefetch` receives the next batch while the current one is handled, whenever the last
    batch was full. A source whose `ack`/`reject` may run at the same time as its `receive`
    and `extend` (on another connection, say) sets `concurrent_settle = True`; the worker then
    settles a batch without waiting for a prefetch in progress. Only such a source prefetches:
    on any other, the next receive (a RocketMQ long poll lasts seconds) would hold the batch's
    acknowledgement back until its invisible time lapsed, and it would come back for ever.
    """

    source: Source
    pipeline: Pipeline
    batch_size: int = 16
    wait: float = 30.0
    pause: Pause | None = None
    """How to wait between failed rounds; by default an interruptible wait on `stop()`."""
    prefetch: bool = True
    """Receive the next batch during the commit of a full one (False: strictly one at a time)."""
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _failures: int = field(default=0, init=False)
    _io: threading.Lock = field(default_factory=threading.Lock, init=False)
    """Held for every call into the source, except settling on a `concurrent_settle` source."""
    _settle_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _keepalive: KeepaliveThread | None = field(default=None, init=False)
    _next: Future[_Received] | None = field(default=None, init=False)
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)
    _settler: ThreadPoolExecutor | None = field(default=None, init=False)
    _settling: deque[Future[None]] = field(default_factory=deque, init=False)
    _unsettled: int = field(default=0, init=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if getattr(self.source, "concurrent_settle", False) is True:
            self._settle_lock = threading.Lock()  # settling waits only for other settling
        else:
            self._settle_lock = self._io
            self.prefetch = False

    def stop(self) -> None:
        """Finish the batch in hand (cutting its sink retries short), then return from `run`."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def holding(self) -> bool:
        """Whether any received message is not settled yet (in the pipeline, prefetched, or
        waiting for its ack). A drain that sees the source in a receive must also see this
        False before it concludes the worker holds nothing: a prefetch is a receive too."""
        with self._count_lock:
            return self._unsettled > 0

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._unsettled += delta

    def run(self) -> None:
        log.info("worker started", queue=self.pipeline.queue, batch_size=self.batch_size)
        try:
            while not self._stopping.is_set():
                self.run_once()
        finally:
            self.close()
        log.info("worker stopped", queue=self.pipeline.queue)

    def close(self) -> None:
        """Give a prefetched batch back and end the helper threads (`run` does it on the way out).

        The worker can still `run_once` afterwards; the helpers start again when needed.
        """
        try:
            self._release_prefetched()
            self.flush()
        finally:
            for executor in (self._executor, self._settler):
                if executor is not None:
                    executor.shutdown(wait=True)
            self._executor = self._settler = None
        if self._keepalive is not None:
            self._keepalive.close()
            self._keepalive = None

    def run_once(self) -> list[Result]:
        """One round: receive (or take the prefetched batch), handle, settle.

        Returns what became of each message. Settling (ack / reject) is done by a helper
        thread, after the commit: while a prefetched batch waits for the next round, this
        batch's ack overlaps it; otherwise (the queue ran dry, a partial batch, a failed
        prefetch) `run_once` waits until every batch it handled is settled, so a caller that
        stops calling finds nothing left in flight but what it was told about.
        """
        queue = self.pipeline.queue
        try:
            received = self._take_prefetched() or self._receive(self.wait)
        except TransientError as exc:
            log.warning("source unavailable", queue=queue, error=str(exc))
            self.flush()
            self._back_off()
            return []
        messages, started = received.messages, received.started
        if not messages:
            self.flush()
            return []
        if self.prefetch and len(messages) >= self.batch_size and not self.stopping:
            self._start_prefetch()
        try:
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
        committed = all(result.committed for result in results)
        delay = self._delay(self._failures + 1)
        self._submit_settle(results, started, delay)
        if not self._prefetched_ready():
            self.flush()
        if committed:
            self._failures = 0
        else:
            self._back_off()
        return results

    def flush(self) -> None:
        """Wait until every handled batch is settled; raises what a settling raised (a bug)."""
        while self._settling:
            self._settling.popleft().result()

    # -- receiving ---------------------------------------------------------------------------

    def _receive(self, wait: float) -> _Received:
        """Receive under the io lock and put what came under the keepalive at once."""
        with self._io:
            messages = self.source.receive(self.batch_size, wait)
            self._count(len(messages))
        received = _Received(messages, self.pipeline.clock())
        if messages:
            self._keepalive_thread().track(messages)
        return received

    def _start_prefetch(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{self.name}")
        context = contextvars.copy_context()  # the worker's log context (the runtime binds it)
        self._next = self._executor.submit(context.run, self._receive, 0.0)

    def _prefetched_ready(self) -> bool:
        """Whether a prefetched batch with messages waits for the next round (waits for the
        prefetch to finish: a short poll, mostly done by now)."""
        future = self._next
        if future is None:
            return False
        try:
            return bool(future.result().messages)
        except Exception:  # the next round raises it, after this batch is settled
            return False

    def _take_prefetched(self) -> _Received | None:
        """The prefetched batch, None when there is none (or it came back empty).

        A failed prefetch raises here what the receive raised, as a receive in hand would.
        """
        future, self._next = self._next, None
        if future is None:
            return None
        received = future.result()
        return received if received.messages else None

    def _release_prefetched(self) -> None:
        """Give a prefetched batch back for redelivery now: it was never handled."""
        try:
            received = self._take_prefetched()
        except Exception as exc:  # nothing was received, so nothing to give back
            log.debug("prefetch failed while stopping", queue=self.pipeline.queue, error=str(exc))
            return
        if received is None:
            return
        self._keepalive_thread().untrack(received.messages)
        log.info(
            "giving back a prefetched batch",
            queue=self.pipeline.queue,
            messages=len(received.messages),
        )
        try:
            with self._settle_lock:
                self.source.reject(received.messages, 0.0)
        except TransientError as exc:  # the visibility lapses instead
            log.warning(
                "reject failed; visibility will lapse", queue=self.pipeline.queue, error=str(exc)
            )
        finally:
            self._count(-len(received.messages))

    # -- settling ----------------------------------------------------------------------------

    def _submit_settle(self, results: Sequence[Result], started: float, delay: float) -> None:
        while self._settling and self._settling[0].done():
            self._settling.popleft().result()  # raise a bug in a source's ack now
        if self._settler is None:
            self._settler = ThreadPoolExecutor(1, thread_name_prefix=f"settle-{self.name}")
        context = contextvars.copy_context()
        self._settling.append(
            self._settler.submit(context.run, self._settle_and_count, results, started, delay)
        )

    def _settle_and_count(self, results: Sequence[Result], started: float, delay: float) -> None:
        # Kept alive until now (the ack may wait for a receive in progress); no extension may
        # race the settling (it would renew a handle the ack is about to use): untrack waits
        # for an extension in progress, and later rounds no longer include these messages.
        self._keepalive_thread().untrack([result.message for result in results])
        try:
            acknowledged = self._settle(results, delay)
        finally:
            self._count(-len(results))
        self.pipeline.settled(results, started, acknowledged)

    def _settle(self, results: Sequence[Result], delay: float) -> bool:
        queue = self.pipeline.queue
        done = [result.message for result in results if result.committed]
        retry = [result.message for result in results if not result.committed]
        acknowledged = True
        if done:
            try:
                with self._settle_lock:
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
            log.warning(
                "sink unavailable: messages left for redelivery",
                queue=queue,
                messages=len(retry),
                redelivery_in_seconds=round(delay, 3),
                error=next(result.error for result in results if not result.committed),
            )
            try:
                with self._settle_lock:
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

    # -- helpers -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.pipeline.queue

    def _keepalive_thread(self) -> KeepaliveThread:
        if self._keepalive is None:
            self._keepalive = KeepaliveThread(self.source, self.pipeline.queue, self._io)
        return self._keepalive


@dataclass(frozen=True, slots=True)
class _Received:
    messages: list[Message]
    started: float
    """`Pipeline.clock()` when the batch arrived (the start of its processing latency)."""


def run_worker(worker: Worker) -> threading.Thread:
    """Run a worker in a daemon thread (tests, the demo); `worker.stop()` then `join()`."""
    name = f"worker-{worker.pipeline.queue}"
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    return thread


__all__ = ["Keepalive", "KeepaliveThread", "Worker", "run_worker"]
