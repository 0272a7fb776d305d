"""`consumer run`: the supervisor process that starts, watches and drains the worker processes.

It starts `workers` processes per pull queue and one listener process (push queues, metrics,
health), restarts a worker that dies with exponential backoff, gives up with a non-zero exit when
one queue keeps crashing (both decided by `restart.py`), and speaks sd_notify: READY=1 once
every worker's source answered, STATUS= on every change (both worded by `readiness.py`),
WATCHDOG=1 only while every live worker's loop keeps beating, STOPPING=1 on SIGTERM. It runs
no SDK, no asyncio and no sink (the CLI migrates the database once before it starts), so a
queue cannot wedge the process that watches the queues.

Shutdown (README, "Operating it"): SIGTERM or SIGINT → STOPPING=1 → SIGTERM to every worker,
which stops receiving and finishes its batch → wait up to the drain deadline → SIGKILL whatever is
left. Exit 0 when every worker drained, 1 when the deadline passed with work in hand.

Workers are spawned (multiprocessing's "spawn" context): no lock, thread or SDK state is copied
from the supervisor, and each child builds its own sink and source.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from consumer.config.model import Config
from consumer.logs import configure_from
from consumer.runtime.metrics import MULTIPROC_ENV, mark_dead, prepare_directory
from consumer.runtime.notify import Notifier, watchdog_interval
from consumer.runtime.readiness import Readiness, workers
from consumer.runtime.restart import Child, Policy, Restarts
from consumer.runtime.spec import (
    DEFAULT_DRAIN_SECONDS,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNFINISHED,
    WorkerSpec,
    listener_spec,
    pull_spec,
    start,
)
from consumer.runtime.status import FIELDS, Slot

log = structlog.get_logger("consumer.runtime")


@dataclass
class _Signals:
    stop: int | None = None
    hup: bool = False
    wake: socket.socket | None = None
    previous: dict[int, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self,
        config: Config,
        queues: Sequence[str] = (),
        *,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        policy: Policy | None = None,
        notifier: Notifier | None = None,
        target: Callable[..., object] = start,
    ) -> None:
        """`queues` limits the run to these queue names (all when empty); `target` is what a
        worker process runs, called as `target(spec, config, status_array, drain_seconds)`."""
        self.config = config
        self.drain_seconds = drain_seconds
        self.policy = policy or Policy()
        self.notifier = notifier or Notifier()
        self.target = target
        self.watchdog = watchdog_interval()
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)  # only the main process talks to systemd
        selected = [q for q in config.queues if not queues or q.name in queues]
        specs: list[WorkerSpec] = []
        for queue in selected:
            if queue.pull:
                for index in range(queue.workers):
                    specs.append(pull_spec(queue, index, len(specs)))
        push = [q.name for q in selected if not q.pull]
        for queue in selected:
            if not queue.pull and queue.workers > 1:
                log.warning(
                    "workers does not apply to a push queue: the listener serves them all",
                    queue=queue.name,
                    workers=queue.workers,
                )
        specs.append(listener_spec(push, len(specs)))
        self.children = [Child(spec) for spec in specs]
        self._restarts = Restarts(self.policy)
        self._readiness = Readiness(self.notifier, len(self.children))
        self._context = multiprocessing.get_context("spawn")
        self._array: Any = None
        self._signals = _Signals()
        self._metrics_dir: Path | None = None
        self._own_metrics_dir = False

    # -- public --------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, supervise until a signal or a crash loop, drain; the exit status."""
        self._prepare_metrics_dir()
        self._array = self._context.RawArray("d", len(self.children) * FIELDS)
        self._install_signals()
        fatal: int | None = None
        try:
            self._readiness.status(f"starting {workers(len(self.children))}")
            for child in self.children:
                self._start(child)
            fatal = self._supervise()
        finally:
            code = self._shutdown(fatal)
            self._restore_signals()
            self._remove_metrics_dir()
        return code

    # -- start and watch -----------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        Slot(self._array, child.spec.slot).reset()
        process = self._context.Process(
            target=self.target,
            args=(child.spec, self.config, self._array, self.drain_seconds),
            name=f"consumer-{child.spec.name}",
            daemon=True,
        )
        process.start()
        child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        log.info("worker started", worker=child.spec.name, pid=process.pid)

    def _supervise(self) -> int | None:
        """Until a stop signal (None) or a fatal condition (the exit status)."""
        next_ping = time.monotonic()
        while True:
            self._wait(self._nap(next_ping))
            if self._signals.stop is not None:
                log.info("stop requested", signal=signal.Signals(self._signals.stop).name)
                return None
            if self._signals.hup:
                self._signals.hup = False
                self._forward_hup()
            now = time.monotonic()
            fatal = self._watch(now)
            if fatal is not None:
                return fatal
            self._report()
            if self.watchdog is not None and now >= next_ping and self._healthy(now):
                self.notifier.watchdog()
                next_ping = now + self.watchdog

    def _nap(self, next_ping: float) -> float:
        """Short naps while something is due soon (readiness, a restart, a watchdog ping)."""
        pending = not self._readiness.ready or any(c.restart_at is not None for c in self.children)
        nap = 0.25 if pending else 1.0
        if self.watchdog is not None:
            nap = min(nap, max(next_ping - time.monotonic(), 0.1))
        return nap

    def _watch(self, now: float) -> int | None:
        """Reap the dead, restart those whose time came, kill the wedged; an exit status when
        a death ends the daemon."""
        for child in self.children:
            process = child.process
            if process is not None and not process.is_alive():
                fatal = self._died(child, now)
                if fatal is not None:
                    return fatal
            elif process is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child)
            elif process is not None:
                self._check_wedged(child, now)
        return None

    def _died(self, child: Child, now: float) -> int | None:
        process = child.process
        assert process is not None
        process.join()
        code = process.exitcode
        self._forget(process)
        child.process = None
        name = child.spec.name
        if code == EXIT_CONFIG:
            log.error("worker refused its configuration: stopping", worker=name)
            return EXIT_CONFIG
        crashes = self._restarts.crashes(child, now)
        if self._restarts.gives_up(crashes):
            log.error(
                "queue keeps crashing: stopping",
                worker=name,
                crashes=crashes,
                window_seconds=self.policy.crash_window,
                exit_code=_describe_exit(code),
            )
            return 1
        delay = self._restarts.schedule(child, now)
        log.error(
            "worker died: restarting",
            worker=name,
            pid=process.pid,
            exit_code=_describe_exit(code),
            restart_in_seconds=delay,
        )
        return None

    def _check_wedged(self, child: Child, now: float) -> None:
        slot = Slot(self._array, child.spec.slot)
        silent = slot.silent_for(now)
        if silent > child.spec.stale_after and child.process is not None:
            log.error(
                "worker wedged: killing it",
                worker=child.spec.name,
                pid=child.process.pid,
                silent_seconds=round(silent, 1),
            )
            child.process.kill()

    def _healthy(self, now: float) -> bool:
        """Every live worker beat recently (one that waits for its restart does not count)."""
        return all(
            Slot(self._array, child.spec.slot).silent_for(now) <= child.spec.stale_after
            for child in self.children
            if child.process is not None
        )

    def _report(self) -> None:
        connected = [
            c
            for c in self.children
            if c.process is not None and Slot(self._array, c.spec.slot).is_connected
        ]
        waiting = [c.spec.name for c in self.children if c not in connected]
        self._readiness.report(len(connected), waiting)

    # -- stop ----------------------------------------------------------------------------------

    def _shutdown(self, fatal: int | None) -> int:
        live = [c for c in self.children if c.process is not None and c.process.is_alive()]
        self.notifier.stopping(f"stopping: draining {workers(len(live))}")
        for child in live:
            assert child.process is not None
            assert child.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds
        unfinished: list[str] = []
        for child in live:
            process = child.process
            assert process is not None
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                process.kill()
                process.join()
                unfinished.append(child.spec.name)
            elif process.exitcode != EXIT_OK:
                if process.exitcode == EXIT_UNFINISHED:
                    unfinished.append(child.spec.name)
                else:
                    log.warning(
                        "worker ended badly while stopping",
                        worker=child.spec.name,
                        exit_code=_describe_exit(process.exitcode),
                    )
            self._forget(process)
            child.process = None
        for child in self.children:  # a worker that died just before the stop
            if child.process is not None:
                child.process.join()
                self._forget(child.process)
        if unfinished:
            log.error(
                "drain deadline passed with work unfinished: it will be redelivered",
                workers=unfinished,
                deadline_seconds=self.drain_seconds,
            )
        code = fatal if fatal is not None else (1 if unfinished else 0)
        log.info("stopped", exit_code=code)
        return code

    # -- signals -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._signals.wake = reader
        self._writer = writer
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

        def stop(signum: int, _: FrameType | None) -> None:
            if self._signals.stop is None:
                self._signals.stop = signum

        def hup(_: int, __: FrameType | None) -> None:
            self._signals.hup = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._signals.previous[signum] = signal.signal(signum, stop)
        self._signals.previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hup)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in self._signals.previous.items():
            signal.signal(signum, handler)
        if self._signals.wake is not None:
            self._signals.wake.close()
            self._writer.close()

    def _wait(self, timeout: float) -> None:
        """Sleep until a worker exits, a signal arrives, or `timeout` passes."""
        waitables: list[Any] = [c.process.sentinel for c in self.children if c.process is not None]
        if self._signals.wake is not None:
            waitables.append(self._signals.wake)
        multiprocessing.connection.wait(waitables, timeout)
        if self._signals.wake is not None:
            with contextlib.suppress(BlockingIOError):
                while self._signals.wake.recv(256):
                    pass

    def _forward_hup(self) -> None:
        configure_from(self.config)
        log.info("SIGHUP: logging reconfigured; passing it on to the workers")
        for child in self.children:
            if child.process is not None and child.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGHUP)

    # -- metrics directory ---------------------------------------------------------------------

    def _prepare_metrics_dir(self) -> None:
        """One fresh directory per run, set in the environment before any worker starts."""
        given = os.environ.get(MULTIPROC_ENV)
        if given:
            self._metrics_dir = prepare_directory(given)
        else:
            base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
            self._metrics_dir = Path(tempfile.mkdtemp(prefix="consumer-metrics-", dir=base))
            self._own_metrics_dir = True
            os.environ[MULTIPROC_ENV] = str(self._metrics_dir)

    def _remove_metrics_dir(self) -> None:
        if self._own_metrics_dir and self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)

    def _forget(self, process: BaseProcess) -> None:
        if self._metrics_dir is not None and process.pid is not None:
            mark_dead(process.pid, self._metrics_dir)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return str(code)


__all__ = ["DEFAULT_DRAIN_SECONDS", "Policy", "Supervisor"]
