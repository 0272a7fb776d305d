"""RocketMQ 5 (Aliyun 5.x, Apache proxy) through `rocketmq-python-client`'s SimpleConsumer.

Mapping onto `Source` (docs/rocketmq.md): `receive` → `SimpleConsumer.receive`, `ack` →
`AckMessage`, `reject` and `extend` → `ChangeInvisibleDuration`, `close` → `shutdown`. The
client's `Message` is the handle; each new receipt handle is written into it, so `ack` after
`extend` uses the newest one.

What the client does not do for us:

- Its import creates `$HOME/logs/rocketmq_python/` and fails when HOME is not writable; the
  import is lazy and falls back to `$CACHE_DIRECTORY`, `$STATE_DIRECTORY` or the temp dir.
- `startup()` neither connects nor fails; a failed route lookup surfaces at the first
  `receive()` as a bare "failed to fetch topic route" whatever the cause, so we ask `QueryRoute`
  ourselves to name it (unreachable, UNAUTHORIZED, TOPIC_NOT_FOUND).
- Its `ack(m)` is one blocking round trip per message, and its `change_invisible_duration`
  blanks the receipt handle when the change fails (the old one is still valid on the server).
  So settling goes through the client's own channel (`rpc_client`, `sign()`), with one
  `AckMessage` per batch and the invisible-time changes of a batch in flight together.
- `shutdown()` leaves the consumer's message-decode pool running; `close()` shuts it down, so
  reconnecting does not leak threads. Messages received and never settled are given back (and
  logged) at `close()`, rather than left to wait out the whole invisible duration.
- Bodies whose digest does not match (`corrupted`) are given back until they exceed
  `max_deliveries`, then passed on so that the pipeline quarantines their raw bytes.

The Apache proxy (and Aliyun's) refuses an invisible duration under 10 s and long polls of less
than 5 s that do not fit the client's deadline (`await + request_timeout`), hence `min_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from types import ModuleType
from typing import Any

import structlog

from consumer.config.model import RocketMqConfig, RocketMqQueue
from consumer.errors import ConfigError, TransientError, describe
from consumer.logs import adopt_library_loggers
from consumer.sources.base import Message

log = structlog.get_logger("consumer.sources.rocketmq")

_OK = 20000
INVALID_RECEIPT_HANDLE = 40013
# Status codes that mean the request itself is wrong: retrying never helps.
_CONFIG_CODES = {
    40002: ".topic",  # ILLEGAL_TOPIC
    40003: ".group",  # ILLEGAL_CONSUMER_GROUP
    40010: ".tag",  # ILLEGAL_FILTER_EXPRESSION
    40011: ".invisible_duration",  # ILLEGAL_INVISIBLE_TIME
    40018: "",  # ILLEGAL_POLLING_TIME: the long poll does not fit the request deadline
}
MAX_BATCH = 32
_import_lock = threading.Lock()


@contextlib.contextmanager
def _home(path: str) -> Iterator[None]:
    old = os.environ.get("HOME")
    os.environ["HOME"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


def import_client() -> ModuleType:
    """Import `rocketmq`, pointing HOME at a writable directory if its log dir cannot be made."""
    with _import_lock:
        try:
            return importlib.import_module("rocketmq")
        except OSError as first:
            candidates = [
                os.environ.get("CACHE_DIRECTORY", "").split(":")[0],
                os.environ.get("STATE_DIRECTORY", "").split(":")[0],
                tempfile.gettempdir(),
            ]
            for directory in filter(None, candidates):
                with _home(directory), contextlib.suppress(OSError):
                    return importlib.import_module("rocketmq")
            raise TransientError(
                f"cannot import rocketmq: it needs a writable $HOME/logs ({first})"
            ) from first


def open_queue(queue: RocketMqQueue) -> RocketMQSource:
    """The source of a `source: rocketmq` queue (`consumer.sources.open_source`)."""
    return RocketMQSource(queue.rocketmq, **queue.source_options())


class RocketMQSource:
    """One SimpleConsumer on one topic and group; connects lazily on the first `receive`."""

    concurrent_settle = False
    """One gRPC client for everything: settled under the worker's io lock."""

    def __init__(
        self,
        config: RocketMqConfig,
        *,
        max_deliveries: int = 10,
        request_timeout: int = 3,
        min_wait: int | None = None,
        location: str = "rocketmq",
    ) -> None:
        """`min_wait` is the shortest long poll asked for (default: enough for the proxy's
        5 s minimum with `request_timeout`); `location` prefixes configuration errors."""
        if request_timeout < 1:
            raise ValueError(f"request_timeout must be >= 1 s, got {request_timeout}")
        self._config = config
        self._max_deliveries = max_deliveries
        self._request_timeout = request_timeout
        self._min_wait = min_wait if min_wait is not None else max(1, 6 - request_timeout)
        self._invisible = max(1, math.ceil(config.invisible_duration.total_seconds()))
        self._location = location
        self._consumer: Any = None
        self._closed = False
        self._unsettled: dict[int, Any] = {}
        """Client messages handed out and neither acked nor rejected yet, by `id()`."""

    @property
    def visibility_timeout(self) -> float:
        return float(self._invisible)

    # -- Source --------------------------------------------------------------------------------

    def receive(self, max_count: int, wait: float) -> list[Message]:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        _ensure_event_loop()
        consumer = self._connect()
        consumer.await_duration = max(self._min_wait, math.ceil(wait))
        try:
            received = consumer.receive(min(max_count, MAX_BATCH), self._invisible)
        except Exception as exc:
            if self._closed:  # closed during the long poll (a shutdown): nothing was received
                return []
            raise self._translate(exc, "receive") from exc
        out: list[Message] = []
        for m in received:
            attempt = int(m.delivery_attempt or 1)
            if m.corrupted and attempt <= self._max_deliveries:
                self._give_back_corrupted(m, attempt)
                continue
            out.append(
                Message(id=str(m.message_id), body=bytes(m.body), delivery_count=attempt, handle=m)
            )
            self._unsettled[id(m)] = m
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        self._settle(messages, "ack", None)

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        # 0 s would make a failing message spin; RocketMQ durations are whole seconds.
        self._settle(messages, "reject", max(1, math.ceil(delay)))

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self._settle(messages, "extend", max(1, math.ceil(seconds)))

    def close(self) -> None:
        """Give back what was received and never settled, then shut the consumer down
        (NotifyClientTermination) and release its threads."""
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        left = [m for m in list(self._unsettled.values()) if m.receipt_handle]
        self._unsettled.clear()
        if left:
            log.warning(
                "closing with unsettled rocketmq messages; giving them back",
                messages=len(left),
                redelivery_in_seconds=1,
            )
            # On failure the invisible time lapses: they still come back, only later.
            self._change_all(consumer, left, 1)
        try:
            if consumer.is_running:
                consumer.shutdown()
        except Exception as exc:  # closing must not mask what made us close
            log.warning("rocketmq consumer shutdown failed", error=describe(exc))
        pool = getattr(consumer, "_Consumer__message_decode_executor", None)
        if pool is not None:
            pool.shutdown(wait=False)

    # -- internals -----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._closed:
            raise TransientError("the RocketMQ source is closed")
        if self._consumer is not None:
            return self._consumer
        client = import_client()
        adopt_library_loggers()  # the client's own log files bypass the JSON lines and redaction
        cfg = self._config
        credentials = (
            client.Credentials(
                cfg.credentials.username, cfg.credentials.password.get_secret_value()
            )
            if cfg.credentials is not None
            else client.Credentials()
        )
        try:
            configuration = client.ClientConfiguration(
                cfg.endpoints,
                credentials,
                namespace=cfg.namespace,
                request_timeout=self._request_timeout,
            )
        except Exception as exc:  # the client cannot parse the endpoints
            raise ConfigError(
                f"{self._location}.endpoints", f"cannot use {cfg.endpoints!r}: {exc}"
            ) from exc
        try:
            consumer = client.SimpleConsumer(
                configuration,
                cfg.group,
                {cfg.topic: client.FilterExpression(cfg.tag or "*")},
                await_duration=self._min_wait,
                tls_enable=cfg.tls,
            )
            consumer.startup()
        except Exception as exc:
            raise TransientError(f"cannot start the RocketMQ consumer: {exc}") from exc
        self._consumer = consumer
        log.info(
            "rocketmq consumer started",
            endpoints=cfg.endpoints,
            topic=cfg.topic,
            group=cfg.group,
            namespace=cfg.namespace,
            tls=cfg.tls,
        )
        return consumer

    def _translate(self, exc: Exception, operation: str) -> Exception:
        """Map a client failure onto ConfigError (the request is wrong) or TransientError."""
        code = getattr(exc, "code", None)
        if callable(code):  # a grpc.RpcError: transport trouble, time-out
            status = code()
            name = getattr(status, "name", str(status))
            return TransientError(f"rocketmq {operation} failed: gRPC {name}: {_details(exc)}")
        if isinstance(code, int) and code in _CONFIG_CODES:
            return ConfigError(f"{self._location}{_CONFIG_CODES[code]}", str(exc))
        if isinstance(code, int):
            return TransientError(f"rocketmq {operation} failed: {type(exc).__name__} {exc}")
        if "route" in str(exc):
            return TransientError(f"rocketmq {operation} failed: {self._route_problem()}")
        return TransientError(f"rocketmq {operation} failed: {describe(exc)}")

    def _route_problem(self) -> str:
        """Ask QueryRoute ourselves: the client logs the refusal and raises a bare Exception."""
        cfg, consumer = self._config, self._consumer
        where = f"topic {cfg.topic!r} at {cfg.endpoints}"
        try:
            protocol = importlib.import_module("rocketmq.grpc_protocol")
            endpoints = consumer.client_configuration.rpc_endpoints
            request = protocol.QueryRouteRequest()
            request.topic.name = cfg.topic
            request.topic.resource_namespace = cfg.namespace
            request.endpoints.CopyFrom(endpoints.endpoints)
            response = consumer.rpc_client.query_topic_route_async(
                endpoints, request, metadata=consumer.sign(), timeout=self._request_timeout
            ).result(timeout=self._request_timeout + 1)
        except Exception as exc:
            return f"cannot reach {where}: {type(exc).__name__}: {_details(exc)}"
        code, message = int(response.status.code), str(response.status.message)
        hint = {
            40100: "check rocketmq.credentials (the instance username and password)",
            40300: "the credentials may not use this topic or group",
            40402: "check rocketmq.topic and rocketmq.namespace",
            40400: "check rocketmq.topic and rocketmq.namespace",
        }.get(code, "")
        return f"route lookup for {where} answered {code} {message!r}" + (
            f": {hint}" if hint else ""
        )

    def _give_back_corrupted(self, m: Any, attempt: int) -> None:
        delay = min(2**attempt, 60)
        log.warning(
            "rocketmq message body does not match its digest; redelivering it",
            message_id=m.message_id,
            delivery=attempt,
            max_deliveries=self._max_deliveries,
            redelivery_in_seconds=delay,
        )
        # If this fails, the invisible time lapses anyway.
        self._change_all(self._consumer, [m], delay)

    def _settle(self, messages: Sequence[Message], operation: str, seconds: int | None) -> None:
        """Ack or change every message; stale handles are skipped, the first outage raised."""
        if not messages:
            return
        consumer = self._consumer
        if consumer is None:  # closed: the handles died with the consumer
            log.info(
                "rocketmq source closed; these messages will be redelivered",
                operation=operation,
                messages=len(messages),
            )
            return
        live = [
            m.handle
            for m in messages
            if m.handle is not None and getattr(m.handle, "receipt_handle", None)
        ]
        stale = len(messages) - len(live)
        if operation != "extend":
            for message in messages:
                self._unsettled.pop(id(message.handle), None)
        if seconds is None:
            errors = self._ack_all(consumer, live)
        else:
            errors = self._change_all(consumer, live, seconds)
        failure: Exception | None = None
        for error in errors:
            if error is None:
                continue
            if getattr(error, "code", None) == INVALID_RECEIPT_HANDLE:
                stale += 1
            elif failure is None:
                failure = self._translate(error, operation)
        if stale:
            log.info(
                "rocketmq receipt handles were stale; those messages will be redelivered",
                operation=operation,
                stale=stale,
            )
        if failure is not None:
            if isinstance(failure, TransientError):
                raise failure
            raise TransientError(str(failure)) from failure

    def _ack_all(self, consumer: Any, handles: Sequence[Any]) -> list[Exception | None]:
        """One AckMessage per topic and broker for the whole batch: the client's `ack` costs a
        round trip per message, which capped the pipeline at about half the client's rate."""
        protocol = importlib.import_module("rocketmq.grpc_protocol")
        cfg = self._config
        groups: dict[tuple[int, str], list[int]] = {}
        for index, m in enumerate(handles):
            groups.setdefault((id(m.endpoints), str(m.topic)), []).append(index)
        calls = []
        for indexes in groups.values():
            request = protocol.AckMessageRequest()
            request.group.name = cfg.group
            request.group.resource_namespace = cfg.namespace
            request.topic.name = handles[indexes[0]].topic
            request.topic.resource_namespace = cfg.namespace
            for index in indexes:
                entry = request.entries.add()
                entry.message_id = handles[index].message_id
                entry.receipt_handle = handles[index].receipt_handle
            calls.append(
                (indexes, self._call(consumer, "ack_message_async", handles[indexes[0]], request))
            )
        errors: list[Exception | None] = [None] * len(handles)
        for indexes, call in calls:
            try:
                response = call.result(timeout=self._request_timeout + 1)
            except Exception as exc:  # transport trouble: none of these is known to be acked
                for index in indexes:
                    errors[index] = exc
                continue
            if response.status.code == _OK:
                continue
            by_handle = {e.receipt_handle: e.status for e in response.entries}
            for index in indexes:
                status = by_handle.get(handles[index].receipt_handle, response.status)
                if status.code != _OK:
                    errors[index] = StatusError(status.code, status.message)
        return errors

    def _change_all(
        self, consumer: Any, handles: Sequence[Any], seconds: int
    ) -> list[Exception | None]:
        """ChangeInvisibleDuration for every message, all in flight at once; a new receipt
        handle is kept only when the change succeeded (the client's own call blanks it on a
        failure, though the old one is still valid)."""
        protocol = importlib.import_module("rocketmq.grpc_protocol")
        cfg = self._config
        calls = []
        for m in handles:
            request = protocol.ChangeInvisibleDurationRequest()
            request.group.name = cfg.group
            request.group.resource_namespace = cfg.namespace
            request.topic.name = m.topic
            request.topic.resource_namespace = cfg.namespace
            request.receipt_handle = m.receipt_handle
            request.message_id = m.message_id
            request.invisible_duration.seconds = seconds
            calls.append(self._call(consumer, "change_invisible_duration_async", m, request))
        errors: list[Exception | None] = []
        for m, call in zip(handles, calls, strict=True):
            try:
                response = call.result(timeout=self._request_timeout + 1)
            except Exception as exc:
                errors.append(exc)
                continue
            if response.status.code == _OK and response.receipt_handle:
                m.receipt_handle = response.receipt_handle
                errors.append(None)
            else:
                errors.append(StatusError(response.status.code, response.status.message))
        return errors

    def _call(self, consumer: Any, rpc: str, m: Any, request: Any) -> Any:
        """Start one RPC on the client's channel to the message's broker; a future."""
        try:
            return getattr(consumer.rpc_client, rpc)(
                m.endpoints, request, metadata=consumer.sign(), timeout=self._request_timeout
            )
        except Exception as exc:
            failed: Future[Any] = Future()
            failed.set_exception(exc)
            return failed


class StatusError(Exception):
    """A status the broker answered in-band for one message (`code` as in `rocketmq`'s own
    exceptions, so `_translate` reads both alike)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):
            return str(details())
    return str(exc)


def _ensure_event_loop() -> None:
    """Give the calling thread an event loop (never run) when it has none.

    The client opens its telemetry stream through grpc.aio from the thread that starts or
    receives, and grpc.aio asks that thread for its event loop: a thread without one (any but
    the main thread, or the main thread after an `asyncio.run`) fails the route lookup.
    """
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())


__all__ = ["RocketMQSource", "import_client", "open_queue"]
