"""The pull loop: receive a batch, handle it while keeping it invisible, settle every message.

Committed messages (stored or dead-lettered) are acknowledged; the rest are rejected with a
delay and the loop backs off before receiving again, so a sink outage neither loses messages
nor spins. A batch that outlives its visibility would be redelivered under our feet (and handled
twice), so every received message that is not settled yet (the batch in hand and the prefetched
ones) is covered by the worker's keepalive thread (`keepalive`), which extends its visibility.

Under a backlog (the last batch was full) the worker prefetches (`prefetch`): short polls for
the next batches run in a helper thread while the current one is parsed and committed, and the
batch's ack is sent by the settler (`settle`) while the prefetched ones are handled, so the
broker's round trips overlap the pipeline's work. What several polls received is handled as one
batch, in one transaction (group commit). The promises stay as they were: a message is
acknowledged only after its commit, `stop()` finishes the batch in hand and gives every
prefetched message back at once (a reject with no delay), and a crash anywhere leaves every
unsettled message to come back by itself. The source is only ever used by one thread at a
time (the worker's `io` lock), unless it declares otherwise (`Source.concurrent_settle`).

Only a non-transient exception from `Source.receive` (a bug in a source) ends `run`: the runtime
restarts the worker, and every unsettled message comes back by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from consumer import backoff
from consumer.errors import Reason, TransientError, describe
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.keepalive import KeepaliveThread
from consumer.pipeline.middleware import Middleware
from consumer.pipeline.prefetch import Prefetcher, Received
from consumer.pipeline.results import Disposition, Result
from consumer.pipeline.settle import Settler
from consumer.sources.base import Source

log = structlog.get_logger("consumer.pipeline")

Pause = Callable[[float], object]


@dataclass
class Worker:
    """Ties one source to one pipeline; `run` until `stop()` is called.

    The parts, as aiokafka splits its consumer: a `Prefetcher` (a few polls ahead), the
    `KeepaliveThread` (every unsettled message stays invisible) and a `Settler` (ack / reject
    after the commit, in its own thread). `middleware` sees every receive (heartbeats,
    connection state, metrics).

    `prefetch` receives the next batches while the current one is handled, whenever the last
    batch was full, and the next round handles them together. Only a source that declares
    `concurrent_settle` prefetches, and the worker then settles a batch without waiting for a
    prefetch in progress: on any other, the next receive (a RocketMQ long poll lasts seconds)
    would hold the batch's acknowledgement back until its invisible time lapsed, and it would
    come back for ever.
    """

    source: Source
    pipeline: Pipeline
    batch_size: int = 16
    wait: float = 30.0
    pause: Pause | None = None
    """How to wait between failed rounds; by default an interruptible wait on `stop()`."""
    prefetch: bool = True
    """Receive the next batch during the commit of a full one (False: strictly one at a time)."""
    middleware: Sequence[Middleware] = ()
    budget: float | None = None
    """Seconds of sink retries per batch, below `retry.total` (a push sender's patience)."""
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _failures: int = field(default=0, init=False)
    _io: threading.Lock = field(default_factory=threading.Lock, init=False)
    """Held for every call into the source, except settling on a `concurrent_settle` source."""
    _keepalive: KeepaliveThread | None = field(default=None, init=False)
    _unsettled: int = field(default=0, init=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.source.concurrent_settle:
            settle_lock = threading.Lock()  # settling waits only for other settling
        else:
            settle_lock = self._io
            self.prefetch = False
        self._prefetcher = Prefetcher(self._receive, self.name, self.batch_size)
        self._settler = Settler(
            self.source, self.pipeline, settle_lock, self._keepalive_thread, self._settled
        )

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

    def _settled(self, count: int) -> None:
        self._count(-count)

    def run(self) -> None:
        log.info("worker started", queue=self.pipeline.queue, batch_size=self.batch_size)
        try:
            while not self._stopping.is_set():
                self.run_once()
        finally:
            self.close()
        log.info("worker stopped", queue=self.pipeline.queue)

    def close(self) -> None:
        """Give prefetched messages back and end the helper threads (`run` does it on the way out).

        The worker can still `run_once` afterwards; the helpers start again when needed.
        """
        try:
            self._release_prefetched()
            self.flush()
        finally:
            self._prefetcher.close()
            self._settler.close()
        if self._keepalive is not None:
            self._keepalive.close()
            self._keepalive = None

    def run_once(self) -> list[Result]:
        """One round: receive (or take what was prefetched), handle, settle.

        Returns what became of each message. Settling (ack / reject) follows the commit: while
        a prefetch runs, a helper thread does it, so this batch's ack overlaps the prefetched
        batch; otherwise (the queue ran dry, a partial batch, a failed prefetch) `run_once`
        settles every batch it handled before returning (this one on its own thread), so a
        caller that stops calling finds nothing left in flight but what it was told about.
        """
        queue = self.pipeline.queue
        try:
            received = self._prefetcher.take() or self._receive(self.wait)
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
            self._prefetcher.start()
        try:
            results = self.pipeline.handle(messages, self.budget, cancel=self._stopping)
        except Exception as exc:
            # A bug in the pipeline itself: what committed is unknown, so nothing is acked.
            # The batch comes back; a message that keeps causing this ends in dead_letters
            # once it passes max_deliveries, before it is parsed.
            log.exception("pipeline failed: batch left for redelivery", queue=queue)
            error = describe(exc)
            results = [
                Result(message, Disposition.TRANSIENT, 0, Reason.PIPELINE_ERROR, error)
                for message in messages
            ]
        for middleware in self.middleware:
            middleware.after_handle(results)
        committed = all(result.committed for result in results)
        delay = self._delay(self._failures + 1)
        if self._prefetcher.running:  # the ack overlaps the prefetched batch's handling
            self._settler.submit(results, started, delay)
            if not self._prefetcher.ready():
                self.flush()
        else:
            self._settler.settle(results, started, delay)
        if committed:
            self._failures = 0
        else:
            self._back_off()
        return results

    def flush(self) -> None:
        """Wait until every handled batch is settled; raises what a settling raised (a bug)."""
        self._settler.flush()

    def _receive(self, wait: float) -> Received:
        """Receive under the io lock and put what came under the keepalive at once."""
        with self._io:
            for middleware in self.middleware:
                wait = middleware.before_receive(wait)
            try:
                messages = self.source.receive(self.batch_size, wait)
            except Exception as exc:
                for middleware in self.middleware:
                    middleware.after_receive_failed(exc)
                raise
            self._count(len(messages))
            for middleware in self.middleware:
                middleware.after_receive(messages)
        received = Received(messages, self.pipeline.clock())
        if messages:
            self._keepalive_thread().track(messages)
        return received

    def _release_prefetched(self) -> None:
        """Give the prefetched messages back for redelivery now: they were never handled."""
        try:
            received = self._prefetcher.take()
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
            self._settler.give_back(received.messages)
        finally:
            self._count(-len(received.messages))

    def _delay(self, failures: int) -> float:
        retry = self.pipeline.retry
        initial = max(retry.initial.total_seconds(), 0.001)
        return backoff.delay(failures, initial, retry.max.total_seconds())

    def _back_off(self) -> None:
        self._failures += 1
        delay = self._delay(self._failures)
        if self.pause is not None:
            self.pause(delay)
        else:
            self._stopping.wait(delay)

    @property
    def name(self) -> str:
        return self.pipeline.queue

    def _keepalive_thread(self) -> KeepaliveThread:
        if self._keepalive is None:
            self._keepalive = KeepaliveThread(self.source, self.pipeline.queue, self._io)
        return self._keepalive


def run_worker(worker: Worker) -> threading.Thread:
    """Run a worker in a daemon thread (tests, the demo); `worker.stop()` then `join()`."""
    name = f"worker-{worker.pipeline.queue}"
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    return thread


__all__ = ["Worker", "run_worker"]
