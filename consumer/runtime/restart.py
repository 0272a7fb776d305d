"""When the supervisor restarts a dead worker, and when it gives up on a queue instead.

A worker that dies is restarted after an exponential backoff (`consumer.backoff`), which starts
afresh once a worker has run `healthy_after` seconds; `max_crashes` deaths of one queue's
workers within `crash_window` seconds mean the queue cannot run (a broker that refuses us, a
bug on some message), and the daemon stops rather than restart it forever.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from consumer import backoff
from consumer.runtime.spec import WorkerSpec


@dataclass(frozen=True)
class Policy:
    """Restart and crash-loop rules."""

    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    healthy_after: float = 60.0
    """A worker that ran this long before dying starts its backoff afresh."""
    max_crashes: int = 5
    crash_window: float = 120.0
    """`max_crashes` deaths of one queue's workers within this many seconds end the daemon."""


@dataclass
class Child:
    """One worker: its process while it runs, its restart state while it does not."""

    spec: WorkerSpec
    process: BaseProcess | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class Restarts:
    """The deaths of each queue's workers within the crash window."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._crashes: dict[str, deque[float]] = {}

    def crashes(self, child: Child, now: float) -> int:
        """Count `child`'s death at `now`; how many of its queue's fall in the window."""
        crashes = self._crashes.setdefault(child.spec.group, deque())
        crashes.append(now)
        while crashes and now - crashes[0] > self.policy.crash_window:
            crashes.popleft()
        return len(crashes)

    def gives_up(self, crashes: int) -> bool:
        return crashes >= self.policy.max_crashes

    def schedule(self, child: Child, now: float) -> float:
        """Set when `child` restarts after dying at `now`; the delay."""
        if now - child.started_at >= self.policy.healthy_after:
            child.failures = 0
        child.failures += 1
        delay = backoff.delay(child.failures, self.policy.initial_backoff, self.policy.max_backoff)
        child.restart_at = now + delay
        return delay


__all__ = ["Child", "Policy", "Restarts"]
