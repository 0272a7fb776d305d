"""Forwarders: after the database commit, hand each new event to other systems.

`store` writes one outbox row per (forwarder, newly inserted event) in the same transaction as
the event, so a forward can be late but never lost: `ForwardRunner` delivers each forwarder's
pending rows in order, deletes them once the forwarder has them, and after a failure waits with
exponential backoff before trying the same rows again. Delivery is at least once (a crash between
delivering and deleting repeats a batch); receivers dedupe on `event_id`.

Every worker process may run a runner: a lease in `forward_state` lets one of them deliver for a
forwarder at a time, so batches are neither interleaved nor sent twice by two workers.

- webhook: POST `{"events": [...]}` (the objects `consumer normalize` prints), with header
  `X-Consumer-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`; 2xx delivers.
- python: `module:function`, called with a list of `CallEvent`; an exception means retry.
- jsonl: one event per line appended to a file, fsynced before the rows are deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import structlog

from consumer import __version__, backoff
from consumer.background import Background, lease_owner
from consumer.config.model import (
    Forward,
    JsonlForward,
    PythonForward,
    WebhookForward,
    webhook_url_problem,
)
from consumer.errors import ConfigError, describe
from consumer.model import CallEvent
from consumer.sinks.sql import Pending

log = structlog.get_logger("consumer.forward")

SIGNATURE_HEADER = "X-Consumer-Signature"


class ForwardError(Exception):
    """A delivery that did not go through; the runner retries it later."""


class Forwarder(Protocol):
    """Something that takes a batch of events or raises; `name` keys its outbox rows."""

    @property
    def name(self) -> str: ...

    def deliver(self, events: Sequence[CallEvent]) -> None: ...


class Outbox(Protocol):
    """What the runner needs from a sink (`SqlSink` provides it)."""

    def outbox_claim(self, forwarder: str, owner: str, now: float, lease: float) -> int | None: ...

    def outbox_pending(self, forwarder: str, limit: int) -> list[Pending]: ...

    def outbox_delivered(self, forwarder: str, owner: str, ids: Sequence[int]) -> None: ...

    def outbox_failed(self, forwarder: str, owner: str, error: str, retry_at: float) -> None: ...

    def outbox_release(self, forwarder: str, owner: str) -> None: ...


def sign(secret: str, body: bytes) -> str:
    """The `X-Consumer-Signature` value of a body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def events_json(events: Sequence[CallEvent]) -> bytes:
    """A webhook body: the events as `consumer normalize` prints them, in one object."""
    payload = {"events": [event.model_dump(mode="json") for event in events]}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WebhookForwarder:
    def __init__(self, url: str, secret: str | None = None, timeout: float = 10.0) -> None:
        problem = webhook_url_problem(url)
        if problem:
            raise ConfigError("sink.forward.webhook.url", problem)
        parts = urlsplit(url)
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._parts = parts
        self.name = _webhook_name(url)

    def deliver(self, events: Sequence[CallEvent]) -> None:
        body = events_json(events)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"consumer/{__version__}",
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        parts = self._parts
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = connection_class(parts.hostname or "", parts.port, timeout=self.timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read(2048)
        except (OSError, http.client.HTTPException) as exc:
            raise ForwardError(f"POST {self.name}: {describe(exc)}") from exc
        finally:
            conn.close()
        # Redirects are not followed: re-POSTing events somewhere else is the receiver's call.
        if not 200 <= response.status < 300:
            text = answer.decode("utf-8", "replace").strip()[:200]
            raise ForwardError(f"POST {self.name}: HTTP {response.status} {text}".rstrip())


class PythonForwarder:
    def __init__(self, target: str) -> None:
        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise ConfigError("sink.forward.python.callable", f"not module:function: {target!r}")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                "sink.forward.python.callable", f"cannot import {module_name!r}: {exc}"
            ) from exc
        function = getattr(module, attribute, None)
        if not callable(function):
            raise ConfigError(
                "sink.forward.python.callable", f"{module_name!r} has no callable {attribute!r}"
            )
        self.function: Callable[[list[CallEvent]], Any] = function
        self.name = f"python:{target}"

    def deliver(self, events: Sequence[CallEvent]) -> None:
        self.function(list(events))


class JsonlForwarder:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        if not self.path.parent.is_dir():
            raise ConfigError(
                "sink.forward.jsonl.path", f"the directory does not exist: {self.path.parent}"
            )
        self.name = _jsonl_name(path)

    def deliver(self, events: Sequence[CallEvent]) -> None:
        lines = b"".join(event.model_dump_json().encode("utf-8") + b"\n" for event in events)
        with open(self.path, "a+b") as file:
            # A crash mid-write leaves a torn last line: end it so the new lines stay parseable.
            if file.tell() > 0:
                file.seek(-1, os.SEEK_END)
                if file.read(1) != b"\n":
                    lines = b"\n" + lines
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())


