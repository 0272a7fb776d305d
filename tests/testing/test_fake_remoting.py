"""The fake RocketMQ 4.x name server and broker at the wire: raw Remoting frames over a real
socket, checked against the layouts of apache/rocketmq (`RemotingCommand`, `MessageDecoder`).
The real C++ client drives it in tests/sources/test_remoting*.py."""

from __future__ import annotations

import json
import socket
import struct
import zlib
from collections.abc import Iterator

import pytest

from consumer.testing.fake_remoting import (
    CONSUMER_SEND_MSG_BACK,
    GET_ROUTEINFO_BY_TOPIC,
    MAGIC_CODE,
    PULL_MESSAGE,
    PULL_NOT_FOUND,
    QUERY_CONSUMER_OFFSET,
    REQUEST_CODE_NOT_SUPPORTED,
    SUCCESS,
    SYSTEM_ERROR,
    TOPIC_NOT_EXIST,
    UPDATE_CONSUMER_OFFSET,
    Command,
    FakeRemoting,
    read_command,
    sign,
)

TOPIC = "CallEvents"
GROUP = "GID_calls"


@pytest.fixture
def fake() -> Iterator[FakeRemoting]:
    with FakeRemoting(TOPIC, queues=1, long_poll_cap=0.1, retry_delay=0) as server:
        yield server


