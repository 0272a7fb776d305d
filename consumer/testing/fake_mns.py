"""A local MNS queue service that speaks the wire protocol aliyun-mns-sdk 1.3.0 uses.

It exists so that tests, and `consumer demo`, run the real SDK over real sockets against a
peer that behaves like MNS where it matters to us (sdk-notes.md 3): signed requests
(HMAC-SHA1 over the `x-mns-*` headers, STS tokens in `security-token`), long polling,
visibility timeouts, single-use receipt handles, per-handle batch-delete failures and the
exact XML shapes the SDK's strict decoders require. Fault knobs (5xx answers, dropped
connections, slow or damaged answers, expiring credentials) are thread-safe and may change
while the server runs.

Where the real service is undocumented, the fake's choice is marked "assumed".
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import itertools
import random
import secrets
import signal
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import ThreadingHTTPServer
from typing import Self
from urllib.parse import unquote
from xml.sax.saxutils import escape

from consumer.testing._http import HttpPeer, QuietHandler

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
MAX_DATE_SKEW_SECONDS = 15 * 60
# Assumed: MNS documents no code for an expired STS token; this is the one OSS uses.
EXPIRED_TOKEN_CODE = "SecurityTokenExpired"


class ManualClock:
    """An epoch-seconds clock that moves only when told; share it to age tokens in tests."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class MnsError(Exception):
    """An error answer: HTTP status plus the `<Error>` body fields."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _not_exist() -> MnsError:
    return MnsError(404, "MessageNotExist", "Message not exist.")


def _bad_handle() -> MnsError:
    return MnsError(400, "ReceiptHandleError", "The receipt handle you provide is not valid.")


def sign(
    secret: str,
    method: str,
    resource: str,
    headers: dict[str, str],
) -> str:
    """The signature half of `Authorization: MNS id:signature`, computed as the SDK does.

    `headers` are lower-cased names; `resource` is the request target with its raw query.
    """
    mns_headers = "".join(
        f"{name}:{headers[name]}\n" for name in sorted(headers) if name.startswith("x-mns-")
    )
    string_to_sign = (
        f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
        f"{headers.get('date', '')}\n{mns_headers}{resource}"
    )
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class _Credential:
    secret: str
    security_token: str | None
    expires_at: float | None
    queues: frozenset[str] | None


@dataclass
class _Message:
    id: str
    body: str
    body_md5: str
    priority: int
    enqueue_time: int  # epoch ms
    seq: int
    visible_at: float  # epoch seconds
    first_dequeue_time: int = 0
    dequeue_count: int = 0
    handle: str | None = None


@dataclass
class _Queue:
    name: str
    visibility_timeout: int
    polling_wait_seconds: int
    maximum_message_size: int
    created: int
    messages: dict[str, _Message] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageSnapshot:
    """A copy of one stored message, for test assertions."""

    id: str
    body: str
    dequeue_count: int
    enqueue_time: int
    first_dequeue_time: int
    next_visible_time: int
    receipt_handle: str | None
    in_flight: bool


@dataclass(frozen=True)
class QueueStats:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class RequestRecord:
    """One request as the fake saw it, and how it answered."""

    method: str
    path: str
    query: dict[str, str]
    access_key_id: str | None
    security_token: str | None
    status: int | None  # None: the connection was dropped without an answer
    code: str | None  # the error code, None on success


@dataclass
class _Knobs:
    error_rate: float = 0.0
    error_status: int = 500
    error_code: str = "InternalError"
    drop_rate: float = 0.0
    response_delay: float = 0.0
    fail_next: list[tuple[int, str, str]] = field(default_factory=list)
    drop_next: int = 0
    lose_next: int = 0
    damage_next: int = 0
    deny_next: int = 0
    delete_fail_handles: set[str] = field(default_factory=set)


class FakeMnsServer(HttpPeer):
    """MNS on 127.0.0.1; `with FakeMnsServer() as mns:` or `start()` / `stop()`.

    `clock` (epoch seconds) decides credential expiry only, so tests can age STS tokens
    without sleeping; visibility and long polling use the real clock.
    """

    name = "fake-mns"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        host_id: str = "http://fake.mns.localhost",
    ) -> None:
        super().__init__(host, port)
        self._clock = clock
        self._random = random.Random(seed)
        self._host_id = host_id
        self._lock = threading.Condition(threading.RLock())
        self._queues: dict[str, _Queue] = {}
        self._credentials: dict[str, _Credential] = {}
        self._handles: dict[str, tuple[str, str]] = {}  # every handle ever issued
        self._requests: list[RequestRecord] = []
        self._knobs = _Knobs()
        self._seq = itertools.count(1)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        self._stopping.clear()  # (a no-op while running: only a stop sets it)
        return super().start()

    def _handler(self) -> type[_Handler]:
        return _Handler

    def _wake(self, server: ThreadingHTTPServer) -> None:
        """Wake long polls and close kept-alive connections."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- set-up ----------------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: int = 30,
        polling_wait_seconds: int = 0,
        maximum_message_size: int = 65536,
    ) -> None:
        with self._lock:
            self._queues.setdefault(
                name,
                _Queue(
                    name,
                    visibility_timeout,
                    polling_wait_seconds,
                    maximum_message_size,
                    int(time.time()),
                ),
            )

    def add_credentials(
        self,
        access_key_id: str,
        access_key_secret: str,
        security_token: str | None = None,
        *,
        expires_at: float | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        """Accept a key (with an STS token: the token must come along and not be expired).

        `expires_at` is epoch seconds on this server's `clock`; `queues` limits the key to
        those queues (Alicom tokens are per queue), other queues answer 403 AccessDenied.
        """
        with self._lock:
            self._credentials[access_key_id] = _Credential(
                access_key_secret,
                security_token,
                expires_at,
                frozenset(queues) if queues is not None else None,
            )

    def revoke_credentials(self, access_key_id: str) -> None:
        with self._lock:
            self._credentials.pop(access_key_id, None)

    def put_message(
        self,
        queue: str,
        body: str | bytes,
        *,
        base64_encode: bool = False,
        priority: int = 8,
        delay_seconds: float = 0.0,
    ) -> str:
        """Enqueue directly (no HTTP); bytes are stored base64-encoded, as Alicom sends them."""
        if isinstance(body, bytes):
            text = base64.b64encode(body).decode()
        elif base64_encode:
            text = base64.b64encode(body.encode()).decode()
        else:
            text = body
        with self._lock:
            message = self._enqueue(self._queue(queue), text, priority, delay_seconds)
            return message.id

    # -- knobs -----------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        error_rate: float | None = None,
        error_status: int | None = None,
        error_code: str | None = None,
        drop_rate: float | None = None,
        response_delay: float | None = None,
    ) -> None:
        """Random faults: a fraction of answers become 5xx, a fraction of connections drop.

        A dropped connection is closed after the request was read and before it is applied.
        The SDK re-sends once on a dropped keep-alive connection (sdk-notes.md 2.3 item 9), so
        one drop is invisible to callers and two in a row raise `NetWorkException`.
        """
        with self._lock:
            knobs = self._knobs
            if error_rate is not None:
                knobs.error_rate = _fraction("error_rate", error_rate)
            if error_status is not None:
                knobs.error_status = error_status
            if error_code is not None:
                knobs.error_code = error_code
            if drop_rate is not None:
                knobs.drop_rate = _fraction("drop_rate", drop_rate)
            if response_delay is not None:
                knobs.response_delay = max(0.0, response_delay)

    def fail_next(
        self, count: int = 1, status: int = 500, code: str = "InternalError", message: str = ""
    ) -> None:
        """Answer the next `count` requests with this error instead of serving them."""
        with self._lock:
            self._knobs.fail_next.extend([(status, code, message or f"{code}.")] * count)

    def lose_answer_next(self, count: int = 1) -> None:
        """Serve the next `count` requests, then close the connection instead of answering.

        The lost-response case: a delete that happened although the client saw it fail, a
        receive whose messages stay in flight unseen until their visibility lapses. (The SDK
        re-sends once, so a lost delete answer shows up as `MessageNotExist`.)
        """
        with self._lock:
            self._knobs.lose_next += count

    def drop_next(self, count: int = 1) -> None:
        """Close the next `count` connections after reading the request, before serving it."""
        with self._lock:
            self._knobs.drop_next += count

    def damage_next(self, count: int = 1) -> None:
        """Answer the next `count` requests with 200 and unparseable XML (`RespDataDamaged`)."""
        with self._lock:
            self._knobs.damage_next += count

    def deny_next(self, count: int = 1) -> None:
        """Answer the next `count` requests with 403 AccessDenied."""
        with self._lock:
            self._knobs.deny_next += count

    def fail_delete_of(self, handles: Iterable[str]) -> None:
        """Refuse deleting these handles with 500 InternalError (a transient per-handle error)."""
        with self._lock:
            self._knobs.delete_fail_handles.update(handles)

    def expire_in_flight(self, queue: str) -> None:
        """Make every in-flight message visible now, as if its visibility had lapsed.

        Their receipt handles become stale, exactly as after a real lapse.
        """
        now = time.time()
        with self._lock:
            for message in self._queue(queue).messages.values():
                message.visible_at = min(message.visible_at, now)
            self._lock.notify_all()

    def reset_faults(self) -> None:
        with self._lock:
            self._knobs = _Knobs()

    # -- introspection ---------------------------------------------------------------------

    def messages(self, queue: str) -> list[MessageSnapshot]:
        now = time.time()
        with self._lock:
            return [
                MessageSnapshot(
                    m.id,
                    m.body,
                    m.dequeue_count,
                    m.enqueue_time,
                    m.first_dequeue_time,
                    int(m.visible_at * 1000),
                    m.handle,
                    m.handle is not None and m.visible_at > now,
                )
                for m in self._queue(queue).messages.values()
            ]

    def stats(self, queue: str) -> QueueStats:
        now = time.time()
        with self._lock:
            visible = in_flight = delayed = 0
            for m in self._queue(queue).messages.values():
                if m.visible_at <= now:
                    visible += 1
                elif m.handle is not None:
                    in_flight += 1
                else:
                    delayed += 1
            return QueueStats(visible, in_flight, delayed)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- the service -----------------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise MnsError(
                404, "QueueNotExist", "The queue name you provided is not exist."
            ) from None

    def _enqueue(self, queue: _Queue, body: str, priority: int, delay: float) -> _Message:
        if len(body.encode()) > queue.maximum_message_size:
            raise MnsError(400, "InvalidArgument", "The message body is too large.")
        now = time.time()
        message = _Message(
            id=uuid.uuid4().hex.upper(),
            body=body,
            body_md5=hashlib.md5(body.encode()).hexdigest().upper(),
            priority=priority,
            enqueue_time=int(now * 1000),
            seq=next(self._seq),
            visible_at=now + delay,
        )
        queue.messages[message.id] = message
        self._lock.notify_all()
        return message

    def _new_handle(self, queue: _Queue, message: _Message) -> str:
        # Real handles contain + / = and the SDK sends them unencoded (sdk-notes.md 3.7).
        handle = (
            "1-"
            + base64.b64encode(secrets.token_bytes(12)).decode()
            + "+/"
            + base64.b64encode(secrets.token_bytes(4)).decode()
        )
        self._handles[handle] = (queue.name, message.id)
        message.handle = handle
        return handle

    def _take(self, queue: _Queue, count: int) -> list[_Message]:
        now = time.time()
        ready = sorted(
            (m for m in queue.messages.values() if m.visible_at <= now),
            key=lambda m: (m.priority, m.seq),
        )[:count]
        now_ms = int(now * 1000)
        for m in ready:
            m.dequeue_count += 1
            if not m.first_dequeue_time:
                m.first_dequeue_time = now_ms
            m.visible_at = now + queue.visibility_timeout
            self._new_handle(queue, m)
        return ready

    def _receive(self, queue_name: str, count: int, wait: float) -> list[_Message]:
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                queue = self._queue(queue_name)
                taken = self._take(queue, count)
                if taken:
                    return taken
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise _not_exist()
                now = time.time()
                pending = [m.visible_at - now for m in queue.messages.values()]
                soonest = min([p for p in pending if p > 0], default=remaining)
                self._lock.wait(min(remaining, soonest + 0.001))

    def _current(self, queue: _Queue, handle: str) -> _Message:
        owner = self._handles.get(handle)
        if owner is None or owner[0] != queue.name:
            raise _bad_handle()
        message = queue.messages.get(owner[1])
        if message is None:
            raise _not_exist()
        if message.handle != handle or message.visible_at <= time.time():
            raise _bad_handle()
        return message

    def _delete(self, queue_name: str, handle: str) -> None:
        with self._lock:
            queue = self._queue(queue_name)
            if handle in self._knobs.delete_fail_handles:
                raise MnsError(500, "InternalError", "Internal error.")
            message = self._current(queue, handle)
            del queue.messages[message.id]

    def _change_visibility(self, queue_name: str, handle: str, seconds: int) -> _Message:
        with self._lock:
            queue = self._queue(queue_name)
            message = self._current(queue, handle)
            message.visible_at = time.time() + seconds
            self._new_handle(queue, message)
            if seconds == 0:
                self._lock.notify_all()
            return message

    def _authenticate(self, method: str, path: str, headers: dict[str, str], queue: str) -> None:
        """Raise the error MNS answers for this request's credentials, if any."""
        _check_date(headers)
        key_id, signature = _authorization(headers)
        with self._lock:
            credential = self._credentials.get(key_id)
        if credential is None:
            raise MnsError(403, "InvalidAccessKeyId", "The access Id you provided is not exist.")
        self._check_token(credential, headers)
        expected = sign(credential.secret, method, path, headers)
        if not hmac.compare_digest(expected, signature):
            raise MnsError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if credential.queues is not None and queue not in credential.queues:
            raise MnsError(403, "AccessDenied", "You are not authorized to access this queue.")

    def _check_token(self, credential: _Credential, headers: dict[str, str]) -> None:
        """An STS credential's token must be sent, and be still valid."""
        if credential.security_token is None:
            return
        if headers.get("security-token") != credential.security_token:
            raise MnsError(403, "InvalidSecurityToken", "The security token is invalid.")
        if credential.expires_at is not None and self._clock() >= credential.expires_at:
            raise MnsError(403, EXPIRED_TOKEN_CODE, "The security token has expired.")

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _roll(self) -> tuple[str, tuple[int, str, str] | None]:
        """Decide this request's fault: ("drop"|"lose"|"damage"|"ok", error answer or None)."""
        with self._lock:
            knobs = self._knobs
            if knobs.drop_next > 0:
                knobs.drop_next -= 1
                return "drop", None
            if knobs.drop_rate and self._random.random() < knobs.drop_rate:
                return "drop", None
            if knobs.lose_next > 0:
                knobs.lose_next -= 1
                return "lose", None
            if knobs.fail_next:
                return "ok", knobs.fail_next.pop(0)
            if knobs.deny_next > 0:
                knobs.deny_next -= 1
                return "ok", (403, "AccessDenied", "Access denied.")
            if knobs.error_rate and self._random.random() < knobs.error_rate:
                return "ok", (knobs.error_status, knobs.error_code, f"{knobs.error_code}.")
            if knobs.damage_next > 0:
                knobs.damage_next -= 1
                return "damage", None
            return "ok", None


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return value


