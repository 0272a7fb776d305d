"""The MNS source: batch long polls on one queue, deletes only what committed.

Built on aliyun-mns-sdk 1.3.0 with the settings and pitfalls of docs/mns.md:

- `batch_receive_message(≤16, ≤30)` with `set_encoding(False)`: the body reaches the format's
  decoder untouched, so a body that is not base64 is dead-lettered instead of looping (the
  answer is decoded with ElementTree, `mns_receive.py`, rather than the SDK's minidom, and a
  batch delete's request is written as text, `mns_delete.py`);
- every request has a socket timeout longer than the long poll (the SDK's HTTPS connection has
  none by default);
- one SDK `Account` per source for receiving and changing visibility, and a second one, with
  its own connection, for deleting (the SDK is not thread-safe): each has a lock that makes
  concurrent use wait instead of corrupting the stream, so `ack` may run while a `receive` is
  in progress (`concurrent_settle`: the worker deletes one batch while it fetches the next);
- receipt handles are single-use: `extend` and `reject` continue with the handle MNS returns,
  stored in the message's `MnsHandle`;
- a stale handle on delete or visibility change (`ReceiptHandleError`, `MessageNotExist`) means
  the message is, or will be, redelivered, and the sink deduplicates it: logged, not raised;
- batch delete failures are judged per handle, and only transient ones are retried;
- a credentials refusal refreshes the Alicom token once and repeats the call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog
from mns.account import Account
from mns.mns_exception import MNSClientException, MNSExceptionBase, MNSServerException

from consumer.config.model import MnsConfig, MnsQueue
from consumer.errors import TransientError, describe
from consumer.sources.alicom_token import (
    AlicomTokenError,
    RefreshableCredentials,
    call_with_auth_retry,
    credentials_provider,
)
from consumer.sources.base import Message
from consumer.sources.mns_delete import batch_delete
from consumer.sources.mns_receive import batch_receive

log = structlog.get_logger("consumer.sources.mns")

T = TypeVar("T")

MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
MAX_VISIBILITY_SECONDS = 43200
DEFAULT_VISIBILITY_SECONDS = 30.0  # the MNS queue default, until a receive tells us better
STALE_HANDLE_CODES = frozenset({"ReceiptHandleError", "MessageNotExist"})
EMPTY_POLL_PAUSE = 1.0


@dataclass
class MnsHandle:
    """The current receipt handle of a received message; replaced on every visibility change."""

    receipt_handle: str
    next_visible_time: int
    """Epoch ms (server clock) at which MNS redelivers the message."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MNSExceptionBase):
        request = f", request id {exc.req_id}" if exc.req_id else ""
        return f"{exc.type}: {exc.message}{request}"
    return describe(exc)


def open_queue(queue: MnsQueue) -> MnsSource:
    """The source of a `source: mns` queue (`consumer.sources.open_source`)."""
    return MnsSource(queue.mns, name=queue.name)


