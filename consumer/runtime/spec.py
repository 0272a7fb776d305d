"""What the supervisor needs to know about a worker process, without importing what it runs.

The supervisor imports only this module of the worker side: the SDKs, aiohttp and the sinks are
imported by `start`, in the worker process, so the supervisor stays small (about 30 MB less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from consumer.config.model import Config, QueueConfig

EXIT_OK = 0
EXIT_FAILED = 1
"""A crash: the supervisor restarts the worker with backoff."""
EXIT_UNFINISHED = 3
"""The drain deadline passed with a batch still in hand (it will be redelivered)."""
EXIT_CONFIG = 78
"""EX_CONFIG: the configuration cannot work (restarting will not help)."""

DEFAULT_DRAIN_SECONDS = 20.0
"""Seconds to finish in-flight work after SIGTERM; below systemd's TimeoutStopSec (90 s)."""

Kind = Literal["pull", "listener"]


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs: a pull queue's worker `index`, or the listener."""

    kind: Kind
    name: str
    """For logs: `queue#index` or `listener`."""
    slot: int
    queue: str | None = None
    """The pull queue (kind "pull")."""
    push_queues: tuple[str, ...] = ()
    """The `source: http` queues the listener serves (kind "listener")."""
    stale_after: float = 60.0
    """Seconds without a heartbeat after which the supervisor takes the worker for wedged."""

    @property
    def group(self) -> str:
        """What crashes are counted by: the queue, or the listener."""
        return self.queue or self.name


def pull_spec(queue: QueueConfig, index: int, slot: int) -> WorkerSpec:
    wait, _ = queue.receive_settings()
    # A receive may take the long poll plus the request time-out; a batch, the sink's retries.
    stale_after = wait + 15.0 + queue.retry.max.total_seconds() + 15.0
    return WorkerSpec(
        "pull", f"{queue.name}#{index}", slot, queue=queue.name, stale_after=stale_after
    )


def listener_spec(push_queues: Sequence[str], slot: int) -> WorkerSpec:
    return WorkerSpec(
        "listener", "listener", slot, push_queues=tuple(push_queues), stale_after=60.0
    )


def start(spec: WorkerSpec, config: Config, array: Any, drain_seconds: float) -> None:
    """The target of every worker process: `consumer.runtime.worker.main`, imported there."""
    from consumer.runtime import worker  # noqa: PLC0415 - only worker processes load it

    worker.main(spec, config, array, drain_seconds)


__all__ = [
    "DEFAULT_DRAIN_SECONDS",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNFINISHED",
    "WorkerSpec",
    "listener_spec",
    "pull_spec",
    "start",
]
