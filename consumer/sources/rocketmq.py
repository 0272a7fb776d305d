"""RocketMQ 5 (Aliyun 5.x, Apache proxy) through `rocketmq-python-client`'s SimpleConsumer.

Mapping onto `Source` (docs/rocketmq.md): `receive` → `SimpleConsumer.receive`, `ack` →
`AckMessage`, `reject` and `extend` → `ChangeInvisibleDuration`, `close` → `shutdown`. The
client's `Message` is the handle; each new receipt handle is written into it, so `ack` after
`extend` uses the newest one.

What the client does not do for us (its import, start-up and route errors:
`rocketmq_session.py`):

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

import importlib
import math
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import structlog

from consumer.config.model import RocketMqConfig, RocketMqQueue
from consumer.errors import TransientError, describe
from consumer.sources.base import Message
from consumer.sources.rocketmq_session import (
    INVALID_RECEIPT_HANDLE,
    OK,
    Session,
    StatusError,
    ensure_event_loop,
    import_client,
)

log = structlog.get_logger("consumer.sources.rocketmq")

MAX_BATCH = 32


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
        self._session = Session(config, location, request_timeout)
        self._max_deliveries = max_deliveries
        self._request_timeout = request_timeout
        self._min_wait = min_wait if min_wait is not None else max(1, 6 - request_timeout)
        self._invisible = max(1, math.ceil(config.invisible_duration.total_seconds()))
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
        ensure_event_loop()
        consumer = self._connect()
        consumer.await_duration = max(self._min_wait, math.ceil(wait))
        try:
            received = consumer.receive(min(max_count, MAX_BATCH), self._invisible)
        except Exception as exc:
            if self._closed:  # closed during the long poll (a shutdown): nothing was received
                return []
            raise self._session.translate(exc, "receive", consumer) from exc
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
        if self._consumer is None:
            self._consumer = self._session.start(self._min_wait)
        return self._consumer

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
        live = [m.handle for m in messages if getattr(m.handle, "receipt_handle", None)]
        if operation != "extend":
            for message in messages:
                self._unsettled.pop(id(message.handle), None)
        if seconds is None:
            errors = self._ack_all(consumer, live)
        else:
            errors = self._change_all(consumer, live, seconds)
        stale = len(messages) - len(live)
        stale += sum(getattr(e, "code", None) == INVALID_RECEIPT_HANDLE for e in errors)
        if stale:
            log.info(
                "rocketmq receipt handles were stale; those messages will be redelivered",
                operation=operation,
                stale=stale,
            )
        self._raise_first(errors, operation, consumer)

    def _raise_first(
        self, errors: Sequence[Exception | None], operation: str, consumer: Any
    ) -> None:
        """Raise the first failure that is not a stale handle, as a TransientError: settling
        raises nothing else (`sources/base.py`), even for a code that names the settings."""
        for error in errors:
            if error is None or getattr(error, "code", None) == INVALID_RECEIPT_HANDLE:
                continue
            failure = self._session.translate(error, operation, consumer)
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
            if response.status.code == OK:
                continue
            by_handle = {e.receipt_handle: e.status for e in response.entries}
            for index in indexes:
                status = by_handle.get(handles[index].receipt_handle, response.status)
                if status.code != OK:
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
            if response.status.code == OK and response.receipt_handle:
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


__all__ = ["RocketMQSource", "import_client", "open_queue"]
