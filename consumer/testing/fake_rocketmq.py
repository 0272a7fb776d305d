"""A local RocketMQ 5 proxy: the gRPC `MessagingService` the real Python client talks to.

Tests and `consumer demo` run the real `rocketmq-python-client` against it over a real socket, so
the client's own call order, threads, time-outs and error mapping are exercised (sdk-notes.md 5,
6). It serves the generated stubs shipped in the client wheel (no vendored protos) and imitates
the Apache proxy where the client can tell the difference:

- `QueryRoute` answers one master queue whose broker endpoints echo the access point the client
  asked with (scheme set: the client cannot dial `ADDRESS_SCHEME_UNSPECIFIED`).
- `Telemetry` answers each settings command with the merged settings (`metric.on = false`);
  `Heartbeat` from a client that never sent settings gets `UNRECOGNIZED_CLIENT_TYPE`.
- `ReceiveMessage` long-polls, then streams `status`, the messages, `delivery_timestamp`; with
  nothing to deliver `MESSAGE_NOT_FOUND` then `delivery_timestamp`. Each delivery gets a fresh
  receipt handle and `delivery_attempt` = deliveries so far (reconsume times + 1).
- Visibility: an un-acked message comes back after its invisible duration; a handle is valid only
  until then and only until the next delivery (`INVALID_RECEIPT_HANDLE` otherwise).
  `ChangeInvisibleDuration` returns a new handle and invalidates the old one.
  `expire_in_flight` ends the invisible time at once (a test's restart without waiting it out).
- Each consumer group sees every message of a topic from the first one on (the proxy starts a new
  group at the queue's end unless the topic is fresh; tests want pre-published messages).
- Credentials: when configured, the `authorization` header's HMAC-SHA1 signature is recomputed
  and a mismatch is answered in-band with `UNAUTHORIZED` (40100). Clock skew is not checked: the
  client signs its local time with a literal `Z`.
- Limits default to the Apache proxy's (invisible duration for receive >= 10 s, long polling
  clamped to 5..20 s, at most 32 messages per receive); `ProxyLimits.relaxed()` lifts the minimums
  so tests can use 1 s durations.

Importing this module imports `rocketmq`, whose import creates `$HOME/logs/rocketmq_python/`
(sdk-notes.md 5.5): point `HOME` at a writable directory first.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import hmac
import itertools
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any, Self

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rocketmq.grpc_protocol import definition_pb2 as pb
from rocketmq.grpc_protocol import service_pb2 as spb
from rocketmq.grpc_protocol import service_pb2_grpc as spb_grpc

from consumer.testing._http import Peer

__all__ = [
    "RPC_NAMES",
    "CallRecord",
    "FakeRocketMQ",
    "GroupStats",
    "ProxyLimits",
    "StoredMessage",
]

RPC_NAMES = frozenset(
    {
        "QueryRoute",
        "Heartbeat",
        "SendMessage",
        "QueryAssignment",
        "ReceiveMessage",
        "AckMessage",
        "ForwardMessageToDeadLetterQueue",
        "Telemetry",
        "NotifyClientTermination",
        "ChangeInvisibleDuration",
    }
)

_AUTH_RE = re.compile(
    r"^MQv2-HMAC-SHA1\s+Credential=(?P<ak>[^,]*),\s*SignedHeaders=(?P<signed>[^,]*),"
    r"\s*Signature=(?P<sig>[0-9A-Fa-f]*)$"
)
_BROKER_NAME = "fake-broker-0"
_POLL_SLICE = 0.2  # how often a long poll re-checks cancellation and shutdown


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    """Server-side bounds on consumer calls, in seconds; defaults are the Apache proxy's."""

    min_invisible: float = 10.0  # receive only; ChangeInvisibleDuration accepts 0
    max_invisible: float = 12 * 3600.0
    min_long_polling: float = 5.0
    max_long_polling: float = 20.0
    max_batch_size: int = 32

    @classmethod
    def relaxed(cls) -> ProxyLimits:
        """Proxy limits without the minimums, so tests can use second-long durations."""
        return cls(min_invisible=0.0, min_long_polling=0.0)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as the fake stored it (what a consumer will receive)."""

    message_id: str
    topic: str
    namespace: str
    offset: int
    body: bytes
    tag: str | None
    keys: tuple[str, ...]
    properties: dict[str, str]
    born_timestamp_ms: int
    store_timestamp_ms: int
    born_host: str
    deliver_at_ms: int  # wall-clock time from which it may be delivered (delay messages)
    gzip_body: bool = False
    corrupt_digest: bool = False


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Where a topic's messages stand for one consumer group right now."""

    ready: int  # not acked and visible (never delivered, or invisible time lapsed)
    in_flight: int  # delivered, not acked, still invisible
    acked: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One RPC as the fake answered it: name, in-band status code, client id."""

    rpc: str
    code: int
    client_id: str


@dataclass(slots=True)
class _Delivery:
    attempts: int = 0
    visible_at: float = 0.0  # time.monotonic()
    handle: str | None = None
    acked: bool = False
    dead_lettered: bool = False


@dataclass(slots=True)
class _Faults:
    unavailable: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, tuple[int, str]] = field(default_factory=dict)


_TopicKey = tuple[str, str]  # namespace, topic
_GroupKey = tuple[str, str, str]  # namespace, topic, group


class _Refused(Exception):
    """An in-band refusal: answered as a response whose `status` carries `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _status(code: int, message: str = "") -> Any:
    return pb.Status(code=code, message=message)


def _seconds(duration: Any) -> float:
    return float(duration.seconds) + float(duration.nanos) / 1e9


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _timestamp(ms: int) -> Any:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def _tag_matcher(filter_expression: Any) -> frozenset[str] | None:
    """The tags a TAG expression accepts; None accepts every message."""
    expression = filter_expression.expression.strip()
    if expression in ("", "*"):
        return None
    tags = frozenset(t.strip() for t in expression.split("||") if t.strip())
    if not tags:
        raise _Refused(pb.ILLEGAL_FILTER_EXPRESSION, f"bad tag expression {expression!r}")
    return tags


class FakeRocketMQ(Peer):
    """An in-process RocketMQ 5 proxy on 127.0.0.1 for the real client.

    Use as a context manager (`with FakeRocketMQ() as mq: mq.endpoint`) or `start()` / `stop()`.
    Thread-safe: the gRPC worker threads and the test thread share one lock.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: tuple[str, str] | None = None,
        limits: ProxyLimits | None = None,
        auto_create_topics: bool = True,
        auto_create_groups: bool = True,
        max_workers: int = 32,
    ) -> None:
        """`credentials` is (username, password); None accepts any signature.

        Without `auto_create_*`, unknown topics and groups get `TOPIC_NOT_FOUND` /
        `CONSUMER_GROUP_NOT_FOUND`; declare them with `create_topic` / `create_group`.
        `max_workers` must exceed concurrent long polls plus one Telemetry stream per client.
        """
        self._host = host
        self._requested_port = port
        self._credentials = credentials
        self.limits = limits if limits is not None else ProxyLimits()
        self._auto_topics = auto_create_topics
        self._auto_groups = auto_create_groups
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._topics: dict[_TopicKey, list[StoredMessage]] = {}
        self._groups: set[tuple[str, str]] = set()
        self._deliveries: dict[_GroupKey, dict[str, _Delivery]] = {}
        self._handles: dict[str, tuple[_GroupKey, str]] = {}
        self._settings: dict[str, Any] = {}
        self._calls: list[CallRecord] = []
        self._faults = _Faults()
        self._stopping = threading.Event()
        self._server: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._port = 0
        self._ids = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve; `port=0` picks a free port (see `endpoint`).

        Starting again after `stop()` (a broker restart) keeps the port and the stored messages.
        """
        if self._server is not None:
            raise RuntimeError("FakeRocketMQ is already started")
        self._stopping.clear()
        self._executor = futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="fake-rocketmq"
        )
        server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
        spb_grpc.add_MessagingServiceServicer_to_server(_Servicer(self), server)
        address = f"{self._host}:{self._port or self._requested_port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise OSError(f"fake RocketMQ cannot bind {address}")
        server.start()
        self._server, self._port = server, port
        return self

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving: wake long polls, cancel streams, join the worker threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        server.stop(grace).wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """The `endpoints` string for `ClientConfiguration`."""
        if not self._port:
            raise RuntimeError("FakeRocketMQ is not started")
        return f"{self._host}:{self._port}"

    # -- setup ---------------------------------------------------------------------------------

    def create_topic(self, topic: str, namespace: str = "") -> None:
        with self._cond:
            self._topics.setdefault((namespace, topic), [])

    def create_group(self, group: str, namespace: str = "") -> None:
        with self._cond:
            self._groups.add((namespace, group))

    def set_credentials(self, credentials: tuple[str, str] | None) -> None:
        """Change the accepted (username, password), e.g. to imitate a rotated password."""
        with self._cond:
            self._credentials = credentials

    def publish(
        self,
        topic: str,
        body: bytes,
        *,
        tag: str | None = None,
        keys: Iterable[str] = (),
        properties: dict[str, str] | None = None,
        namespace: str = "",
        message_id: str | None = None,
        deliver_at_ms: int | None = None,
        gzip_body: bool = False,
        corrupt_digest: bool = False,
    ) -> str:
        """Store a message as if a producer had sent it; returns its message id.

        `gzip_body` sends it GZIP-encoded; `corrupt_digest` sends a wrong MD5 digest (the client
        then marks the message `corrupted`).
        """
        if not body:
            raise ValueError("a RocketMQ message body must not be empty")
        now = _now_ms()
        with self._cond:
            return self._store(
                StoredMessage(
                    message_id=message_id or uuid.uuid4().hex.upper(),
                    topic=topic,
                    namespace=namespace,
                    offset=0,
                    body=bytes(body),
                    tag=tag,
                    keys=tuple(keys),
                    properties=dict(properties or {}),
                    born_timestamp_ms=now,
                    store_timestamp_ms=now,
                    born_host="127.0.0.1",
                    deliver_at_ms=deliver_at_ms or 0,
                    gzip_body=gzip_body,
                    corrupt_digest=corrupt_digest,
                ),
                create=True,
            )

    # -- fault knobs ---------------------------------------------------------------------------

    def make_unavailable(self, *rpcs: str) -> None:
        """Answer these RPCs (or all, with `"*"`) with gRPC status UNAVAILABLE."""
        self._check_rpc_names(rpcs)
        with self._cond:
            self._faults.unavailable.update(rpcs)

    def delay(self, rpc: str, seconds: float) -> None:
        """Sleep before handling `rpc` (or every RPC, with `"*"`), like network latency: a call
        whose client goes away meanwhile is dropped without taking effect."""
        self._check_rpc_names((rpc,))
        with self._cond:
            self._faults.delays[rpc] = seconds

    def fail(self, rpc: str, code: int, message: str = "injected failure") -> None:
        """Answer `rpc` in-band with status `code` (e.g. 42900 TOO_MANY_REQUESTS)."""
        self._check_rpc_names((rpc,))
        with self._cond:
            self._faults.statuses[rpc] = (code, message)

    def reset_faults(self) -> None:
        with self._cond:
            self._faults = _Faults()

    @staticmethod
    def _check_rpc_names(rpcs: Iterable[str]) -> None:
        unknown = sorted(set(rpcs) - RPC_NAMES - {"*"})
        if unknown:
            raise ValueError(f"unknown RPC name(s) {unknown}; expected one of {sorted(RPC_NAMES)}")

    # -- introspection -------------------------------------------------------------------------

    def messages(self, topic: str, namespace: str = "") -> list[StoredMessage]:
        """Every message stored in the topic, in offset order."""
        with self._cond:
            return list(self._topics.get((namespace, topic), []))

    def stats(self, topic: str, group: str, namespace: str = "") -> GroupStats:
        now = time.monotonic()
        with self._cond:
            deliveries = self._deliveries.get((namespace, topic, group), {})
            ready = in_flight = acked = dead = 0
            for message in self._topics.get((namespace, topic), []):
                d = deliveries.get(message.message_id)
                if d is not None and d.dead_lettered:
                    dead += 1
                elif d is not None and d.acked:
                    acked += 1
                elif d is not None and d.visible_at > now:
                    in_flight += 1
                else:
                    ready += 1
            return GroupStats(ready=ready, in_flight=in_flight, acked=acked, dead_lettered=dead)

    def expire_in_flight(self, topic: str, group: str, namespace: str = "") -> int:
        """End the invisible time of the group's in-flight messages now (their handles go
        stale), as if it had lapsed; returns how many became visible again."""
        now = time.monotonic()
        expired = 0
        with self._cond:
            for d in self._deliveries.get((namespace, topic, group), {}).values():
                if not (d.acked or d.dead_lettered) and d.visible_at > now:
                    d.visible_at = now
                    expired += 1
            self._cond.notify_all()
        return expired

    def in_flight_ids(self, topic: str, group: str, namespace: str = "") -> set[str]:
        """Ids of the group's messages delivered, not acked, and still invisible."""
        now = time.monotonic()
        with self._cond:
            deliveries = self._deliveries.get((namespace, topic, group), {})
            return {
                message_id
                for message_id, d in deliveries.items()
                if not (d.acked or d.dead_lettered) and d.attempts and d.visible_at > now
            }

    def delivery_attempts(
        self, message_id: str, topic: str, group: str, namespace: str = ""
    ) -> int:
        """How many times the message was delivered to the group (0: never)."""
        with self._cond:
            d = self._deliveries.get((namespace, topic, group), {}).get(message_id)
            return d.attempts if d is not None else 0

    def calls(self, rpc: str | None = None) -> list[CallRecord]:
        """The RPCs answered so far, in order; only `rpc` ones when given."""
        with self._cond:
            return [c for c in self._calls if rpc is None or c.rpc == rpc]

    def client_settings(self) -> dict[str, Any]:
        """The last `Settings` each client id sent over Telemetry (a protobuf copy)."""
        with self._cond:
            return {k: _copy(v) for k, v in self._settings.items()}

    # -- internals: store ----------------------------------------------------------------------

    def _store(self, message: StoredMessage, *, create: bool) -> str:
        key = (message.namespace, message.topic)
        log = self._topics.get(key)
        if log is None:
            if not (create or self._auto_topics):
                raise _Refused(pb.TOPIC_NOT_FOUND, f"topic {message.topic} not found")
            log = self._topics.setdefault(key, [])
        log.append(replace(message, offset=len(log)))
        self._cond.notify_all()
        return message.message_id

    def _require_topic(self, namespace: str, topic: str) -> None:
        if (namespace, topic) in self._topics:
            return
        if not self._auto_topics:
            raise _Refused(pb.TOPIC_NOT_FOUND, f"topic {namespace}%{topic} not found")
        self._topics[(namespace, topic)] = []

    def _require_group(self, namespace: str, group: str) -> None:
        if not self._auto_groups and (namespace, group) not in self._groups:
            raise _Refused(pb.CONSUMER_GROUP_NOT_FOUND, f"group {namespace}%{group} not found")

    def _take(
        self,
        key: _GroupKey,
        tags: frozenset[str] | None,
        batch_size: int,
        invisible: float,
    ) -> tuple[list[tuple[StoredMessage, _Delivery, str]], float | None]:
        """Deliver up to `batch_size` visible messages; else the next time one may become due."""
        now, wall = time.monotonic(), _now_ms()
        deliveries = self._deliveries.setdefault(key, {})
        taken: list[tuple[StoredMessage, _Delivery, str]] = []
        next_due: float | None = None
        for message in self._topics.get((key[0], key[1]), []):
            if tags is not None and message.tag not in tags:
                continue
            d = deliveries.setdefault(message.message_id, _Delivery())
            if d.acked or d.dead_lettered:
                continue
            due = max(d.visible_at, now + (message.deliver_at_ms - wall) / 1000.0)
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            if len(taken) >= batch_size:
                break
            if d.handle is not None:
                self._handles.pop(d.handle, None)
            d.attempts += 1
            d.visible_at = now + invisible
            d.handle = self._new_handle(key, message.message_id)
            taken.append((message, d, d.handle))
        return taken, next_due

    def _new_handle(self, key: _GroupKey, message_id: str) -> str:
        handle = f"{next(self._ids):08x}{uuid.uuid4().hex}"
        self._handles[handle] = (key, message_id)
        return handle

    def _resolve_handle(self, key: _GroupKey, message_id: str, handle: str) -> _Delivery:
        owner = self._handles.get(handle)
        if owner is None or owner != (key, message_id):
            raise _Refused(pb.INVALID_RECEIPT_HANDLE, "receipt handle is invalid or stale")
        d = self._deliveries[key][message_id]
        if d.handle != handle:
            raise _Refused(pb.INVALID_RECEIPT_HANDLE, "receipt handle is stale")
        if d.acked or d.dead_lettered:
            return d
        if d.visible_at <= time.monotonic():
            raise _Refused(pb.INVALID_RECEIPT_HANDLE, "receipt handle is expired")
        return d

    # -- internals: per-call checks ------------------------------------------------------------

    def _enter(self, rpc: str, context: Any) -> str:
        """Apply faults and the credential check; returns the client id."""
        metadata = dict(context.invocation_metadata())
        client_id = str(metadata.get("x-mq-client-id", ""))
        with self._cond:
            faults = self._faults
            pause = faults.delays.get(rpc, faults.delays.get("*", 0.0))
            unavailable = rpc in faults.unavailable or "*" in faults.unavailable
            forced = faults.statuses.get(rpc)
            credentials = self._credentials
        if pause > 0:
            self._stopping.wait(pause)
            if not context.is_active():  # the caller died while its request was on the wire
                self._record(rpc, 0, client_id)
                context.abort(grpc.StatusCode.CANCELLED, "fake RocketMQ: caller went away")
        if unavailable:
            self._record(rpc, 0, client_id)
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake RocketMQ: unavailable (injected)")
        if credentials is not None:
            self._check_signature(metadata, credentials)
        if forced is not None:
            raise _Refused(*forced)
        return client_id

    @staticmethod
    def _check_signature(metadata: dict[str, Any], credentials: tuple[str, str]) -> None:
        match = _AUTH_RE.match(str(metadata.get("authorization", "")))
        date_time = str(metadata.get("x-mq-date-time", ""))
        if match is None or not date_time:
            raise _Refused(pb.UNAUTHORIZED, "missing or malformed authorization header")
        username, password = credentials
        expected = hmac.new(password.encode(), date_time.encode(), hashlib.sha1).hexdigest()
        if match["ak"] != username or not hmac.compare_digest(match["sig"].lower(), expected):
            raise _Refused(pb.UNAUTHORIZED, "signature or access key does not match")

    def _record(self, rpc: str, code: int, client_id: str) -> None:
        with self._cond:
            self._calls.append(CallRecord(rpc=rpc, code=code, client_id=client_id))

    def _request_timeout(self, client_id: str) -> float:
        with self._cond:
            settings = self._settings.get(client_id)
        if settings is not None and settings.HasField("request_timeout"):
            return _seconds(settings.request_timeout)
        return 3.0


def _copy(message: Any) -> Any:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


class _Servicer(spb_grpc.MessagingServiceServicer):  # type: ignore[misc]
    """The RPC handlers; state and checks live in `FakeRocketMQ`."""

    def __init__(self, fake: FakeRocketMQ) -> None:
        self.fake = fake

    def _unary(self, rpc: str, context: Any, response_type: Any, body: Any) -> Any:
        client_id = ""
        try:
            client_id = self.fake._enter(rpc, context)
            response = body(client_id)
        except _Refused as refused:
            response = response_type(status=_status(refused.code, refused.message))
        self.fake._record(rpc, int(response.status.code), client_id)
        return response

    # -- routing and session -------------------------------------------------------------------

    def QueryRoute(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            fake = self.fake
            with fake._cond:
                fake._require_topic(request.topic.resource_namespace, request.topic.name)
            return spb.QueryRouteResponse(
                status=_status(pb.OK, "OK"), message_queues=[self._queue(request)]
            )

        return self._unary("QueryRoute", context, spb.QueryRouteResponse, answer)

    def _queue(self, request: Any) -> Any:
        """The one queue of every topic; the broker endpoints echo the client's access point."""
        endpoints = pb.Endpoints()
        if request.endpoints.scheme and request.endpoints.addresses:
            endpoints.CopyFrom(request.endpoints)
        else:
            endpoints.scheme = pb.IPv4
            endpoints.addresses.add(host=self.fake._host, port=self.fake.port)
        return pb.MessageQueue(
            topic=pb.Resource(
                name=request.topic.name, resource_namespace=request.topic.resource_namespace
            ),
            id=0,
            permission=pb.READ_WRITE,
            broker=pb.Broker(name=_BROKER_NAME, id=0, endpoints=endpoints),
            accept_message_types=[pb.NORMAL],
        )

    def QueryAssignment(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            with self.fake._cond:
                self.fake._require_topic(request.topic.resource_namespace, request.topic.name)
            return spb.QueryAssignmentResponse(
                status=_status(pb.OK, "OK"),
                assignments=[pb.Assignment(message_queue=self._queue(request))],
            )

        return self._unary("QueryAssignment", context, spb.QueryAssignmentResponse, answer)

    def Heartbeat(self, request: Any, context: Any) -> Any:
        def answer(client_id: str) -> Any:
            with self.fake._cond:
                known = client_id in self.fake._settings
            if not known:
                raise _Refused(pb.UNRECOGNIZED_CLIENT_TYPE, "no client settings for this client")
            return spb.HeartbeatResponse(status=_status(pb.OK, "OK"))

        return self._unary("Heartbeat", context, spb.HeartbeatResponse, answer)

    def NotifyClientTermination(self, request: Any, context: Any) -> Any:
        def answer(client_id: str) -> Any:
            with self.fake._cond:
                self.fake._settings.pop(client_id, None)
            return spb.NotifyClientTerminationResponse(status=_status(pb.OK, "OK"))

        return self._unary(
            "NotifyClientTermination", context, spb.NotifyClientTerminationResponse, answer
        )

    def Telemetry(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        fake = self.fake
        try:
            client_id = fake._enter("Telemetry", context)
            refused: _Refused | None = None
        except _Refused as e:
            client_id, refused = "", e
        fake._record("Telemetry", refused.code if refused else pb.OK, client_id)
        for command in request_iterator:
            if refused is not None:
                yield spb.TelemetryCommand(status=_status(refused.code, refused.message))
                continue
            if not command.HasField("settings"):
                continue
            merged = self._merge_settings(command.settings)
            with fake._cond:
                fake._settings[client_id] = _copy(merged)
            yield spb.TelemetryCommand(status=_status(pb.OK, "OK"), settings=merged)

    @staticmethod
    def _merge_settings(client: Any) -> Any:
        """The client's settings completed the way the proxy completes them."""
        settings = _copy(client)
        settings.metric.on = False  # on would start an OTLP exporter in the client
        if client.client_type == pb.PRODUCER:
            settings.backoff_policy.max_attempts = 3
            settings.backoff_policy.exponential_backoff.initial.FromMilliseconds(10)
            settings.backoff_policy.exponential_backoff.max.FromMilliseconds(1000)
            settings.backoff_policy.exponential_backoff.multiplier = 2.0
            settings.publishing.max_body_size = 4 * 1024 * 1024
            settings.publishing.validate_message_type = True
        else:
            settings.backoff_policy.max_attempts = 17
            for seconds in (1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600):
                settings.backoff_policy.customized_backoff.next.add(seconds=seconds)
            settings.subscription.receive_batch_size = 32
            if not settings.subscription.long_polling_timeout.seconds:
                settings.subscription.long_polling_timeout.seconds = 20
        return settings

    # -- producing -----------------------------------------------------------------------------

    def SendMessage(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            if not request.messages:
                raise _Refused(pb.BAD_REQUEST, "no message in SendMessageRequest")
            entries = []
            with self.fake._cond:
                for m in request.messages:
                    entries.append(self._send_one(m))
            return spb.SendMessageResponse(status=_status(pb.OK, "OK"), entries=entries)

        return self._unary("SendMessage", context, spb.SendMessageResponse, answer)

    def _send_one(self, m: Any) -> Any:
        sp = m.system_properties
        if not m.body:
            raise _Refused(pb.MESSAGE_BODY_EMPTY, "message body is empty")
        if sp.message_type not in (pb.NORMAL, pb.DELAY):
            raise _Refused(pb.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "fake topics are NORMAL")
        body = gzip.decompress(m.body) if sp.body_encoding == pb.GZIP else bytes(m.body)
        now = _now_ms()
        deliver_at = (
            sp.delivery_timestamp.ToMilliseconds() if sp.HasField("delivery_timestamp") else 0
        )
        message_id = sp.message_id or uuid.uuid4().hex.upper()
        self.fake._store(
            StoredMessage(
                message_id=message_id,
                topic=m.topic.name,
                namespace=m.topic.resource_namespace,
                offset=0,
                body=body,
                tag=sp.tag or None,
                keys=tuple(sp.keys),
                properties=dict(m.user_properties),
                born_timestamp_ms=sp.born_timestamp.ToMilliseconds() or now,
                store_timestamp_ms=now,
                born_host=sp.born_host,
                deliver_at_ms=deliver_at,
            ),
            create=False,
        )
        offset = len(self.fake._topics[(m.topic.resource_namespace, m.topic.name)]) - 1
        return spb.SendResultEntry(
            status=_status(pb.OK, "OK"), message_id=message_id, offset=offset
        )

    # -- consuming -----------------------------------------------------------------------------

    def ReceiveMessage(self, request: Any, context: Any) -> Iterator[Any]:
        fake = self.fake
        client_id = ""
        try:
            client_id = fake._enter("ReceiveMessage", context)
            found = self._receive(request, context, client_id)
        except _Refused as refused:
            fake._record("ReceiveMessage", refused.code, client_id)
            yield spb.ReceiveMessageResponse(status=_status(refused.code, refused.message))
            yield spb.ReceiveMessageResponse(delivery_timestamp=_timestamp(_now_ms()))
            return
        if not found:
            fake._record("ReceiveMessage", pb.MESSAGE_NOT_FOUND, client_id)
            yield spb.ReceiveMessageResponse(status=_status(pb.MESSAGE_NOT_FOUND, "no new message"))
        else:
            fake._record("ReceiveMessage", pb.OK, client_id)
            yield spb.ReceiveMessageResponse(status=_status(pb.OK, "OK"))
            for message in found:
                yield spb.ReceiveMessageResponse(message=message)
        yield spb.ReceiveMessageResponse(delivery_timestamp=_timestamp(_now_ms()))

    def _receive(self, request: Any, context: Any, client_id: str) -> list[Any]:
        fake, limits = self.fake, self.fake.limits
        topic = request.message_queue.topic
        namespace, group = topic.resource_namespace, request.group.name
        if not group:
            raise _Refused(pb.ILLEGAL_CONSUMER_GROUP, "consumer group is empty")
        if not 1 <= request.batch_size <= limits.max_batch_size:
            raise _Refused(
                pb.BAD_REQUEST,
                f"batch_size {request.batch_size} is outside 1..{limits.max_batch_size}",
            )
        invisible = _seconds(request.invisible_duration)
        if not limits.min_invisible <= invisible <= limits.max_invisible:
            raise _Refused(
                pb.ILLEGAL_INVISIBLE_TIME,
                f"invisible duration {invisible:g}s is outside "
                f"{limits.min_invisible:g}..{limits.max_invisible:g}s",
            )
        if request.filter_expression.type == pb.SQL:
            raise _Refused(pb.UNSUPPORTED, "the fake supports TAG filter expressions only")
        tags = _tag_matcher(request.filter_expression)
        polling = self._polling_time(request, context, client_id)
        deadline = time.monotonic() + polling
        key = (namespace, topic.name, group)
        with fake._cond:
            fake._require_topic(namespace, topic.name)
            fake._require_group(request.group.resource_namespace, group)
            while True:
                taken, next_due = fake._take(key, tags, request.batch_size, invisible)
                now = time.monotonic()
                if taken or now >= deadline or fake._stopping.is_set():
                    break
                if not context.is_active():
                    break
                wait = min(deadline - now, _POLL_SLICE)
                if next_due is not None:
                    wait = min(wait, max(next_due - now, 0.0))
                fake._cond.wait(wait)
            return [self._to_proto(m, d, handle, invisible) for m, d, handle in taken]

    def _polling_time(self, request: Any, context: Any, client_id: str) -> float:
        """The proxy's long-polling rule: clamp to the limits and fit the client's deadline."""
        limits = self.fake.limits
        remaining = context.time_remaining()
        remaining = 3600.0 if remaining is None else float(remaining)
        if request.HasField("long_polling_timeout"):
            polling = _seconds(request.long_polling_timeout)
        else:
            polling = remaining - self.fake._request_timeout(client_id) / 2
        polling = min(max(polling, limits.min_long_polling), limits.max_long_polling)
        if polling > remaining:
            if remaining < limits.min_long_polling:
                raise _Refused(
                    pb.ILLEGAL_POLLING_TIME,
                    "The deadline time remaining is not enough for polling, "
                    "please check network condition",
                )
            polling = remaining
        return max(polling - 0.1, 0.0)  # the proxy keeps 100 ms to write the answer

    @staticmethod
    def _to_proto(m: StoredMessage, d: _Delivery, handle: str, invisible: float) -> Any:
        body = gzip.compress(m.body) if m.gzip_body else m.body
        # The client checks the digest of the bytes on the wire, before inflating them.
        digest = hashlib.md5(body, usedforsecurity=False).hexdigest().upper()
        if m.corrupt_digest:
            digest = "0" * 32
        out = pb.Message(
            topic=pb.Resource(name=m.topic, resource_namespace=m.namespace),
            body=body,
        )
        out.user_properties.update(m.properties)
        sp = out.system_properties
        if m.tag is not None:
            sp.tag = m.tag
        sp.keys.extend(m.keys)
        sp.message_id = m.message_id
        sp.body_digest.type = pb.MD5
        sp.body_digest.checksum = digest
        sp.body_encoding = pb.GZIP if m.gzip_body else pb.IDENTITY
        sp.message_type = pb.DELAY if m.deliver_at_ms else pb.NORMAL
        sp.born_timestamp.FromMilliseconds(m.born_timestamp_ms)
        sp.born_host = m.born_host
        sp.store_timestamp.FromMilliseconds(m.store_timestamp_ms)
        sp.store_host = _BROKER_NAME
        if m.deliver_at_ms:
            sp.delivery_timestamp.FromMilliseconds(m.deliver_at_ms)
        sp.receipt_handle = handle
        sp.queue_id = 0
        sp.queue_offset = m.offset
        sp.invisible_duration.FromMilliseconds(int(invisible * 1000))
        sp.delivery_attempt = d.attempts
        return out

    def AckMessage(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            fake = self.fake
            key = (request.topic.resource_namespace, request.topic.name, request.group.name)
            entries = []
            with fake._cond:
                for entry in request.entries:
                    try:
                        d = fake._resolve_handle(key, entry.message_id, entry.receipt_handle)
                        d.acked = True
                        status = _status(pb.OK, "OK")
                    except _Refused as refused:
                        status = _status(refused.code, refused.message)
                    entries.append(
                        spb.AckMessageResultEntry(
                            message_id=entry.message_id,
                            receipt_handle=entry.receipt_handle,
                            status=status,
                        )
                    )
            codes = {e.status.code for e in entries}
            if not entries:
                top = _status(pb.BAD_REQUEST, "no entry to ack")
            elif len(codes) == 1:
                top = _copy(entries[0].status)
            else:
                top = _status(pb.MULTIPLE_RESULTS, "entries have different results")
            return spb.AckMessageResponse(status=top, entries=entries)

        return self._unary("AckMessage", context, spb.AckMessageResponse, answer)

    def ChangeInvisibleDuration(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            fake = self.fake
            seconds = _seconds(request.invisible_duration)
            if not 0 <= seconds <= fake.limits.max_invisible:
                raise _Refused(
                    pb.ILLEGAL_INVISIBLE_TIME,
                    f"invisible duration {seconds:g}s is outside 0..{fake.limits.max_invisible:g}s",
                )
            key = (request.topic.resource_namespace, request.topic.name, request.group.name)
            with fake._cond:
                d = fake._resolve_handle(key, request.message_id, request.receipt_handle)
                if d.acked or d.dead_lettered:
                    raise _Refused(pb.INVALID_RECEIPT_HANDLE, "message is already acked")
                fake._handles.pop(request.receipt_handle, None)
                d.visible_at = time.monotonic() + seconds
                d.handle = fake._new_handle(key, request.message_id)
                fake._cond.notify_all()
                return spb.ChangeInvisibleDurationResponse(
                    status=_status(pb.OK, "OK"), receipt_handle=d.handle
                )

        return self._unary(
            "ChangeInvisibleDuration", context, spb.ChangeInvisibleDurationResponse, answer
        )

    def ForwardMessageToDeadLetterQueue(self, request: Any, context: Any) -> Any:
        def answer(_client_id: str) -> Any:
            fake = self.fake
            key = (request.topic.resource_namespace, request.topic.name, request.group.name)
            with fake._cond:
                d = fake._resolve_handle(key, request.message_id, request.receipt_handle)
                d.dead_lettered = True
            return spb.ForwardMessageToDeadLetterQueueResponse(status=_status(pb.OK, "OK"))

        return self._unary(
            "ForwardMessageToDeadLetterQueue",
            context,
            spb.ForwardMessageToDeadLetterQueueResponse,
            answer,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground: `python -m consumer.testing.fake_rocketmq --port 8081`."""
    parser = argparse.ArgumentParser(description="Local RocketMQ 5 gRPC proxy emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--username", help="require this username (with --password)")
    parser.add_argument("--password", default="")
    parser.add_argument(
        "--relaxed", action="store_true", help="allow invisible/polling times under the minimums"
    )
    args = parser.parse_args(argv)
    fake = FakeRocketMQ(
        host=args.host,
        port=args.port,
        credentials=(args.username, args.password) if args.username else None,
        limits=ProxyLimits.relaxed() if args.relaxed else None,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with fake:
        print(f"fake RocketMQ listening on {fake.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
