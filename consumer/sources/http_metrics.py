"""The push listener's request metrics, and their per-queue children looked up once."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "consumer_push_requests",
    "HTTP push requests answered, by queue and status code",
    ["queue", "code"],
)
AUTH_FAILURES = Counter(
    "consumer_push_auth_failures",
    "HTTP push requests refused for wrong or missing credentials",
    ["queue"],
)
REQUEST_SECONDS = Histogram(
    "consumer_push_request_duration_seconds",
    "From the request's arrival to its answer, for requests that reached the pipeline",
    ["queue"],
)
UNMATCHED = "unmatched"
"""The queue label of a request to no known path."""


class Counted:
    """The per-queue children of the request metrics, looked up once (`labels()` costs ~10 µs
    a call: a lock and a tuple key per request otherwise)."""

    def __init__(self) -> None:
        self._answered: dict[tuple[str, int], Any] = {}
        self._seconds: dict[str, Any] = {}

    def answered(self, queue: str, status: int) -> None:
        child = self._answered.get((queue, status))
        if child is None:
            child = self._answered[(queue, status)] = REQUESTS.labels(queue, str(status))
        child.inc()

    def took(self, queue: str, seconds: float) -> None:
        child = self._seconds.get(queue)
        if child is None:
            child = self._seconds[queue] = REQUEST_SECONDS.labels(queue)
        child.observe(seconds)


counted = Counted()


__all__ = ["AUTH_FAILURES", "REQUESTS", "REQUEST_SECONDS", "UNMATCHED", "counted"]
