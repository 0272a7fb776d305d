"""The two kinds of worker process the supervisor spawns, and how each one drains.

- A pull worker runs one consume loop (`pipeline.loop.Worker`) on one MNS or RocketMQ queue.
- The listener runs the shared aiohttp server: every `source: http` queue, `/metrics` (all
  processes' metrics), `/healthz`, `/readyz`, the forward runner of `sink.forward`, and the
  recording archiver of `recordings:`.

The listener is a process of its own rather than a thread of the supervisor: the supervisor then
runs no SDK, no asyncio and (after the start-up migration) no sink, so nothing a queue does can
wedge the process that restarts workers and talks to systemd, and a listener crash is restarted
like any worker's. The price is one more process (about 55-65 MB resident: it loads aiohttp,
not the pull SDKs; `bench/bench_daemon.py` measures every process).

Each process configures logging, opens its own sink (SQLite in WAL takes several writer
processes; `migrate()` is safe when they start together) and runs until SIGTERM or SIGINT. Then
it stops receiving and finishes the batch in hand within the drain deadline. A long poll in
progress holds no message yet, so it is abandoned rather than waited for: what it may still
return stays invisible until its visibility lapses, then comes back. Exit statuses tell the
supervisor what happened (`consumer.runtime.spec.EXIT_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from consumer import backoff
from consumer.config.model import Config
from consumer.errors import ConfigError, TransientError, describe
from consumer.logs import configure_from
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.loop import Worker
from consumer.pipeline.middleware import Middleware
from consumer.reconcile.runner import Reconciler, open_reconciler
from consumer.runtime.heap import freeze_startup
from consumer.runtime.metrics import PrometheusMetrics, aggregated_registry
from consumer.runtime.spec import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNFINISHED,
    WorkerSpec,
)
from consumer.runtime.status import Slot
from consumer.sinks import Sink, open_forward_runner, open_sink
from consumer.sources.base import Message, Source

if TYPE_CHECKING:  # aiohttp is the listener's alone: pull workers never import it
    from consumer.sinks.forward import ForwardRunner
    from consumer.sinks.sql import SqlSink
    from consumer.sources.http import PushServer

log = structlog.get_logger("consumer.runtime")

DRAIN_MARGIN = 1.0
"""A worker gives up this much before the supervisor's deadline, to report it rather than die."""
FIRST_WAIT = 1.0
"""The first long poll is short: a worker counts as connected once its source has answered."""
LISTENER_BEAT = 1.0


class Reporting(Middleware):
    """Tells the supervisor and /metrics how the worker's source is doing: a heartbeat per
    receive, connected or not, and whether a receive is in progress.

    `receiving` is what the drain looks at: True while the loop waits in a long poll, holding
    no message. The first long poll is shortened to `FIRST_WAIT`, so readiness comes quickly.
    """

    def __init__(self, slot: Slot, queue: str, up: Callable[[str, bool], None] | None = None):
        self._slot = slot
        self._queue = queue
        self._up = up
        self._answered = False
        self.receiving = False

    def before_receive(self, wait: float) -> float:
        self.receiving = True
        self._slot.beat()
        return wait if self._answered else min(wait, FIRST_WAIT)

    def after_receive(self, messages: Sequence[Message]) -> None:
        self.receiving = False
        self._answered = True
        self._connected(True)

    def after_receive_failed(self, error: Exception) -> None:
        self.receiving = False
        if isinstance(error, TransientError):
            self._connected(False)

    def _connected(self, up: bool) -> None:
        self._slot.connected(up)
        if self._up is not None:
            self._up(self._queue, up)


# -- process entry points ----------------------------------------------------------------------


def main(spec: WorkerSpec, config: Config, array: Any, drain_seconds: float) -> None:
    """The target of every worker process (spawned: nothing is inherited but these arguments)."""
    _die_with_parent()
    slot = Slot(array, spec.slot)
    configure_from(config)
    # Every line of the process names it; a pull worker's lines also name its one queue.
    structlog.contextvars.bind_contextvars(worker=spec.name)
    if spec.queue is not None:
        structlog.contextvars.bind_contextvars(queue=spec.queue)
    deadline = max(drain_seconds - DRAIN_MARGIN, 0.5)
    try:
        if spec.kind == "listener":
            code = asyncio.run(_run_listener(spec, config, slot, deadline))
        else:
            code = _run_pull(spec, config, slot, deadline)
    except ConfigError as exc:
        log.error("worker cannot start: configuration", location=exc.location, problem=exc.problem)
        code = EXIT_CONFIG
    except Exception:
        log.exception("worker failed")
        code = EXIT_FAILED
    sys.stderr.flush()
    # Leave at once: SDK threads (gRPC) must not hold the exit up, and everything that
    # matters is committed or left to redelivery by now.
    os._exit(code)