def _split_query(raw: str) -> dict[str, str]:
    """Parse a query string keeping `+` literal: receipt handles are sent unencoded."""
    query: dict[str, str] = {}
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            query[unquote(name)] = unquote(value)
    return query


def _int_param(query: dict[str, str], name: str, low: int, high: int) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise MnsError(400, "InvalidArgument", f"{name} is not an integer.") from None
    if not low <= value <= high:
        raise MnsError(400, "InvalidArgument", f"{name} must be between {low} and {high}.")
    return value


def _check_date(headers: dict[str, str]) -> None:
    """MNS refuses a request without a Date, or one more than 15 minutes off."""
    if "date" not in headers:
        raise MnsError(400, "MissingDateHeader", "The Date header is missing.")
    try:
        sent = parsedate_to_datetime(headers["date"]).timestamp()
    except (TypeError, ValueError):
        raise MnsError(400, "InvalidDateHeader", "The Date header is invalid.") from None
    if abs(sent - time.time()) > MAX_DATE_SKEW_SECONDS:
        raise MnsError(400, "InvalidDateHeader", "The Date header is more than 15 min off.")


def _authorization(headers: dict[str, str]) -> tuple[str, str]:
    """The access key id and the signature of `Authorization: MNS <id>:<signature>`."""
    authorization = headers.get("authorization")
    if not authorization:
        raise MnsError(400, "MissingAuthorizationHeader", "Authorization header missing.")
    scheme, _, rest = authorization.partition(" ")
    key_id, colon, signature = rest.rpartition(":")
    if scheme != "MNS" or not colon or not key_id:
        raise MnsError(400, "InvalidAuthorizationHeader", "The Authorization header is invalid.")
    return key_id, signature