def _webhook_name(url: str) -> str:
    # The query may hold a token: keep it out of the name (stored in the database, logged).
    parts = urlsplit(url)
    name = f"webhook:{urlunsplit(parts._replace(query='', fragment=''))}"
    if parts.query:
        name += "#" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return name


def _jsonl_name(path: str | os.PathLike[str]) -> str:
    return f"jsonl:{Path(path).absolute()}"


def forward_name(forward: Forward) -> str:
    """The stable name that keys a forwarder's outbox rows (without building it)."""
    if forward.webhook is not None:
        return _webhook_name(forward.webhook.url)
    if forward.python is not None:
        return f"python:{forward.python.callable}"
    if forward.jsonl is not None:
        return _jsonl_name(forward.jsonl.path)
    raise ConfigError("sink.forward", "a forward entry needs exactly one of webhook, python, jsonl")


def build(forward: Forward) -> Forwarder:
    """The forwarder of one `sink.forward` entry."""
    spec = forward.webhook or forward.python or forward.jsonl
    if isinstance(spec, WebhookForward):
        secret = spec.secret.get_secret_value() if spec.secret is not None else None
        return WebhookForwarder(spec.url, secret, spec.timeout.total_seconds())
    if isinstance(spec, PythonForward):
        return PythonForwarder(spec.callable)
    if isinstance(spec, JsonlForward):
        return JsonlForwarder(spec.path)
    raise ConfigError("sink.forward", "a forward entry needs exactly one of webhook, python, jsonl")


def build_all(entries: Sequence[Forward]) -> list[Forwarder]:
    forwarders: list[Forwarder] = []
    for index, entry in enumerate(entries):
        try:
            forwarder = build(entry)
        except ConfigError as exc:
            where = exc.location.replace("sink.forward", f"sink.forward[{index}]", 1)
            raise ConfigError(where, exc.problem) from exc
        if any(other.name == forwarder.name for other in forwarders):
            raise ConfigError(f"sink.forward[{index}]", f"{forwarder.name} is configured twice")
        forwarders.append(forwarder)
    return forwarders


class ForwardRunner(Background):
    """Delivers the outbox to its forwarders; `start()` runs it in a thread until `stop()`.

    Backoff after a failure: `initial_backoff * 2**(failures so far)`, capped at `max_backoff`,
    kept in the database, so every worker honours it and a restart does not reset it.
    """

    thread_name = "consumer-forward"

    def __init__(
        self,
        outbox: Outbox,
        forwarders: Sequence[Forwarder],
        *,
        batch_size: int = 100,
        initial_backoff: float = 1.0,
        max_backoff: float = 300.0,
        lease_seconds: float = 120.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        super().__init__()
        self.outbox = outbox
        self.forwarders = tuple(forwarders)
        self.batch_size = batch_size
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.owner = lease_owner()

    def run_once(self, max_batches: int = 10) -> float:
        """Deliver what is due now; the seconds to wait before calling again."""
        wait = self.poll_seconds
        for forwarder in self.forwarders:
            wait = min(wait, self._drain(forwarder, max_batches))
        return wait

    def _drain(self, forwarder: Forwarder, max_batches: int) -> float:
        name = forwarder.name
        for _ in range(max_batches):
            now = self.clock()
            failures = self.outbox.outbox_claim(name, self.owner, now, self.lease_seconds)
            if failures is None:  # another worker holds it, or its backoff has not passed
                return self.poll_seconds
            pending = self.outbox.outbox_pending(name, self.batch_size)
            if not pending:
                self.outbox.outbox_release(name, self.owner)
                return self.poll_seconds
            try:
                forwarder.deliver([row.event for row in pending])
            except Exception as exc:
                delay = backoff.delay(failures + 1, self.initial_backoff, self.max_backoff)
                error = describe(exc)
                self.outbox.outbox_failed(name, self.owner, error, now + delay)
                log.warning(
                    "forward failed: retrying later",
                    forwarder=name,
                    events=len(pending),
                    failures=failures + 1,
                    retry_in_seconds=round(delay, 3),
                    error=error,
                )
                return delay
            self.outbox.outbox_delivered(name, self.owner, [row.id for row in pending])
            if len(pending) < self.batch_size:
                self.outbox.outbox_release(name, self.owner)
                return self.poll_seconds
        return 0.0  # more is pending: come back at once

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; database and forwarder failures never end the loop."""
        while not stop.is_set():
            try:
                wait = self.run_once()
            except Exception as exc:
                log.warning("forward runner: outbox unavailable", error=describe(exc))
                wait = self.poll_seconds
            stop.wait(wait)


__all__ = [
    "SIGNATURE_HEADER",
    "ForwardError",
    "ForwardRunner",
    "Forwarder",
    "JsonlForwarder",
    "Outbox",
    "PythonForwarder",
    "WebhookForwarder",
    "build",
    "build_all",
    "events_json",
    "forward_name",
    "sign",
]
