"""Hooks around the worker's receive, as Dramatiq's middleware wraps its broker and workers.

What watches a worker (its heartbeat and connection state for the supervisor, a source's
`up` gauge in /metrics) subclasses `Middleware` and overrides the hooks it needs, instead of
wrapping the source in a pass-through decorator. The worker calls every hook of every
middleware in order; each hook does nothing by default.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.pipeline.results import Result
from consumer.sources.base import Message


class Middleware:
    def before_receive(self, wait: float) -> float:
        """Called before each receive (prefetches included) with its long-poll seconds; returns
        the wait to use (it may shorten it)."""
        return wait

    def after_receive(self, messages: Sequence[Message]) -> None:
        """The source answered (maybe with nothing)."""

    def after_receive_failed(self, error: Exception) -> None:
        """The receive raised (a `TransientError` when the broker cannot be reached)."""

    def after_handle(self, results: Sequence[Result]) -> None:
        """The pipeline handled a batch; its settlement follows."""


__all__ = ["Middleware"]
