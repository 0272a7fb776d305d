"""HOME pointed elsewhere for a while: both RocketMQ clients write their log files under it,
one when it is imported (5.x), the other when its first consumer starts (4.x)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def home(path: str) -> Iterator[None]:
    """`$HOME` is `path` inside the block, and what it was (or unset) after it."""
    old = os.environ.get("HOME")
    os.environ["HOME"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


__all__ = ["home"]