def _run_pull(spec: WorkerSpec, config: Config, slot: Slot, deadline: float) -> int:
    assert spec.queue is not None
    queue = config.queue(spec.queue)
    stop = threading.Event()
    _install_signals(stop, config)
    wait, batch_size = queue.receive_settings()
    sink = open_sink(config.sink)
    code = EXIT_FAILED
    try:
        if not _migrate(sink, stop, slot):
            code = EXIT_OK
            return code
        metrics = PrometheusMetrics(activity=slot.beat)
        metrics.declare(queue.name)
        report = Reporting(slot, queue.name, metrics.source_up)
        pipeline = Pipeline.for_queue(queue, sink, metrics)
        worker = Worker(
            queue.open(), pipeline, batch_size=batch_size, wait=wait, middleware=[report]
        )
        frozen = freeze_startup()
        failures: list[Exception] = []
        # The loop's thread starts with this thread's context: its log lines name the worker.
        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(_loop, worker, failures),
            name=f"worker-{queue.name}",
            daemon=True,
        )
        thread.start()
        log.info("pull worker running", queue=queue.name, source=queue.kind, frozen=frozen)
        while not stop.wait(0.2):
            if not thread.is_alive():  # only a source's refusal or bug ends the loop by itself
                failed = failures[0] if failures else None
                return EXIT_CONFIG if isinstance(failed, ConfigError) else EXIT_FAILED
        code = _drain(worker, thread, report, deadline)
        return code
    finally:
        if code != EXIT_UNFINISHED:  # else the loop still uses it; the exit rolls it back
            sink.close()


def _loop(worker: Worker, failures: list[Exception]) -> None:
    """`worker.run`, with what ended it logged and kept for the exit status."""
    try:
        worker.run()
    except ConfigError as exc:
        failures.append(exc)
        log.error("the source refused the settings", location=exc.location, problem=exc.problem)
    except Exception as exc:
        failures.append(exc)
        log.exception("consume loop failed", queue=worker.pipeline.queue)


def _drain(worker: Worker, thread: threading.Thread, report: Reporting, deadline: float) -> int:
    started = time.monotonic()
    worker.stop()
    while thread.is_alive():
        if report.receiving and not worker.holding:  # a prefetch is a receive with work in hand
            log.info("stopped during a long poll: nothing in hand", queue=worker.pipeline.queue)
            _close_quietly(worker.source, 1.0)
            return EXIT_OK
        if time.monotonic() - started > deadline:
            log.error(
                "drain deadline passed with a batch in hand: it will be redelivered",
                queue=worker.pipeline.queue,
                deadline_seconds=deadline,
            )
            return EXIT_UNFINISHED
        thread.join(0.05)
    _close_quietly(worker.source, 2.0)
    log.info("pull worker drained", queue=worker.pipeline.queue)
    return EXIT_OK


def _close_quietly(source: Source, timeout: float) -> None:
    """Close in a helper thread: a source busy in a long poll must not hold the exit up."""

    def close() -> None:
        try:
            source.close()
        except Exception as exc:
            log.warning("closing the source failed", error=describe(exc))

    closer = threading.Thread(target=close, name="close-source", daemon=True)
    closer.start()
    closer.join(timeout)


async def _run_listener(spec: WorkerSpec, config: Config, slot: Slot, deadline: float) -> int:
    # aiohttp is the listener's alone: pull workers never import it.
    from consumer.archive.worker import open_archiver, run_archiver  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, _reopen_logs, config)
    sink = open_sink(config.sink)
    outbox = open_sink(config.sink) if config.sink.forward else None
    runner = open_forward_runner(config.sink, outbox) if outbox is not None else None
    metrics = PrometheusMetrics(activity=slot.beat)
    server = _listener_server(spec, config, sink, metrics, deadline)
    archiving: asyncio.Task[None] | None = None
    reconciler = open_reconciler(config)  # calls owed a final record: consumer/reconcile/
    try:
        await server.start()
        if not await _migrate_until_stopped(sink, slot, stopping):
            await server.close()
            return EXIT_OK
        server.accept()
        for name in spec.push_queues:
            metrics.declare(name)
            metrics.source_up(name, True)
        if runner is not None:
            runner.start()
        archiving = asyncio.create_task(run_archiver(open_archiver(config), stopping))
        if reconciler is not None:
            reconciler.start()
        log.info("listener running", queues=list(spec.push_queues), frozen=freeze_startup())
        slot.connected(True)
        await _beat_until_stopped(slot, stopping)
        return await _drain_listener(server, spec.push_queues, deadline)
    finally:
        if archiving is not None:
            stopping.set()
            await archiving
        await _stop_listener_helpers(runner, reconciler)
        if outbox is not None:
            outbox.close()
        sink.close()