class MnsSource:
    """`consumer.sources.base.Source` over one MNS queue."""

    def __init__(
        self,
        config: MnsConfig,
        *,
        name: str = "",
        request_timeout: float | None = None,
        provider: RefreshableCredentials | None = None,
        token_options: dict[str, Any] | None = None,
    ) -> None:
        """`request_timeout` defaults to the long-poll wait plus 10 s; `provider` overrides
        the credentials of `config.auth` (tests); `token_options` go to the token cache."""
        self._config = config
        self._name = name or config.queue
        self._provider = provider or credentials_provider(
            config.auth, config.queue, **(token_options or {})
        )
        timeout = request_timeout or float(config.wait_seconds + 10)
        if timeout <= config.wait_seconds:
            raise ValueError(
                f"request_timeout ({timeout}s) must exceed the long-poll wait "
                f"({config.wait_seconds}s)"
            )
        self._account, self._queue = self._open(config, timeout)
        self._lock = threading.Lock()
        # Deletes go through their own connection, so an ack need not wait for a receive.
        self._ack_account, self._ack_queue = self._open(config, timeout)
        self._ack_lock = threading.Lock()
        self._closed = threading.Event()
        self._visibility = DEFAULT_VISIBILITY_SECONDS
        self._visibility_known = False

    concurrent_settle = True
    """`ack` uses its own connection and lock: it may run while `receive` or `extend` does."""

    def _open(self, config: MnsConfig, timeout: float) -> tuple[Account, Any]:
        account = Account(config.endpoint.rstrip("/"), credentials_provider=self._provider)
        client = account.mns_client
        if client.http.is_https:
            client.http.conn.timeout = timeout  # read by http.client on every (re)connect
        else:
            client.set_connection_timeout(timeout)
        queue = account.get_queue(config.queue)
        queue.set_encoding(False)
        return account, queue

    # -- Source ----------------------------------------------------------------------------

    @property
    def visibility_timeout(self) -> float:
        """The queue's visibility timeout, learned from the messages MNS returns.

        A first delivery carries it exactly (`NextVisibleTime − FirstDequeueTime`, both server
        clock). Until one is seen, the MNS default of 30 s is assumed, lowered to what the
        redelivered messages have left by our clock.
        """
        return self._visibility

    def receive(self, max_count: int, wait: float) -> list[Message]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        count = min(max_count, self._config.batch_size, MAX_BATCH)
        wait_seconds = max(0, min(int(wait), self._config.wait_seconds, MAX_WAIT_SECONDS))
        started = time.monotonic()
        try:
            received = self._call(
                "receive", lambda: batch_receive(self._queue, count, wait_seconds)
            )
        except MNSServerException as exc:
            if exc.type != "MessageNotExist":
                raise TransientError(f"MNS receive on {self._name}: {_describe(exc)}") from exc
            # MNS also answers MessageNotExist at once when too many long polls run
            # (docs/mns.md): pause briefly instead of spinning.
            remaining = wait_seconds - (time.monotonic() - started)
            if remaining > 0.5:
                self._closed.wait(min(EMPTY_POLL_PAUSE, remaining))
            return []
        now_ms = int(time.time() * 1000)
        messages = []
        for item in received:
            if item.dequeue_count == 1 and item.next_visible_time > item.first_dequeue_time:
                self._visibility = (item.next_visible_time - item.first_dequeue_time) / 1000
                self._visibility_known = True
            elif not self._visibility_known:
                # Only redeliveries so far: estimate from our clock against the server's.
                left = (item.next_visible_time - now_ms) / 1000
                self._visibility = max(1.0, min(self._visibility, left))
            body = item.message_body
            messages.append(
                Message(
                    id=item.message_id,
                    body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                    delivery_count=item.dequeue_count,
                    handle=MnsHandle(item.receipt_handle, item.next_visible_time),
                )
            )
        return messages

    def ack(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), MAX_BATCH):
            self._delete([_handle(m) for m in messages[start : start + MAX_BATCH]])

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        self._set_visibility(messages, delay)

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self._set_visibility(messages, seconds)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._account.mns_client.close_connection()
        with self._ack_lock:
            self._ack_account.mns_client.close_connection()

    # -- internals -------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T], lock: threading.Lock | None = None) -> T:
        """Run one SDK call under its connection's lock (by default the receiving one); network
        and token failures become TransientError.

        `MNSServerException` is left to the caller, after one credentials refresh if MNS
        refused them.
        """
        if self._closed.is_set():
            raise TransientError(f"the MNS source for {self._name} is closed")
        with lock or self._lock:
            try:
                return call_with_auth_retry(self._provider, call)
            except AlicomTokenError as exc:
                raise TransientError(f"MNS {what} on {self._name}: {exc}") from exc
            except MNSServerException:
                raise
            except MNSClientException as exc:
                raise TransientError(f"MNS {what} on {self._name}: {_describe(exc)}") from exc

    def _delete(self, handles: list[MnsHandle]) -> None:
        if not handles:
            return
        by_receipt = {h.receipt_handle: h for h in handles}
        queue, lock = self._ack_queue, self._ack_lock
        try:
            if len(handles) == 1:
                self._call("delete", lambda: queue.delete_message(handles[0].receipt_handle), lock)
            else:
                self._call("delete", lambda: batch_delete(queue, list(by_receipt)), lock)
            return
        except MNSServerException as exc:
            if not exc.sub_errors:
                if exc.type in STALE_HANDLE_CODES:
                    self._stale("delete", handles, exc.type)
                    return
                raise TransientError(f"MNS delete on {self._name}: {_describe(exc)}") from exc
            failures = [(e["ReceiptHandle"], e["ErrorCode"]) for e in exc.sub_errors]
        stale = [by_receipt[r] for r, code in failures if code in STALE_HANDLE_CODES]
        if stale:
            self._stale("delete", stale, failures[0][1])
        retry = [by_receipt[r] for r, code in failures if code not in STALE_HANDLE_CODES]
        failed = self._delete_one_by_one(retry)
        if failed:
            raise TransientError(
                f"MNS delete on {self._name}: {len(failed)} of {len(handles)} messages not "
                f"deleted ({', '.join(sorted(set(failed)))}); they will be redelivered"
            )

    def _delete_one_by_one(self, handles: Sequence[MnsHandle]) -> list[str]:
        """Delete what a batch delete failed on, one at a time; the error codes still failing."""
        failed: list[str] = []
        for handle in handles:
            try:
                self._call(
                    "delete",
                    partial(self._ack_queue.delete_message, handle.receipt_handle),
                    self._ack_lock,
                )
            except MNSServerException as exc:
                if exc.type in STALE_HANDLE_CODES:
                    self._stale("delete", [handle], exc.type)
                else:
                    failed.append(str(exc.type))
        return failed

    def _set_visibility(self, messages: Sequence[Message], seconds: float) -> None:
        # MNS accepts whole seconds from 1 (0 would redeliver at once: a hot loop).
        timeout = int(min(max(math.ceil(seconds), 1), MAX_VISIBILITY_SECONDS))
        for message in messages:
            handle = _handle(message)
            try:
                changed = self._call(
                    "change visibility",
                    partial(self._queue.change_message_visibility, handle.receipt_handle, timeout),
                )
            except MNSServerException as exc:
                if exc.type in STALE_HANDLE_CODES:
                    self._stale("change visibility", [handle], exc.type)
                    continue
                raise TransientError(
                    f"MNS change visibility on {self._name}: {_describe(exc)}"
                ) from exc
            handle.receipt_handle = changed.receipt_handle
            handle.next_visible_time = int(changed.next_visible_time)  # the SDK returns a str

    def _stale(self, what: str, handles: Sequence[MnsHandle], code: str) -> None:
        log.info(
            f"{what}: receipt handle no longer valid; the message will be redelivered",
            queue=self._name,
            messages=len(handles),
            code=code,
        )


def _handle(message: Message) -> MnsHandle:
    if not isinstance(message.handle, MnsHandle):
        raise TypeError(f"message {message.id} was not received from an MnsSource")
    return message.handle


__all__ = ["MnsHandle", "MnsSource", "open_queue"]