def _document(root: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{inner}</{root}>'.encode()
    )


def _elements(tag: str, children: Iterable[tuple[str, object]]) -> str:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in children)
    return f"<{tag}>{inner}</{tag}>"


def _xml(root: str, children: Iterable[tuple[str, object]]) -> bytes:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in children)
    return _document(root, inner)


def _message_fields(m: _Message) -> list[tuple[str, object]]:
    return [
        ("MessageId", m.id),
        ("MessageBodyMD5", m.body_md5),
        ("MessageBody", m.body),
        ("ReceiptHandle", m.handle),
        ("EnqueueTime", m.enqueue_time),
        ("FirstDequeueTime", m.first_dequeue_time),
        ("NextVisibleTime", int(m.visible_at * 1000)),
        ("DequeueCount", m.dequeue_count),
        ("Priority", m.priority),
    ]


def _strip(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_body(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise MnsError(400, "MalformedXML", "The XML you provided was not well-formed.") from None


class _Handler(QuietHandler):
    peer: FakeMnsServer
    timeout = 120  # idle keep-alive connections are closed eventually

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.peer._lock:
            self.peer._connections.add(self.connection)

    def finish(self) -> None:
        with self.peer._lock:
            self.peer._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.peer
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        path, _, raw_query = self.path.partition("?")
        query = _split_query(raw_query)
        parts = [p for p in path.split("/") if p]
        queue_name = parts[1] if len(parts) >= 2 and parts[0] == "queues" else ""
        key_id = headers.get("authorization", "").partition(" ")[2].rpartition(":")[0] or None
        token = headers.get("security-token")

        def record(status: int | None, code: str | None) -> None:
            fake._record(RequestRecord(self.command, self.path, query, key_id, token, status, code))

        fault, error = fake._roll()
        if fault == "drop":
            record(None, None)
            self._drop()
            return
        with fake._lock:
            delay = fake._knobs.response_delay
        if delay and fake._stopping.wait(delay):
            self._drop()
            return
        try:
            fake._authenticate(self.command, self.path, headers, queue_name)
            if error is not None:
                raise MnsError(*error)
            if fault == "damage":
                record(200, None)
                self._send(200, b"<Message><MessageId>damaged")
                return
            status, payload = self._route(parts, query, body, headers)
        except MnsError as exc:
            record(exc.status, exc.code)
            self._send_error(exc)
            return
        record(status, None)
        if fault == "lose":
            self._drop()
            return
        self._send(status, payload)

    def _route(
        self, parts: list[str], query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        method = self.command
        if len(parts) == 2 and parts[0] == "queues" and method == "GET":
            return 200, self._attributes(parts[1])
        if len(parts) != 3 or parts[0] != "queues" or parts[2] != "messages":
            raise MnsError(400, "InvalidRequestURL", f"Unsupported request {method} {self.path}.")
        queue = parts[1]
        self._check_md5(body, headers)
        if method == "GET":
            return 200, self._received(queue, query)
        if method == "POST":
            return 201, self._send_messages(queue, body)
        if method == "DELETE":
            if "ReceiptHandle" in query:
                self.peer._delete(queue, query["ReceiptHandle"])
                return 204, b""
            return self._batch_delete(queue, body)
        if method == "PUT":
            return 200, self._visibility_changed(queue, query)
        raise MnsError(400, "InvalidRequestURL", f"Unsupported method {method}.")

    def _received(self, queue: str, query: dict[str, str]) -> bytes:
        """ReceiveMessage (one, as `<Message>`), BatchReceiveMessage, or a peek."""
        fake = self.peer
        count = _int_param(query, "numOfMessages", 1, MAX_BATCH)
        if query.get("peekonly") == "true":
            return self._peek(queue, count)
        wait = _int_param(query, "waitseconds", 0, MAX_WAIT_SECONDS)
        if wait is None:
            with fake._lock:
                wait = fake._queue(queue).polling_wait_seconds
        taken = fake._receive(queue, count or 1, wait)
        with fake._lock:
            if count is None:
                return _xml("Message", _message_fields(taken[0]))
            blocks = "".join(_elements("Message", _message_fields(m)) for m in taken)
        return _document("Messages", blocks)

    def _visibility_changed(self, queue: str, query: dict[str, str]) -> bytes:
        fake = self.peer
        handle = query.get("ReceiptHandle")
        if not handle:
            raise MnsError(400, "MissingReceiptHandle", "ReceiptHandle is missing.")
        seconds = _int_param(query, "VisibilityTimeout", 1, 43200)
        if seconds is None:
            raise MnsError(400, "MissingVisibilityTimeout", "VisibilityTimeout is missing.")
        message = fake._change_visibility(queue, handle, seconds)
        with fake._lock:
            fields = [
                ("ReceiptHandle", message.handle),
                ("NextVisibleTime", int(message.visible_at * 1000)),
            ]
        return _xml("ChangeVisibility", fields)

    def _check_md5(self, body: bytes, headers: dict[str, str]) -> None:
        sent = headers.get("content-md5")
        if not sent or not body:
            return
        digest = hashlib.md5(body)
        # The SDK sends Base64 of the hex digest; accept the standard form too.
        accepted = {
            base64.b64encode(digest.hexdigest().encode()).decode(),
            base64.b64encode(digest.digest()).decode(),
        }
        if sent not in accepted:
            raise MnsError(400, "InvalidDegist", "The Content-MD5 you specified is not valid.")

    def _attributes(self, name: str) -> bytes:
        fake = self.peer
        stats = fake.stats(name)
        with fake._lock:
            q = fake._queue(name)
            fields: list[tuple[str, object]] = [
                ("QueueName", q.name),
                ("CreateTime", q.created),
                ("LastModifyTime", q.created),
                ("VisibilityTimeout", q.visibility_timeout),
                ("MaximumMessageSize", q.maximum_message_size),
                ("MessageRetentionPeriod", 345600),
                ("DelaySeconds", 0),
                ("PollingWaitSeconds", q.polling_wait_seconds),
                ("ActiveMessages", stats.visible),
                ("InactiveMessages", stats.in_flight),
                ("DelayMessages", stats.delayed),
                ("LoggingEnabled", "False"),
            ]
        return _xml("Queue", fields)

    def _peek(self, queue: str, count: int | None) -> bytes:
        fake = self.peer
        now = time.time()
        with fake._lock:
            ready = sorted(
                (m for m in fake._queue(queue).messages.values() if m.visible_at <= now),
                key=lambda m: (m.priority, m.seq),
            )[: count or 1]
            if not ready:
                raise _not_exist()
            blocks = [
                [(k, v) for k, v in _message_fields(m) if k not in ("ReceiptHandle",)]
                for m in ready
            ]
        if count is None:
            return _xml("Message", blocks[0])
        return _document("Messages", "".join(_elements("Message", b) for b in blocks))

    def _send_messages(self, queue: str, body: bytes) -> bytes:
        fake = self.peer
        root = _parse_body(body)
        items = [root] if _strip(root.tag) == "Message" else list(root)
        if not items or len(items) > MAX_BATCH:
            raise MnsError(400, "InvalidArgument", f"Send 1 to {MAX_BATCH} messages at a time.")
        parsed: list[tuple[str, int, float]] = []
        for item in items:
            values = {_strip(child.tag): (child.text or "") for child in item}
            if not values.get("MessageBody"):
                raise MnsError(400, "InvalidArgument", "The message body is empty.")
            try:
                priority = int(values.get("Priority") or 8)
                delay = float(values.get("DelaySeconds") or 0)
            except ValueError:
                raise MnsError(400, "InvalidArgument", "Bad Priority or DelaySeconds.") from None
            parsed.append((values["MessageBody"], priority, delay))
        with fake._lock:
            q = fake._queue(queue)
            sent = [fake._enqueue(q, *args) for args in parsed]
        if _strip(root.tag) == "Message":
            return _xml(
                "Message", [("MessageId", sent[0].id), ("MessageBodyMD5", sent[0].body_md5)]
            )
        inner = "".join(
            _elements("Message", [("MessageId", m.id), ("MessageBodyMD5", m.body_md5)])
            for m in sent
        )
        return _document("Messages", inner)

    def _batch_delete(self, queue: str, body: bytes) -> tuple[int, bytes]:
        fake = self.peer
        root = _parse_body(body)
        handles = [
            (child.text or "").strip() for child in root if _strip(child.tag) == "ReceiptHandle"
        ]
        if not handles or len(handles) > MAX_BATCH:
            raise MnsError(400, "InvalidArgument", f"Delete 1 to {MAX_BATCH} handles at a time.")
        failures: list[tuple[str, MnsError]] = []
        with fake._lock:
            fake._queue(queue)
            for handle in handles:
                try:
                    fake._delete(queue, handle)
                except MnsError as exc:
                    failures.append((handle, exc))
        if not failures:
            return 204, b""
        # The documented answer to a partial failure is 404 with one <Error> per failed handle.
        errors = "".join(
            _elements(
                "Error",
                [("ErrorCode", exc.code), ("ErrorMessage", exc.message), ("ReceiptHandle", handle)],
            )
            for handle, exc in failures
        )
        raise _BatchErrors(_document("Errors", errors), failures[0][1].code)

    def _send_error(self, exc: MnsError) -> None:
        if isinstance(exc, _BatchErrors):
            self._send(exc.status, exc.body)
            return
        request_id = uuid.uuid4().hex[:24].upper()
        body = _xml(
            "Error",
            [
                ("Code", exc.code),
                ("Message", exc.message),
                ("RequestId", request_id),
                ("HostId", self.peer._host_id),
            ],
        )
        self._send(exc.status, body, request_id)

    def _send(self, status: int, body: bytes, request_id: str | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("x-mns-request-id", request_id or uuid.uuid4().hex[:24].upper())
            self.send_header("x-mns-version", "2015-06-06")
            if body:
                self.send_header("Content-Type", "text/xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(timestamp, usegmt=True)


class _BatchErrors(MnsError):
    def __init__(self, body: bytes, first_code: str) -> None:
        super().__init__(404, first_code, "Batch delete partly failed.")
        self.body = body


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground, with an Alicom token endpoint beside it:
    `python -m consumer.testing.fake_mns --queue Alicom-Queue-1-VoiceReport`."""
    from consumer.testing.fake_alicom import FakeAlicomServer  # noqa: PLC0415 - imports us

    parser = argparse.ArgumentParser(description="Local Aliyun MNS queue emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token-port", type=int, default=0, help="the fake Dybaseapi endpoint")
    parser.add_argument("--queue", action="append", default=[], help="create this queue")
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--access-key-id", default="LTAIlocal")
    parser.add_argument("--access-key-secret", default="local-secret")
    args = parser.parse_args(argv)
    mns = FakeMnsServer(args.host, args.port)
    alicom = FakeAlicomServer(
        mns,
        accounts={args.access_key_id: args.access_key_secret},
        host=args.host,
        port=args.token_port,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with mns, alicom:
        mns.add_credentials(args.access_key_id, args.access_key_secret)
        for name in args.queue or ["Alicom-Queue-0-VoiceReport"]:
            mns.create_queue(name, visibility_timeout=args.visibility_timeout)
        print(f"fake MNS listening on {mns.endpoint}", flush=True)
        print(f"fake Dybaseapi (token_endpoint) on {alicom.endpoint}", flush=True)
        print(f"access key {args.access_key_id} / {args.access_key_secret}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


__all__ = [
    "EXPIRED_TOKEN_CODE",
    "FakeMnsServer",
    "ManualClock",
    "MessageSnapshot",
    "MnsError",
    "QueueStats",
    "RequestRecord",
    "sign",
]

if __name__ == "__main__":
    raise SystemExit(main())
