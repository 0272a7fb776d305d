"""What the after-commit workers share: their name in a lease row, and their thread.

The forwarders, the reconciler and the archiver each lease rows (`forward_state`,
`reconcile_state`, `recordings`) so that any number of daemons can share one database; the
threaded ones (forwarders, reconciler) run in the listener from `start()` until `stop()`.
"""

from __future__ import annotations

import os
import threading
import uuid
from abc import ABC, abstractmethod
from typing import ClassVar


def lease_owner() -> str:
    """A lease holder's name: its process id, to find it in the logs, and a random part, so
    that two holders in one process (or a restarted pid) never take each other's leases."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


class Background(ABC):
    """Runs `run(stop)` in a daemon thread from `start()` until `stop()` sets the event."""

    thread_name: ClassVar[str]

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set; failures must not end the loop."""

    def start(self) -> threading.Thread:
        if self._thread is not None:
            raise RuntimeError(f"{self.thread_name} is already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


__all__ = ["Background", "lease_owner"]
