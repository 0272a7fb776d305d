"""Stand-in worker processes for supervisor tests: each behaves one way the supervisor must handle.

They are module-level functions so that the spawn context can import them in the child.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from consumer.runtime.status import Slot


def crash(spec: Any, config: Any, array: Any, drain: float) -> None:
    os._exit(1)


def bad_config(spec: Any, config: Any, array: Any, drain: float) -> None:
    os._exit(78)


def healthy(spec: Any, config: Any, array: Any, drain: float) -> None:
    """Connects, beats, and drains at once on SIGTERM."""
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    slot = Slot(array, spec.slot)
    slot.connected(True)
    while not stopping:
        slot.beat()
        time.sleep(0.02)
    os._exit(0)


def stubborn(spec: Any, config: Any, array: Any, drain: float) -> None:
    """Connects and beats, but ignores SIGTERM: a batch that outlives the drain deadline."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    slot = Slot(array, spec.slot)
    slot.connected(True)
    while True:
        slot.beat()
        time.sleep(0.02)


def wedged(spec: Any, config: Any, array: Any, drain: float) -> None:
    """Connects once, then its loop never beats again."""
    Slot(array, spec.slot).connected(True)
    time.sleep(3600)