class Peer:
    """A raw Remoting connection: one request at a time."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.opaque = 0

    def call(self, code: int, ext: dict[str, str] | None = None, body: bytes = b"") -> Command:
        self.opaque += 1
        self.sock.sendall(Command(code, self.opaque, ext=ext or {}, body=body).encode())
        response = read_command(self.sock)
        assert response is not None
        assert response.opaque == self.opaque
        assert response.flag & 1  # a response
        return response

    def close(self) -> None:
        self.sock.close()


def broker(fake: FakeRemoting) -> Peer:
    host, port = fake.broker_address
    return Peer(f"{host}:{port}")


def pull(peer: Peer, offset: int, **ext: str) -> Command:
    fields = {
        "consumerGroup": GROUP, "topic": TOPIC, "queueId": "0", "queueOffset": str(offset),
        "maxMsgNums": "32", "sysFlag": "2", "commitOffset": "0", "suspendTimeoutMillis": "1000",
        "subscription": "*", "subVersion": "0",
    }  # fmt: skip
    fields.update(ext)
    return peer.call(PULL_MESSAGE, fields)


LAYOUT = ">iIiiiqqiq4siq4siiq"
"""TOTALSIZE .. PREPAREDTRANSACTIONOFFSET: the fixed 84 bytes before BODY."""


def decode_messages(body: bytes) -> list[dict[str, object]]:
    """MessageDecoder.decodes, field by field (IPv4 hosts)."""
    out: list[dict[str, object]] = []
    at = 0
    while at < len(body):
        fields = struct.unpack_from(LAYOUT, body, at)
        size, magic, crc, queue_id = fields[:4]
        queue_offset, physical, reconsume = fields[5], fields[6], fields[14]
        cursor = at + 84
        (length,) = struct.unpack_from(">i", body, cursor)
        payload = body[cursor + 4 : cursor + 4 + length]
        cursor += 4 + length
        topic_length = body[cursor]
        topic = body[cursor + 1 : cursor + 1 + topic_length].decode()
        cursor += 1 + topic_length
        (props_length,) = struct.unpack_from(">h", body, cursor)
        props = body[cursor + 2 : cursor + 2 + props_length].decode()
        cursor += 2 + props_length
        assert cursor - at == size
        assert magic == MAGIC_CODE
        assert crc == zlib.crc32(payload) & 0x7FFFFFFF
        pairs = [p.split("\x01") for p in props.split("\x02") if p]
        out.append({
            "queue_id": queue_id, "queue_offset": queue_offset, "physical": physical,
            "reconsume": reconsume, "body": payload, "topic": topic, "properties": dict(pairs),
        })  # fmt: skip
        at = cursor
    return out


def test_a_frame_round_trips_with_its_serialization_byte() -> None:
    # Given a command with extFields and a body
    command = Command(11, 7, flag=2, remark="r", ext={"a": "1"}, body=b"\x00body")
    # When it is encoded
    raw = command.encode()
    # Then the frame is length, JSON-typed header length, header, body, and decodes back
    (total, mark) = struct.unpack(">II", raw[:8])
    assert total == len(raw) - 4
    assert mark >> 24 == 0
    header = json.loads(raw[8 : 8 + (mark & 0xFFFFFF)])
    assert header["code"] == 11
    assert header["extFields"] == {"a": "1"}
    back = Command.decode(raw[4:])
    assert (back.code, back.opaque, back.flag, back.ext, back.body) == (
        11,
        7,
        2,
        {"a": "1"},
        b"\x00body",
    )


def test_the_route_uses_numeric_broker_ids_and_unknown_topics_are_refused(
    fake: FakeRemoting,
) -> None:
    # Given a name server connection
    peer = Peer(fake.namesrv)
    # When the route of the topic and of an unknown topic are asked for
    route = peer.call(GET_ROUTEINFO_BY_TOPIC, {"topic": TOPIC})
    unknown = peer.call(GET_ROUTEINFO_BY_TOPIC, {"topic": "Nope"})
    other = peer.call(QUERY_CONSUMER_OFFSET, {})
    peer.close()
    # Then the route names the broker under id 0 as fastjson writes it, the rest is refused
    assert route.code == SUCCESS
    host, port = fake.broker_address
    assert b'"brokerAddrs":{0:"%s:%d"}' % (host.encode(), port) in route.body
    assert b'"readQueueNums":1' in route.body
    assert unknown.code == TOPIC_NOT_EXIST
    assert other.code == REQUEST_CODE_NOT_SUPPORTED


def test_pull_returns_the_binary_layout_and_long_polls_at_the_end(fake: FakeRemoting) -> None:
    # Given two messages, one with a tag and a NUL in its body
    fake.publish(b"first\x00", tags="A")
    fake.publish(b"second")
    peer = broker(fake)
    # When the queue is pulled from 0, then past its end
    found = pull(peer, 0)
    tagged = pull(peer, 0, subscription="A")
    end = pull(peer, 2)
    peer.close()
    # Then both come back as MessageDecoder reads them, in order, and the end is NOT_FOUND
    assert found.code == SUCCESS
    assert found.ext["nextBeginOffset"] == "2"
    first, second = decode_messages(found.body)
    assert (first["body"], first["topic"], first["queue_offset"]) == (b"first\x00", TOPIC, 0)
    assert second["body"] == b"second"
    assert first["properties"]["TAGS"] == "A"  # type: ignore[index]
    assert "UNIQ_KEY" in first["properties"]  # type: ignore[operator]
    assert [m["body"] for m in decode_messages(tagged.body)] == [b"first\x00"]
    assert end.code == PULL_NOT_FOUND
    assert end.ext["nextBeginOffset"] == "2"


def test_offsets_are_committed_and_a_new_group_starts_at_zero(fake: FakeRemoting) -> None:
    # Given a queue with one message and a group that never committed
    fake.publish(b"one")
    peer = broker(fake)
    key = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0"}
    before = peer.call(QUERY_CONSUMER_OFFSET, key)
    # When the group commits past the message
    peer.sock.sendall(
        Command(UPDATE_CONSUMER_OFFSET, 99, flag=2, ext={**key, "commitOffset": "1"}).encode()
    )  # one-way, as the client sends it
    after = peer.call(QUERY_CONSUMER_OFFSET, key)
    peer.close()
    # Then it started at 0 and now reads 1, and the group is drained
    assert (before.code, before.ext["offset"]) == (SUCCESS, "0")
    assert after.ext["offset"] == "1"
    assert fake.drained(GROUP)


def test_a_message_sent_back_goes_to_the_retry_topic_then_the_dlq(fake: FakeRemoting) -> None:
    # Given a pulled message
    fake.publish(b"poison")
    peer = broker(fake)
    (message,) = decode_messages(pull(peer, 0).body)
    # When the consumer sends it back, then sends back the retried copy past maxReconsumeTimes
    back = peer.call(
        CONSUMER_SEND_MSG_BACK,
        {"offset": str(message["physical"]), "group": GROUP, "delayLevel": "0",
         "originMsgId": "x", "originTopic": TOPIC, "maxReconsumeTimes": "1"},
    )  # fmt: skip
    retried = pull(peer, 0, topic=f"%RETRY%{GROUP}")
    (copy,) = decode_messages(retried.body)
    again = peer.call(
        CONSUMER_SEND_MSG_BACK,
        {"offset": str(copy["physical"]), "group": GROUP, "delayLevel": "0",
         "originMsgId": "x", "originTopic": TOPIC, "maxReconsumeTimes": "1"},
    )  # fmt: skip
    peer.close()
    # Then the copy carried reconsume 1 and its original topic, and the next went to the DLQ
    assert back.code == again.code == SUCCESS
    assert copy["reconsume"] == 1
    assert copy["properties"]["RETRY_TOPIC"] == TOPIC  # type: ignore[index]
    assert fake.dead_lettered(GROUP) == [b"poison"]


def test_acl_checks_the_signature_of_every_broker_request() -> None:
    # Given a broker with one AccessKey pair
    with FakeRemoting(TOPIC, queues=1, credentials={"ak": "sk"}) as fake:
        peer = broker(fake)
        key = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0"}
        # When requests come unsigned, signed with the wrong secret, and signed right
        unsigned = peer.call(QUERY_CONSUMER_OFFSET, key)
        fields = {**key, "AccessKey": "ak", "OnsChannel": "ALIYUN"}
        wrong = peer.call(QUERY_CONSUMER_OFFSET, {**fields, "Signature": sign(fields, b"", "x")})
        right = peer.call(QUERY_CONSUMER_OFFSET, {**fields, "Signature": sign(fields, b"", "sk")})
        peer.close()
    # Then only the right signature passes; the others get the broker's AclException
    assert unsigned.code == wrong.code == SYSTEM_ERROR
    assert "AclException" in (wrong.remark or "")
    assert "Check signature failed for accessKey=ak" in (wrong.remark or "")
    assert right.code == SUCCESS
    assert fake.acl_refusals == 2


def test_the_signature_is_hmac_sha1_of_the_sorted_values_and_body() -> None:
    # Given extFields out of order and a body
    import base64
    import hashlib
    import hmac

    fields = {"topic": "T", "AccessKey": "ak", "queueId": "0", "Signature": "ignored"}
    # When signed
    signature = sign(fields, b"body", "sk")
    # Then it is HmacSHA1 over the values sorted by key (Signature left out), then the body
    content = b"ak" + b"0" + b"T" + b"body"
    expected = base64.b64encode(hmac.new(b"sk", content, hashlib.sha1).digest()).decode()
    assert signature == expected
