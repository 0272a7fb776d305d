"""A local RocketMQ 4.x name server and broker speaking the Remoting protocol, for tests and demos.

What the C++ client (librocketmq, behind rocketmq-client-python 2.0.0) talks to, byte for byte:

- Frames: a 4-byte big-endian length of what follows, a 4-byte header length whose top byte is
  the serialization type (0 = JSON), the JSON header (`code`, `language`, `version`, `opaque`,
  `flag`, `remark`, `extFields` with string values) and the body. `flag` bit 0 marks a response,
  bit 1 a one-way request (no answer).
- Name server: GET_ROUTEINFO_BY_TOPIC (105) with the route as the real one writes it (fastjson's
  numeric map keys in `brokerAddrs`), TOPIC_NOT_EXIST (17) for an unknown topic.
- Broker: HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, QUERY/UPDATE_CONSUMER_OFFSET,
  GET_MIN/MAX_OFFSET, long-poll PULL_MESSAGE returning the binary message layout that
  `MessageDecoder` reads, CONSUMER_SEND_MSG_BACK into `%RETRY%group` (or `%DLQ%group` past
  `maxReconsumeTimes`), the commit offset carried by pulls, and the ACL signature check
  (HmacSHA1 of the sorted extFields values and the body, `AccessKey`/`Signature` in extFields).
  A refused signature is answered SYSTEM_ERROR with the AclException text, as the broker does.

Sources: apache/rocketmq `RemotingCommand`, `RequestCode`, `ResponseCode`, `MessageDecoder`,
`PullMessageProcessor`, `ConsumerManageProcessor`, `SendMessageProcessor.consumerSendMsgBack`,
`PlainAccessValidator`; apache/rocketmq-client-cpp `MQDecoder.cpp`, `TopicRouteData.h`,
`ClientRPCHook.cpp`.

Knobs a test needs and a broker has in some form: `max_pull_count` (messages per pull; a broker
caps by count and bytes), `long_poll_cap` (how long a pull is held at most), `retry_delay` (the
delay level's wait before a sent-back message is due) and `release_delayed()` (make it due now).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import socket
import socketserver
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# RequestCode
SEND_MESSAGE = 10
PULL_MESSAGE = 11
QUERY_CONSUMER_OFFSET = 14
UPDATE_CONSUMER_OFFSET = 15
GET_MIN_OFFSET = 29
GET_MAX_OFFSET = 30
HEART_BEAT = 34
UNREGISTER_CLIENT = 35
CONSUMER_SEND_MSG_BACK = 36
GET_CONSUMER_LIST_BY_GROUP = 38
GET_ROUTEINFO_BY_TOPIC = 105
# ResponseCode
SUCCESS = 0
SYSTEM_ERROR = 1
REQUEST_CODE_NOT_SUPPORTED = 3
TOPIC_NOT_EXIST = 17
PULL_NOT_FOUND = 19
PULL_RETRY_IMMEDIATELY = 20
PULL_OFFSET_MOVED = 21
QUERY_NOT_FOUND = 22

MAGIC_CODE = 0xDAA320A7  # MessageDecoder.MESSAGE_MAGIC_CODE (-626843481)
NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"
_RESPONSE = 1
_ONEWAY = 2
_FLAG_COMMIT_OFFSET = 1  # PullSysFlag
_FLAG_SUSPEND = 2
MAX_FRAME = 16 * 1024 * 1024
BROKER_NAME = "broker-a"
CLUSTER = "DefaultCluster"


@dataclass
class Command:
    """One RemotingCommand."""

    code: int
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    language: str = "JAVA"
    version: int = 399  # V4_9_4

    def encode(self) -> bytes:
        header: dict[str, Any] = {
            "code": self.code,
            "language": self.language,
            "version": self.version,
            "opaque": self.opaque,
            "flag": self.flag,
            "serializeTypeCurrentRPC": "JSON",
        }
        if self.remark is not None:
            header["remark"] = self.remark
        if self.ext:
            header["extFields"] = self.ext
        raw = json.dumps(header, ensure_ascii=False).encode("utf-8")
        return struct.pack(">II", 4 + len(raw) + len(self.body), len(raw)) + raw + self.body

    @classmethod
    def decode(cls, frame: bytes) -> Command:
        """`frame` is what follows the length prefix."""
        if len(frame) < 4:
            raise ValueError("frame shorter than its header length")
        (mark,) = struct.unpack(">I", frame[:4])
        kind, length = mark >> 24, mark & 0xFFFFFF
        if kind != 0:
            raise ValueError(f"serialization type {kind} is not JSON")
        if 4 + length > len(frame):
            raise ValueError("header length past the frame")
        header = json.loads(frame[4 : 4 + length])
        ext = {str(k): str(v) for k, v in (header.get("extFields") or {}).items()}
        return cls(
            code=int(header["code"]),
            opaque=int(header.get("opaque", 0)),
            flag=int(header.get("flag", 0)),
            remark=header.get("remark"),
            ext=ext,
            body=frame[4 + length :],
            language=str(header.get("language", "")),
            version=int(header.get("version", 0)),
        )


def read_command(sock: socket.socket) -> Command | None:
    """The next frame from `sock`; None when the peer closed between frames."""
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if not 4 <= size <= MAX_FRAME:
        raise ValueError(f"frame length {size} out of range")
    frame = _read_exact(sock, size)
    if frame is None:
        raise ValueError("connection closed inside a frame")
    return Command.decode(frame)


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def sign(ext: dict[str, str], body: bytes, secret: str) -> str:
    """The ACL signature: HmacSHA1 over the extFields values sorted by key, then the body."""
    content = "".join(ext[k] for k in sorted(ext) if k != "Signature").encode("utf-8") + body
    return base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha1).digest()).decode()


def java_crc32(body: bytes) -> int:
    return zlib.crc32(body) & 0x7FFFFFFF


def encode_properties(properties: dict[str, str]) -> bytes:
    return "".join(
        f"{k}{NAME_VALUE_SEPARATOR}{v}{PROPERTY_SEPARATOR}" for k, v in properties.items()
    ).encode("utf-8")


@dataclass
class Stored:
    """One message in a consume queue."""

    topic: str
    queue_id: int
    queue_offset: int
    commit_offset: int
    body: bytes
    properties: dict[str, str]
    reconsume_times: int
    born: int
    stored: int

    @property
    def tags(self) -> str:
        return self.properties.get("TAGS", "")

    def encode(self, store_host: tuple[str, int]) -> bytes:
        """MessageDecoder's layout, IPv4 hosts (sysflag without BORNHOST_V6/STOREHOST_V6)."""
        topic = self.topic.encode("utf-8")
        props = encode_properties(self.properties)
        ip = socket.inet_aton(store_host[0])
        size = 91 + len(self.body) + len(topic) + len(props)
        return b"".join(
            [
                struct.pack(
                    ">iIiiiqqiq4siq4siiq",
                    size,
                    MAGIC_CODE,
                    java_crc32(self.body),
                    self.queue_id,
                    0,  # FLAG
                    self.queue_offset,
                    self.commit_offset,
                    0,  # SYSFLAG
                    self.born,
                    ip,
                    store_host[1],
                    self.stored,
                    ip,
                    store_host[1],
                    self.reconsume_times,
                    0,  # PREPAREDTRANSACTIONOFFSET
                ),
                struct.pack(">i", len(self.body)),
                self.body,
                struct.pack(">B", len(topic)),
                topic,
                struct.pack(">h", len(props)),
                props,
            ]
        )


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        write = threading.Lock()
        fake = self.server.fake
        fake._connections.add(sock)
        self.clients: set[tuple[str, str]] = set()
        """(group, client id) heartbeats named on this connection: gone when it closes."""
        try:
            while not fake._stopping.is_set():
                try:
                    command = read_command(sock)
                except (OSError, ValueError, json.JSONDecodeError, KeyError):
                    return
                if command is None:
                    return
                fake.requests.append((self.server.role, command.code))
                if command.code == PULL_MESSAGE:  # long polls must not block the connection
                    threading.Thread(
                        target=self._answer, args=(sock, write, command), daemon=True
                    ).start()
                else:
                    self._answer(sock, write, command)
        finally:
            fake._connections.discard(sock)
            fake._connection_closed(self.clients)

    def _answer(self, sock: socket.socket, write: threading.Lock, command: Command) -> None:
        response = self.server.fake._dispatch(self.server.role, command, self.clients)
        if command.flag & _ONEWAY or response is None:
            return
        response.opaque = command.opaque
        response.flag = _RESPONSE
        with write, contextlib.suppress(OSError):
            sock.sendall(response.encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeRemoting, role: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.role = role


class FakeRemoting:
    """A name server and one broker holding `topic` in `queues` queues, on 127.0.0.1.

    `credentials` maps access keys to secret keys: when given, every broker request must be
    signed by one of them. `publish` stores messages as a producer would.
    """

    def __init__(
        self,
        topic: str = "OUTBOUND_BOT_TOPIC",
        *,
        queues: int = 4,
        credentials: dict[str, str] | None = None,
        max_pull_count: int = 32,
        long_poll_cap: float = 15.0,
        retry_delay: float = 10.0,
    ) -> None:
        self.topic = topic
        self.queue_count = queues
        self.credentials = credentials
        self.max_pull_count = max_pull_count
        self.long_poll_cap = long_poll_cap
        self.retry_delay = retry_delay
        self.requests: list[tuple[str, int]] = []
        self.acl_refusals = 0
        self._lock = threading.Condition()
        self._queues: dict[tuple[str, int], list[Stored]] = {}
        self._by_commit: dict[int, Stored] = {}
        self._commit_next = 0
        self._offsets: dict[tuple[str, str, int], int] = {}
        self._clients: dict[str, dict[str, float]] = {}
        self._delayed: list[tuple[float, Stored]] = []
        self._ids = itertools.count(1)
        self._rr = itertools.count()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._namesrv = _Server(self, "namesrv")
        self._broker = _Server(self, "broker")
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True)
            for s in (self._namesrv, self._broker)
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def namesrv(self) -> str:
        host, port = self._namesrv.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def broker_address(self) -> tuple[str, int]:
        host, port = self._broker.server_address[:2]
        return str(host), int(port)

    def start(self) -> FakeRemoting:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        for server in (self._namesrv, self._broker):
            server.shutdown()
            server.server_close()
        for sock in list(self._connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeRemoting:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what a test does ----------------------------------------------------------------------

    def publish(self, body: bytes, *, tags: str | None = None, keys: str | None = None) -> str:
        """Store one message on the topic (round robin over its queues); returns its UNIQ_KEY."""
        uniq = f"7F000001{next(self._ids):024X}"
        properties = {"UNIQ_KEY": uniq, "WAIT": "true"}
        if tags:
            properties["TAGS"] = tags
        if keys:
            properties["KEYS"] = keys
        with self._lock:
            self._append(self.topic, next(self._rr) % self.queue_count, body, properties, 0)
        return uniq

    def release_delayed(self) -> None:
        """Make every sent-back message due now (skip the rest of its delay level)."""
        with self._lock:
            for _, message in self._delayed:
                self._append(
                    message.topic, 0, message.body, message.properties, message.reconsume_times
                )
            self._delayed.clear()
            self._lock.notify_all()

    def drained(self, group: str) -> bool:
        """True when `group` committed past every message of the topic and its retry topic and
        nothing sent back is still waiting for its delay."""
        with self._lock:
            if self._delayed:
                return False
            for (topic, queue_id), messages in self._queues.items():
                if topic not in (self.topic, f"%RETRY%{group}"):
                    continue
                if self._offsets.get((group, topic, queue_id), 0) < len(messages):
                    return False
            return True

    def dead_lettered(self, group: str) -> list[bytes]:
        with self._lock:
            return [
                m.body
                for (topic, _), messages in self._queues.items()
                if topic == f"%DLQ%{group}"
                for m in messages
            ]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        with self._lock:
            return {(t, q): o for (g, t, q), o in self._offsets.items() if g == group}

    # -- the store -----------------------------------------------------------------------------

    def _append(
        self, topic: str, queue_id: int, body: bytes, properties: dict[str, str], reconsume: int
    ) -> Stored:
        queue = self._queues.setdefault((topic, queue_id), [])
        now = int(time.time() * 1000)
        message = Stored(
            topic, queue_id, len(queue), self._commit_next, body, dict(properties), reconsume,
            now, now,
        )  # fmt: skip
        self._commit_next += 91 + len(body) + len(topic) + 256
        queue.append(message)
        self._by_commit[message.commit_offset] = message
        self._lock.notify_all()
        return message

    def _due(self) -> None:
        now = time.monotonic()
        due = [m for at, m in self._delayed if at <= now]
        if due:
            self._delayed = [(at, m) for at, m in self._delayed if at > now]
            for m in due:
                self._append(m.topic, 0, m.body, m.properties, m.reconsume_times)

    # -- dispatch ------------------------------------------------------------------------------

    def _connection_closed(self, clients: set[tuple[str, str]]) -> None:
        """ClientHousekeepingService: a closed channel unregisters its clients at once, so a
        killed consumer's queues are rebalanced to the others."""
        with self._lock:
            for group, client in clients:
                self._clients.get(group, {}).pop(client, None)

    def _dispatch(
        self, role: str, command: Command, clients: set[tuple[str, str]]
    ) -> Command | None:
        if role == "namesrv":
            if command.code == GET_ROUTEINFO_BY_TOPIC:
                return self._route(command.ext.get("topic", ""))
            return _unsupported(command.code)
        refusal = self._check_acl(command)
        if refusal is not None:
            return refusal
        if command.code == HEART_BEAT:
            return self._heartbeat(command, clients)
        handler = {
            UNREGISTER_CLIENT: self._unregister,
            GET_CONSUMER_LIST_BY_GROUP: self._consumer_list,
            QUERY_CONSUMER_OFFSET: self._query_offset,
            UPDATE_CONSUMER_OFFSET: self._update_offset,
            GET_MIN_OFFSET: self._min_offset,
            GET_MAX_OFFSET: self._max_offset,
            PULL_MESSAGE: self._pull,
            CONSUMER_SEND_MSG_BACK: self._send_back,
        }.get(command.code)
        if handler is None:
            return _unsupported(command.code)
        try:
            return handler(command)
        except (KeyError, ValueError) as exc:
            return Command(SYSTEM_ERROR, remark=f"bad request: {type(exc).__name__}: {exc}")

    def _check_acl(self, command: Command) -> Command | None:
        if self.credentials is None:
            return None
        access_key = command.ext.get("AccessKey")
        signature = command.ext.get("Signature")
        if not access_key or not signature:
            self.acl_refusals += 1
            return Command(
                SYSTEM_ERROR,
                remark="org.apache.rocketmq.acl.common.AclException: No accessKey is configured",
            )
        secret = self.credentials.get(access_key)
        if secret is None:
            self.acl_refusals += 1
            return Command(
                SYSTEM_ERROR,
                remark="org.apache.rocketmq.acl.common.AclException: "
                f"No acl config for {access_key}",
            )
        if not hmac.compare_digest(sign(command.ext, command.body, secret), signature):
            self.acl_refusals += 1
            return Command(
                SYSTEM_ERROR,
                remark="org.apache.rocketmq.acl.common.AclException: "
                f"Check signature failed for accessKey={access_key}",
            )
        return None

    def _route(self, topic: str) -> Command:
        if topic == self.topic:
            queues = self.queue_count
        elif topic.startswith(("%RETRY%", "%DLQ%")):
            queues = 1
        else:
            return Command(
                TOPIC_NOT_EXIST,
                remark=f"No topic route info in name server for the topic: {topic}",
            )
        host, port = self.broker_address
        # fastjson writes map keys unquoted ({0:"addr"}); the C++ client parses it so.
        body = (
            f'{{"brokerDatas":[{{"brokerAddrs":{{0:"{host}:{port}"}},"brokerName":"{BROKER_NAME}",'
            f'"cluster":"{CLUSTER}"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":'
            f'"{BROKER_NAME}","perm":6,"readQueueNums":{queues},"topicSysFlag":0,'
            f'"writeQueueNums":{queues}}}]}}'
        )
        return Command(SUCCESS, body=body.encode())

    def _heartbeat(self, command: Command, clients: set[tuple[str, str]]) -> Command:
        try:
            data = json.loads(command.body or b"{}")
        except ValueError:
            return Command(SYSTEM_ERROR, remark="heartbeat body is not JSON")
        client = str(data.get("clientID", ""))
        with self._lock:
            for consumer in data.get("consumerDataSet") or []:
                group = str(consumer.get("groupName"))
                self._clients.setdefault(group, {})[client] = time.monotonic()
                clients.add((group, client))
        return Command(SUCCESS)

    def _unregister(self, command: Command) -> Command:
        with self._lock:
            group = command.ext.get("consumerGroup", "")
            self._clients.get(group, {}).pop(command.ext.get("clientID", ""), None)
        return Command(SUCCESS)

    def _consumer_list(self, command: Command) -> Command:
        group = command.ext["consumerGroup"]
        with self._lock:
            now = time.monotonic()
            alive = sorted(
                c for c, seen in self._clients.get(group, {}).items() if now - seen < 120
            )
        if not alive:
            return Command(SYSTEM_ERROR, remark=f"no consumer for this group, {group}")
        return Command(SUCCESS, body=json.dumps({"consumerIdList": alive}).encode())

    def _query_offset(self, command: Command) -> Command:
        key = (command.ext["consumerGroup"], command.ext["topic"], int(command.ext["queueId"]))
        with self._lock:
            offset = self._offsets.get(key)
        if offset is None:
            # ConsumerManageProcessor: a queue whose messages all remain returns 0 for a group
            # that never committed, so a new group starts from the beginning.
            offset = 0
        return Command(SUCCESS, ext={"offset": str(offset)})

    def _update_offset(self, command: Command) -> Command:
        key = (command.ext["consumerGroup"], command.ext["topic"], int(command.ext["queueId"]))
        with self._lock:
            self._offsets[key] = int(command.ext["commitOffset"])
        return Command(SUCCESS)

    def _min_offset(self, command: Command) -> Command:
        return Command(SUCCESS, ext={"offset": "0"})

    def _max_offset(self, command: Command) -> Command:
        key = (command.ext["topic"], int(command.ext["queueId"]))
        with self._lock:
            return Command(SUCCESS, ext={"offset": str(len(self._queues.get(key, [])))})

    def _pull(self, command: Command) -> Command:
        ext = command.ext
        group, topic = ext["consumerGroup"], ext["topic"]
        queue_id, offset = int(ext["queueId"]), int(ext["queueOffset"])
        count = max(1, min(int(ext.get("maxMsgNums", "32")), self.max_pull_count))
        flags = int(ext.get("sysFlag", "0"))
        tags = _tag_set(ext.get("subscription", "*"))
        if flags & _FLAG_COMMIT_OFFSET and int(ext.get("commitOffset", "0")) >= 0:
            with self._lock:
                self._offsets[(group, topic, queue_id)] = int(ext["commitOffset"])
        suspend = int(ext.get("suspendTimeoutMillis", "0")) / 1000 if flags & _FLAG_SUSPEND else 0
        deadline = time.monotonic() + min(suspend, self.long_poll_cap)
        with self._lock:
            while True:
                self._due()
                queue = self._queues.get((topic, queue_id), [])
                size = len(queue)
                if offset > size:
                    return _pull_answer(PULL_OFFSET_MOVED, size, size)
                if offset < size or self._stopping.is_set():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return _pull_answer(PULL_NOT_FOUND, offset, size)
                self._lock.wait(min(left, 0.2))
            batch = queue[offset : offset + count]
        if not batch:
            return _pull_answer(PULL_NOT_FOUND, offset, size)
        found = [m for m in batch if tags is None or m.tags in tags]
        next_offset = batch[-1].queue_offset + 1
        if not found:
            return _pull_answer(PULL_RETRY_IMMEDIATELY, next_offset, size)
        body = b"".join(m.encode(self.broker_address) for m in found)
        return Command(
            SUCCESS,
            ext={
                "suggestWhichBrokerId": "0",
                "nextBeginOffset": str(next_offset),
                "minOffset": "0",
                "maxOffset": str(size),
            },
            body=body,
        )

    def _send_back(self, command: Command) -> Command:
        ext = command.ext
        group = ext["group"]
        with self._lock:
            original = self._by_commit.get(int(ext["offset"]))
            if original is None:
                return Command(
                    SYSTEM_ERROR, remark=f"look message by offset failed, {ext['offset']}"
                )
            reconsume = original.reconsume_times + 1
            properties = dict(original.properties)
            properties.setdefault("RETRY_TOPIC", original.topic)
            properties.setdefault("ORIGIN_MESSAGE_ID", ext.get("originMsgId", ""))
            limit = int(ext.get("maxReconsumeTimes", "16") or 16)
            if reconsume > limit or int(ext.get("delayLevel", "0")) < 0:
                self._append(f"%DLQ%{group}", 0, original.body, properties, reconsume)
                return Command(SUCCESS)
            retry = Stored(f"%RETRY%{group}", 0, -1, -1, original.body, properties, reconsume, 0, 0)
            if self.retry_delay <= 0:
                self._append(retry.topic, 0, retry.body, properties, reconsume)
            else:
                self._delayed.append((time.monotonic() + self.retry_delay, retry))
        return Command(SUCCESS)


def _pull_answer(code: int, next_offset: int, max_offset: int) -> Command:
    return Command(
        code,
        ext={
            "suggestWhichBrokerId": "0",
            "nextBeginOffset": str(next_offset),
            "minOffset": "0",
            "maxOffset": str(max_offset),
        },
    )


def _tag_set(expression: str) -> set[str] | None:
    expression = expression.strip()
    if expression in ("", "*"):
        return None
    return {t.strip() for t in expression.split("||") if t.strip()}


def _unsupported(code: int) -> Command:
    return Command(REQUEST_CODE_NOT_SUPPORTED, remark=f" request type {code} not supported")


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeRemoting]:
    with FakeRemoting(**kwargs) as fake:
        yield fake


__all__ = ["Command", "FakeRemoting", "read_command", "running", "sign"]