def _listener_server(
    spec: WorkerSpec, config: Config, sink: SqlSink, metrics: PrometheusMetrics, deadline: float
) -> PushServer:
    """The listener's server: one endpoint per push queue, the probes, not accepting yet."""
    from consumer.runtime.probes import Probes  # noqa: PLC0415
    from consumer.runtime.push import push_endpoint  # noqa: PLC0415
    from consumer.sources.http import PushServer  # noqa: PLC0415
    from consumer.sources.http_auth import NonceCache  # noqa: PLC0415

    nonces = NonceCache()
    endpoints = [
        push_endpoint(config.queue(name), sink, metrics, nonces=nonces) for name in spec.push_queues
    ]
    return PushServer(
        endpoints,
        listen=config.http.listen,
        # aiohttp waits this long for requests in progress, then as long again for the
        # handlers; a connection accepted just as the shutdown starts always waits it out
        # (its handler is never woken). A commit already under way finishes regardless
        # (`close` drains them) and its sender retries into the deduplicating sink.
        shutdown_timeout=min(5.0, deadline / 3),
        # /healthz from the first second; pushes get 503 until the database is migrated
        accepting=False,
        service=Probes(sink.schema_version, sink.write_probe, aggregated_registry()),
    )


async def _migrate_until_stopped(sink: Sink, slot: Slot, stopping: asyncio.Event) -> bool:
    """`_migrate` off the event loop (the probes keep answering); False when stopped first."""
    stop_migrating = threading.Event()
    stopped = asyncio.create_task(stopping.wait())
    stopped.add_done_callback(lambda _: stop_migrating.set())
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, _migrate, sink, stop_migrating, slot)
    finally:
        stopped.cancel()


async def _beat_until_stopped(slot: Slot, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        slot.beat()  # the event loop's own heartbeat: a blocked loop stops beating
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), LISTENER_BEAT)


async def _drain_listener(server: PushServer, queues: Sequence[str], deadline: float) -> int:
    log.info("listener draining", queues=list(queues))
    try:
        async with asyncio.timeout(deadline):
            await server.close()
    except TimeoutError:
        log.error("drain deadline passed with push requests unanswered")
        return EXIT_UNFINISHED
    log.info("listener drained")
    return EXIT_OK


async def _stop_listener_helpers(
    runner: ForwardRunner | None, reconciler: Reconciler | None
) -> None:
    loop = asyncio.get_running_loop()
    if runner is not None:
        await loop.run_in_executor(None, runner.stop, 2.0)
    if reconciler is not None:
        await loop.run_in_executor(None, reconciler.close, 5.0)


def _migrate(sink: Sink, stop: threading.Event, slot: Slot) -> bool:
    """Migrate, waiting out a database outage at start-up (1, 2, 4, 8, 10, 10 ... seconds) rather
    than crashing; False when `stop` is set first."""

    def down(exc: BaseException, delay: float) -> None:
        log.warning("database unavailable at start-up: retrying", error=str(exc), retry_in=delay)
        slot.beat()  # waiting for the database is not being wedged

    return backoff.retry_until_stopped(
        sink.migrate,
        retry_on=TransientError,
        stop=stop,
        initial=1.0,
        maximum=10.0,
        before_sleep=down,
    )


def _install_signals(stop: threading.Event, config: Config) -> None:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: _reopen_logs(config))


def _reopen_logs(config: Config) -> None:
    """SIGHUP: logs go to stderr (journald, a container), so "reopen" re-applies the settings."""
    configure_from(config)
    log.info("SIGHUP: logging reconfigured")


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the supervisor dies (SIGKILL included): drain, don't orphan."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


__all__ = [
    "Reporting",
    "main",
]
