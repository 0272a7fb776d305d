"""`freeze_startup`: start-up's garbage is collected, what lives on is frozen, later garbage is
still collected. Each case runs in a child interpreter: freezing is for the whole process."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc, weakref
from consumer.runtime.heap import freeze_startup

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

kept = Node()
garbage = cycle()                      # start-up garbage: a cycle only the collector frees
gc.disable()                           # so that nothing but freeze_startup collects it
frozen = freeze_startup()
assert garbage() is None, "start-up garbage was frozen instead of collected"
assert frozen == gc.get_freeze_count() > 0
assert not any(o is kept for o in gc.get_objects()), "a live start-up object is still scanned"
later = cycle()                        # garbage made after the freeze
gc.collect()
assert later() is None, "garbage made after the freeze was not collected"
print("ok", frozen)
"""


def test_freeze_startup_collects_then_freezes_and_later_garbage_is_still_collected() -> None:
    # Given a process holding a live object and an unreachable cycle from its start-up
    # When it freezes its start-up heap
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    # Then the cycle was collected, the live object frozen, and a later cycle still collected
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
