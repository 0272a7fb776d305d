"""The HTTP push receiver, end to end: a real listener on 127.0.0.1, a real aiohttp client and
the real SQLite sink; every assertion about storage reads the database file itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from consumer.config.load import load_config
from consumer.config.model import (
    HttpQueue,
    HttpSourceConfig,
    NoAuth,
    PushAuth,
    QueueConfig,
    RetryConfig,
    SinkConfig,
)
from consumer.errors import ConfigError
from consumer.formats import get_format
from consumer.runtime.probes import Probes
from consumer.runtime.push import push_endpoint, push_server
from consumer.sinks.base import Sink
from consumer.sinks.postgres import PostgresSink
from consumer.sources.http import (
    PushServer,
    parse_listen,
    success_body,
)
from consumer.sources.http_auth import NonceCache
from consumer.testing.tcp_proxy import TcpProxy
from tests.conformance.sink_double import FaultySink

SAMPLES = Path(__file__).parents[1] / "formats" / "samples"
FAST_RETRY = RetryConfig(
    attempts=2,
    initial=timedelta(milliseconds=10),
    max=timedelta(milliseconds=20),
    total=timedelta(seconds=1),
)
JSON = "application/json;charset=UTF-8"
T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(_within(scenario))


async def _within(scenario: Callable[[], Awaitable[T]]) -> T:
    async with asyncio.timeout(30):
        return await scenario()


def open_sqlite(url: str) -> Sink:
    """Through `open_sink` once the sinks package exports it, else the SQLite class itself."""
    import consumer.sinks

    open_sink = getattr(consumer.sinks, "open_sink", None)
    if open_sink is not None:
        sink: Sink = open_sink(SinkConfig(url=url))
        return sink
    from consumer.sinks.sqlite import SqliteSink

    return SqliteSink.from_url(url)


def queue(
    name: str,
    fmt: str,
    path: str,
    auth: PushAuth | None = None,
    *,
    allow_from: Sequence[str] = (),
    max_body_bytes: int = 1_048_576,
) -> QueueConfig:
    return HttpQueue(
        name=name,
        source="http",
        format=fmt,
        http=HttpSourceConfig(
            path=path,
            auth=auth or NoAuth(mode="none"),
            allow_from=list(allow_from),
            max_body_bytes=max_body_bytes,
        ),
        retry=FAST_RETRY,
    )


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDict[str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Rig:
    """A listener over a SQLite file, and a client to it."""

    db: Path
    server: PushServer
    session: aiohttp.ClientSession

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        async with self.session.post(self.server.url + path, data=body, headers=sent) as r:
            return Reply(r.status, await r.read(), CIMultiDict(r.headers))

    async def get(self, path: str) -> Reply:
        async with self.session.get(self.server.url + path) as r:
            return Reply(r.status, await r.read(), CIMultiDict(r.headers))

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, params))

    def event_ids(self) -> set[str]:
        return {row[0] for row in self.rows("SELECT event_id FROM call_events")}

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT count(*) FROM {table}")[0][0])


@asynccontextmanager
async def serving(
    tmp_path: Path,
    queues: Sequence[QueueConfig],
    *,
    busy_timeout: float = 0.2,
    body_timeout: float = 10.0,
    keepalive_timeout: float = 75.0,
    ready: Callable[[], object] | None = None,
    nonces: NonceCache | None = None,
    wrap: Callable[[Sink], Sink] | None = None,
) -> AsyncIterator[Rig]:
    db = tmp_path / "events.db"
    sink = open_sqlite(f"sqlite:///{db}?timeout={busy_timeout}")
    sink.migrate()
    if wrap is not None:
        sink = wrap(sink)
    endpoints = [push_endpoint(q, sink, nonces=nonces) for q in queues]
    server = PushServer(
        endpoints,
        listen="127.0.0.1:0",
        service=Probes(ready if ready is not None else (lambda: sink.dead_letters([0]))),
        body_timeout=body_timeout,
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=2.0,
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(db, server, session)
    finally:
        await server.close()
        sink.close()


def samples(prefix: str) -> list[tuple[str, str, bytes]]:
    """(format, file name, body) of every sample whose name starts with `prefix`."""
    found = []
    for path in sorted(SAMPLES.glob(f"{prefix}*")):
        fmt = ".".join(path.name.split(".")[:2])
        found.append((fmt, path.name, path.read_bytes()))
    return found


QUEUE_OF = {
    "huawei.voice_call": ("huawei-voice", "/push/huawei/voice"),
    "huawei.privacy_number": ("huawei-privacy", "/push/huawei/privacy"),
    "moor7.event": ("moor7", "/push/7moor"),
    "aliyun.voice_report": ("vms-report", "/push/aliyun/voice-report"),
    "aliyun.voice_call_report": ("vms-call", "/push/aliyun/voice-call"),
    "aliyun.voice_record_report": ("vms-record", "/push/aliyun/voice-record"),
    "aliyun.voice_asr_report": ("vms-asr", "/push/aliyun/voice-asr"),
    "aliyun.outbound_bot": ("bot", "/push/aliyun/bot"),
}


def every_queue() -> list[QueueConfig]:
    return [queue(name, fmt, path) for fmt, (name, path) in QUEUE_OF.items()]


def fee(*session_ids: str, service_type: str = "002") -> bytes:
    """A Huawei fee push with one record per session id (docs/formats.md F3.10); serviceType 002 is
    a Voice Call callback record, 003 a Private Number AX one."""
    records = [
        {
            "direction": 0,
            "spId": "CaaS_Test_01",
            "appKey": "ka4k******YnEm2",
            "icid": f"CAE-{n}-{sid}",
            "bindNum": "+8675512****78",
            "sessionId": sid,
            "callerNum": "+86138****0022",
            "calleeNum": "+86138****0021",
            "fwdStartTime": "2019-01-24 03:04:31",
            "fwdAlertingTime": "2019-01-24 03:04:36",
            "fwdAnswerTime": "2019-01-24 03:04:38",
            "callEndTime": "2019-01-24 03:04:49",
            "fwdUnaswRsn": 0,
            "ulFailReason": 0,
            "sipStatusCode": 0,
            "callOutStartTime": "2019-01-24 03:04:24",
            "callOutAlertingTime": "2019-01-24 03:04:27",
            "callOutAnswerTime": "2019-01-24 03:04:31",
            "callOutUnaswRsn": 0,
            "recordFlag": 0,
            "serviceType": service_type,
            "hostName": "callenabler245.huaweicaas.com",
        }
        for n, sid in enumerate(session_ids)
    ]
    return json.dumps({"eventType": "fee", "feeLst": records}).encode()


def status(session_id: str, event: str = "disconnect") -> bytes:
    info = {
        "sessionId": session_id,
        "timestamp": "2019-01-24 03:04:49",
        "caller": "+86138****0022",
        "called": "+86138****0021",
        "stateCode": 0,
        "stateDesc": "The user releases the call.",
    }
    return json.dumps({"eventType": event, "statusInfo": info}).encode()


def expected_ids(fmt: str, body: bytes) -> set[str]:
    return {n.event.event_id for n in get_format(fmt).parse(body)}


# -- every sample, every provider ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["huawei.", "moor7.", "aliyun."])
def test_every_sample_is_stored_and_answered_as_its_provider_expects(
    tmp_path: Path, prefix: str
) -> None:
    # Given a queue per format, and the shipped samples of one provider family
    bodies = samples(prefix)
    assert bodies

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            for fmt, name, body in bodies:
                # When each sample is pushed to its format's queue
                reply = await rig.post(QUEUE_OF[fmt][1], body)

                # Then it is answered 200 with the body the provider expects
                assert reply.status == 200, (name, reply.body)
                assert reply.body == success_body(fmt)
                if name.endswith(".invalid.txt"):
                    # and an invalid sample sits in dead_letters with its raw bytes
                    letters = rig.rows(
                        "SELECT payload, attempts FROM dead_letters WHERE message_id = ?",
                        reply.headers["X-Request-Id"],
                    )
                    assert letters == [(body, 1)], name
                    assert reply.headers["X-Consumer-Result"] == "dead_lettered"
                else:
                    # and every event it yields is committed under the request's id
                    ids = expected_ids(fmt, body)
                    stored = rig.rows(
                        "SELECT event_id FROM call_events WHERE message_id = ?",
                        reply.headers["X-Request-Id"],
                    )
                    assert ids <= rig.event_ids(), name
                    assert {row[0] for row in stored} <= ids, name
                    assert reply.headers["X-Consumer-Result"] == "stored"

    run(scenario)


def test_the_responses_are_what_each_provider_documents() -> None:
    # Given the formats, when their success bodies are built, then they match docs/formats.md
    assert json.loads(success_body("huawei.voice_call")) == {
        "resultcode": "0",
        "resultdesc": "Success",
    }
    assert json.loads(success_body("huawei.privacy_number"))["resultcode"] == "0"
    assert json.loads(success_body("moor7.event")) == {}
    assert json.loads(success_body("aliyun.voice_report")) == {"code": 0, "msg": "接收成功"}


def test_every_record_of_a_fee_push_becomes_its_own_event_committed_together(
    tmp_path: Path,
) -> None:
    # Given a Huawei fee push carrying three call records
    body = fee("s-1@h", "s-2@h", "s-3@h")

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            # When it is pushed
            reply = await rig.post("/push/huawei/voice", body)

            # Then three call.record events share the request's message id, one per call
            assert reply.status == 200
            assert reply.json() == {"resultcode": "0", "resultdesc": "Success"}
            rows = rig.rows(
                "SELECT call_id, kind FROM call_events WHERE message_id = ? ORDER BY call_id",
                reply.headers["X-Request-Id"],
            )
            assert rows == [
                ("s-1@h", "call.record"),
                ("s-2@h", "call.record"),
                ("s-3@h", "call.record"),
            ]
            assert rig.count("calls") == 3

    run(scenario)


def test_a_7moor_form_body_whose_field_holds_json_is_accepted(tmp_path: Path) -> None:
    # Given a 7moor event sent as a form whose single field holds the JSON
    event = (SAMPLES / "moor7.event.dialout_ring.json").read_bytes()
    form = aiohttp.FormData({"data": event.decode()})
    encoded = form()._value  # the urlencoded bytes aiohttp would send

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            # When it is pushed as application/x-www-form-urlencoded
            reply = await rig.post(
                "/push/7moor", encoded, content_type="application/x-www-form-urlencoded"
            )

            # Then it is stored like the JSON body
            assert reply.status == 200
            assert reply.json() == {}
            assert expected_ids("moor7.event", event) <= rig.event_ids()

            # and the same form to a Huawei queue is refused as the wrong media type
            refused = await rig.post(
                "/push/huawei/voice", encoded, content_type="application/x-www-form-urlencoded"
            )
            assert refused.status == 415

    run(scenario)


# -- duplicates and group commit -----------------------------------------------------------------


def test_concurrent_duplicate_posts_are_stored_once(tmp_path: Path) -> None:
    # Given 30 distinct status events and each of them pushed three times at once
    distinct = [status(f"call-{n}@h") for n in range(30)]
    pushes = distinct * 3

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            # When all 90 requests arrive concurrently
            replies = await asyncio.gather(*(rig.post("/push/huawei/voice", b) for b in pushes))

            # Then every request is answered 200, and each event is one row
            assert [r.status for r in replies] == [200] * len(pushes)
            assert rig.count("call_events") == 30
            assert rig.count("calls") == 30
            expected = set().union(*(expected_ids("huawei.voice_call", b) for b in distinct))
            assert rig.event_ids() == expected
            # and every request got an id of its own
            assert len({r.headers["X-Request-Id"] for r in replies}) == len(pushes)

    run(scenario)


def test_a_re_push_after_success_adds_nothing(tmp_path: Path) -> None:
    # Given a fee push that was stored
    body = fee("again@h")

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            first = await rig.post("/push/huawei/voice", body)
            # When Huawei pushes it again (it did not see our 200)
            second = await rig.post("/push/huawei/voice", body)

            # Then both are 200 and there is still one event, under the first request's id
            assert (first.status, second.status) == (200, 200)
            assert rig.rows("SELECT message_id FROM call_events") == [
                (first.headers["X-Request-Id"],)
            ]

    run(scenario)


def test_requests_arriving_during_a_commit_are_committed_together_in_the_next(
    tmp_path: Path,
) -> None:
    # Given a listener whose first commit is held up by another writer's lock
    counting: list[FaultySink] = []

    def wrap(sink: Sink) -> Sink:
        counting.append(FaultySink(sink))
        return counting[0]

    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), busy_timeout=5.0, wrap=wrap) as rig:
            endpoint = rig.server.endpoints[0]
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            first = asyncio.create_task(rig.post("/push/huawei/voice", status("first@h")))
            while counting[0].calls < 1:  # the first commit is waiting for the lock
                await asyncio.sleep(0.01)
            # When 20 more pushes arrive while it waits
            rest = [
                asyncio.create_task(rig.post("/push/huawei/voice", status(f"next-{n}@h")))
                for n in range(20)
            ]
            while endpoint.source.waiting < 20:
                await asyncio.sleep(0.01)
            blocker.execute("ROLLBACK")
            blocker.close()
            replies = await asyncio.gather(first, *rest)

            # Then all 21 are stored with two transactions: the first alone, the others together
            assert [r.status for r in replies] == [200] * 21
            assert rig.count("call_events") == 21
            assert counting[0].calls == 2

    run(scenario)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # at most 2 may wait: the third waiting push is refused 503 at once
        ({"max_pending": 2}, [200, 200, 200, 503]),
        # at most 2 bodies' worth of bytes may wait (every body here is the same size)
        ({"max_pending_bytes": 2 * len(status("held-0@h"))}, [200, 200, 200, 503]),
    ],
    ids=["requests", "bytes"],
)
def test_past_the_waiting_bound_a_push_is_answered_503_at_once(
    tmp_path: Path, limits: dict[str, int], expected: list[int]
) -> None:
    # Given a queue whose commit is held up by another writer, with a small waiting bound
    calls: list[FaultySink] = []

    def wrap(sink: Sink) -> Sink:
        calls.append(FaultySink(sink))
        return calls[0]

    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), busy_timeout=5.0, wrap=wrap) as rig:
            endpoint = rig.server.endpoints[0]
            for limit, value in limits.items():
                setattr(endpoint.source, limit, value)
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            pushes = [asyncio.create_task(rig.post("/push/huawei/voice", status("held-0@h")))]
            while calls[0].calls < 1:  # the first commit waits for the lock
                await asyncio.sleep(0.01)
            pushes += [
                asyncio.create_task(rig.post("/push/huawei/voice", status(f"held-{n}@h")))
                for n in (1, 2)
            ]
            while endpoint.source.waiting < 2:
                await asyncio.sleep(0.01)
            # When one more push arrives while two wait
            refused = await rig.post("/push/huawei/voice", status("held-3@h"))
            blocker.execute("ROLLBACK")
            blocker.close()
            replies = [*await asyncio.gather(*pushes), refused]

            # Then it alone is told to retry, and the others are stored
            assert [r.status for r in replies] == expected
            assert refused.headers["Retry-After"] == "5"
            assert rig.count("call_events") == 3

    run(scenario)


def test_a_group_commit_is_split_at_its_byte_bound(tmp_path: Path) -> None:
    # Given a queue whose transactions take at most two bodies' worth of bytes
    calls: list[FaultySink] = []

    def wrap(sink: Sink) -> Sink:
        calls.append(FaultySink(sink))
        return calls[0]

    bodies = [status(f"split-{n}@h") for n in range(6)]

    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), busy_timeout=5.0, wrap=wrap) as rig:
            endpoint = rig.server.endpoints[0]
            endpoint.source.max_batch_bytes = 2 * len(bodies[0])
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            first = asyncio.create_task(rig.post("/push/huawei/voice", bodies[0]))
            while calls[0].calls < 1:
                await asyncio.sleep(0.01)
            # When five more arrive while the first commit waits
            rest = [asyncio.create_task(rig.post("/push/huawei/voice", b)) for b in bodies[1:]]
            while endpoint.source.waiting < 5:
                await asyncio.sleep(0.01)
            blocker.execute("ROLLBACK")
            blocker.close()
            replies = await asyncio.gather(first, *rest)

            # Then all are stored, the five in transactions of two, two and one
            assert [r.status for r in replies] == [200] * 6
            assert rig.count("call_events") == 6
            assert calls[0].calls == 1 + 3

    run(scenario)


def test_a_body_the_database_refuses_does_not_fail_the_requests_committed_with_it(
    tmp_path: Path,
) -> None:
    # Given a database that refuses one call's row, and pushes arriving together with it
    def wrap(sink: Sink) -> Sink:
        return FaultySink(sink, refuse=lambda e: e.normalized.event.call_id == "refused@h")

    bodies = [status(f"fine-{n}@h") for n in range(10)] + [status("refused@h")]

    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), wrap=wrap) as rig:
            # When they are pushed concurrently
            replies = await asyncio.gather(*(rig.post("/push/huawei/voice", b) for b in bodies))

            # Then every push is answered 200; the refused one sits in dead_letters alone
            assert [r.status for r in replies] == [200] * 11
            assert rig.count("call_events") == 10
            letters = rig.rows("SELECT reason, payload FROM dead_letters")
            assert letters == [("sink_rejected", status("refused@h"))]
            assert replies[-1].headers["X-Consumer-Result"] == "dead_lettered"

    run(scenario)


# -- poison bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"eventType":"fee","feeLst":[{"sessionId": ', "not_json"),
        (b'{"eventType":"disconnect","statusInfo":{"sessionId":"\xff\xfe"}}', "not_utf8"),
        (b"", "not_json"),
        (b'{"eventType":"teleport","statusInfo":{"sessionId":"x"}}', None),
    ],
)
def test_a_malformed_body_is_answered_200_and_quarantined_with_its_raw_bytes(
    tmp_path: Path, body: bytes, reason: str | None
) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            # When a body that can never be normalized is pushed
            reply = await rig.post("/push/huawei/voice", body)

            # Then Huawei gets its success answer, so it stops retrying for hours
            assert reply.status == 200
            assert reply.json()["resultcode"] == "0"
            assert reply.headers["X-Consumer-Result"] == "dead_lettered"
            # and the body sits in dead_letters, byte for byte, with no event stored
            letters = rig.rows(
                "SELECT queue, message_id, reason, payload, attempts FROM dead_letters"
            )
            assert len(letters) == 1
            queue_name, message_id, stored_reason, payload, attempts = letters[0]
            assert (queue_name, message_id, payload, attempts) == (
                "huawei-voice",
                reply.headers["X-Request-Id"],
                body,
                1,
            )
            if reason is not None:
                assert stored_reason == reason
            assert rig.count("call_events") == 0

    run(scenario)


# -- refusals that store nothing -----------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_413_whether_announced_or_streamed(
    tmp_path: Path,
) -> None:
    # Given a queue that takes at most 2 KiB
    small = queue("small", "huawei.voice_call", "/push/small", max_body_bytes=2048)
    big = fee(*(f"big-{n}@h" for n in range(40)))
    assert len(big) > 2048

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    async def scenario() -> None:
        async with serving(tmp_path, [small]) as rig:
            # When the body is announced with a Content-Length over the limit
            announced = await rig.post("/push/small", big)
            # or streamed chunked, with no length announced
            async with rig.session.post(
                rig.server.url + "/push/small",
                data=chunked(),
                headers={"Content-Type": JSON},
            ) as r:
                streamed = r.status

            # Then both are refused 413 and nothing is stored
            assert (announced.status, streamed) == (413, 413)
            assert rig.count("call_events") == rig.count("dead_letters") == 0
            # while a body under the limit still goes through
            assert (await rig.post("/push/small", status("fits@h"))).status == 200

    run(scenario)


def test_unknown_paths_methods_and_media_types_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            body = status("refused@h")
            # When a push goes to no known path, then 404
            assert (await rig.post("/push/nowhere", body)).status == 404
            # and a token segment on a queue without token auth is no known path either
            assert (await rig.post("/push/huawei/voice/some-token-123456", body)).status == 404
            # When a queue path is read with GET, then 405 naming POST
            got = await rig.get("/push/huawei/voice")
            assert (got.status, got.headers.get("Allow")) == (405, "POST")
            # When the body is not declared JSON, or not declared at all, then 415
            plain = await rig.post("/push/huawei/voice", body, content_type="text/plain")
            assert plain.status == 415
            assert b"text/plain" in plain.body
            assert (await rig.post("/push/huawei/voice", body, content_type=None)).status == 415
            # Then nothing was stored by any of them
            assert rig.count("call_events") == rig.count("dead_letters") == 0
            # while a vendor JSON type (+json) is taken
            ok = await rig.post("/push/huawei/voice", body, content_type="application/vnd.x+json")
            assert ok.status == 200

    run(scenario)


@pytest.mark.parametrize(("cidrs", "expected"), [(["10.0.0.0/8"], 403), (["127.0.0.0/8"], 200)])
def test_the_ip_allowlist_refuses_other_clients(
    tmp_path: Path, cidrs: list[str], expected: int
) -> None:
    # Given a queue open only to some client networks
    guarded = queue("guarded", "huawei.voice_call", "/push/guarded", allow_from=cidrs)

    async def scenario() -> None:
        async with serving(tmp_path, [guarded]) as rig:
            # When 127.0.0.1 pushes
            reply = await rig.post("/push/guarded", status("ip@h"))

            # Then it is let in only when 127.0.0.1 is in the list
            assert reply.status == expected
            assert rig.count("call_events") == (1 if expected == 200 else 0)

    run(scenario)


def test_a_client_too_slow_to_send_its_body_is_cut_with_408(tmp_path: Path) -> None:
    # Given a listener that waits 0.3 s for a body
    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), body_timeout=0.3) as rig:
            # When a client announces 100 bytes and sends 10
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            writer.write(
                b"POST /push/huawei/voice HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"eventTyp'
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
            await writer.wait_closed()

            # Then it is answered 408, the connection closed, and nothing is stored
            assert head.startswith(b"HTTP/1.1 408")
            assert b"Connection: close" in head
            assert rig.count("call_events") == rig.count("dead_letters") == 0

    run(scenario)


def test_a_client_that_never_finishes_its_headers_is_disconnected(tmp_path: Path) -> None:
    # Given a listener whose idle (and first-request) timeout is 0.3 s
    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), keepalive_timeout=0.3) as rig:
            # When a client sends half a request line and stalls
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            writer.write(b"POST /push/huawei/voice HTTP/1.1\r\nHost: ")
            await writer.drain()

            # Then the listener hangs up on it, well before the test's own timeout
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()

    run(scenario)


# -- sink outages --------------------------------------------------------------------------------


def test_during_a_sink_outage_the_push_gets_503_and_succeeds_once_the_sink_is_back(
    tmp_path: Path,
) -> None:
    # Given a fee push, and another process holding the SQLite database's write lock
    body = fee("outage-1@h", "outage-2@h")

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                # When Huawei pushes during the outage
                reply = await rig.post("/push/huawei/voice", body)

                # Then it is told to retry, without a resultcode, and nothing is stored
                assert reply.status == 503
                assert "resultcode" not in reply.json()
                assert "Retry-After" in reply.headers
                assert reply.headers["X-Consumer-Result"] == "transient"
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert rig.count("call_events") == rig.count("dead_letters") == 0

            # When it pushes the same body again after the outage
            retry = await rig.post("/push/huawei/voice", body)

            # Then both records are stored
            assert retry.status == 200
            assert {r[0] for r in rig.rows("SELECT call_id FROM call_events")} == {
                "outage-1@h",
                "outage-2@h",
            }

    run(scenario)


def test_concurrent_pushes_during_an_outage_all_get_503_and_none_is_lost(tmp_path: Path) -> None:
    # Given 20 distinct pushes and a locked database
    bodies = [status(f"lost-{n}@h") for n in range(20)]

    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                # When they all arrive at once
                replies = await asyncio.gather(*(rig.post("/push/huawei/voice", b) for b in bodies))
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            # Then every one is told to retry
            assert [r.status for r in replies] == [503] * 20
            # and when the sender retries after the outage, every one is stored
            again = await asyncio.gather(*(rig.post("/push/huawei/voice", b) for b in bodies))
            assert [r.status for r in again] == [200] * 20
            assert rig.count("call_events") == 20

    run(scenario)


# -- health, readiness, metrics -----------------------------------------------------------------


def test_health_readiness_and_metrics_are_served_on_the_same_listener(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            await rig.post("/push/huawei/voice", status("metric@h"))
            await rig.post("/push/nowhere", b"{}")

            # When the operator's probes ask
            health = await rig.get("/healthz")
            ready = await rig.get("/readyz")
            metrics = await rig.get("/metrics")

            # Then the process is alive and the sink reachable
            assert (health.status, ready.status) == (200, 200)
            # and the request counters are exposed in Prometheus' text format
            assert metrics.status == 200
            assert metrics.headers["Content-Type"].startswith("text/plain")
            text = metrics.body.decode()
            assert 'consumer_push_requests_total{code="200",queue="huawei-voice"}' in text
            assert 'consumer_push_requests_total{code="404",queue="unmatched"}' in text
            assert "consumer_push_batch_messages_count" in text
            # and a probe path does not take pushes
            assert (await rig.post("/healthz", b"{}")).status == 405

    run(scenario)


def test_readiness_fails_when_the_database_cannot_be_opened(tmp_path: Path) -> None:
    # Given a sink whose database directory disappeared
    gone = tmp_path / "gone"
    gone.mkdir()
    probe_sink = open_sqlite(f"sqlite:///{gone / 'events.db'}")
    gone.rmdir()

    async def scenario() -> None:
        async with serving(
            tmp_path, every_queue(), ready=lambda: probe_sink.dead_letters([0])
        ) as rig:
            # When the readiness probe asks, then it is told the sink is unavailable
            ready = await rig.get("/readyz")
            assert ready.status == 503
            assert b"sink unavailable" in ready.body
            # while the liveness probe still answers
            assert (await rig.get("/healthz")).status == 200

    run(scenario)
    probe_sink.close()


def test_a_queue_path_on_a_reserved_or_used_path_is_a_config_error(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    sink = open_sqlite(f"sqlite:///{db}")
    # (the config refuses /metrics too; the listener holds on its own for endpoints built in code)
    probe = push_endpoint(queue("probe", "moor7.event", "/push/probe"), sink)
    reserved = dataclasses.replace(probe, path="/metrics/")
    first = push_endpoint(queue("one", "moor7.event", "/push/a"), sink)
    second = push_endpoint(queue("two", "moor7.event", "/push/a/"), sink)
    try:
        # When a listener is built over a queue at /metrics, then the error names the key path
        with pytest.raises(ConfigError, match=r"queues\.probe\.http\.path"):
            PushServer([reserved], listen="127.0.0.1:0")
        # and two queues on the same path (up to a trailing slash) are refused
        with pytest.raises(ConfigError, match="already the path of queue one"):
            PushServer([first, second], listen="127.0.0.1:0")
    finally:
        for endpoint in (probe, first, second):
            endpoint.commits.close()
        sink.close()


def test_a_port_already_taken_is_a_clear_start_up_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, every_queue()) as rig:
            # Given a listener on a port, when a second one starts on the same port
            db = tmp_path / "other.db"
            sink = open_sqlite(f"sqlite:///{db}")
            other = PushServer([], listen=f"127.0.0.1:{rig.server.port}")
            # Then start-up fails naming http.listen
            with pytest.raises(ConfigError, match=r"http\.listen.*cannot listen"):
                await other.start()
            await other.close()
            sink.close()

    run(scenario)


# -- PostgreSQL, through a TCP proxy that can be cut -----------------------------------------------

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema of this test's own in the `test` database, dropped afterwards."""
    admin_url = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"this test needs PostgreSQL at {admin_url}: {exc}")
    schema = f"http_push_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.mark.postgres
def test_into_postgresql_a_cut_connection_answers_503_and_the_retry_is_stored(
    pg_schema: str,
) -> None:
    # Given the listener storing into PostgreSQL through a TCP proxy
    body = fee("pg-1@h", "pg-2@h")

    async def scenario() -> None:
        with TcpProxy(POSTGRES_HOST, POSTGRES_PORT) as proxy:
            url = (
                f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
                f"?options=-csearch_path%3D{pg_schema}"
            )
            sink = PostgresSink(url, connect_timeout=1, acquire_timeout=1)
            sink.migrate()
            endpoint = push_endpoint(
                queue("huawei-voice", "huawei.voice_call", "/push/huawei/voice"), sink
            )
            server = PushServer([endpoint], listen="127.0.0.1:0", shutdown_timeout=2.0)
            await server.start()
            try:
                async with aiohttp.ClientSession() as session:

                    async def push() -> int:
                        async with session.post(
                            server.url + "/push/huawei/voice",
                            data=body,
                            headers={"Content-Type": JSON},
                        ) as reply:
                            return reply.status

                    # When the network to the database is cut during a push
                    proxy.cut()
                    during = await push()
                    # and restored before Huawei's retry
                    proxy.restore()
                    after = await push()
            finally:
                await server.close()
                sink.close()

        # Then the push during the outage was told to retry, and the retry stored both records
        assert (during, after) == (503, 200)
        direct = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
        with psycopg.connect(direct) as conn:
            rows = conn.execute(
                f'SELECT call_id FROM "{pg_schema}".call_events ORDER BY call_id'
            ).fetchall()
        assert rows == [("pg-1@h",), ("pg-2@h",)]

    run(scenario)


def test_a_brief_lock_is_retried_in_place_and_answered_200(tmp_path: Path) -> None:
    # Given a database that is locked for the first store attempt only
    def wrap(sink: Sink) -> Sink:
        return FaultySink(sink, lock_errors=1)

    async def scenario() -> None:
        async with serving(tmp_path, every_queue(), wrap=wrap) as rig:
            # When a push arrives
            reply = await rig.post("/push/huawei/voice", fee("brief@h"))

            # Then the pipeline retries within the push's budget and the push is stored at once
            assert reply.status == 200
            assert rig.rows("SELECT call_id FROM call_events") == [("brief@h",)]

    run(scenario)


# -- from a configuration file ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_listener_built_from_a_config_file_serves_its_http_queues(tmp_path: Path) -> None:
    # Given a configuration with two push queues and an MNS queue, the token from the environment
    port = free_port()
    config_file = tmp_path / "consumer.yaml"
    config_file.write_text(
        f"""
sink: {{url: "sqlite:///{tmp_path / "events.db"}"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: huawei-voice
    source: http
    format: huawei.voice_call
    http: {{path: /push/huawei/voice, auth: {{mode: token, token: "${{PUSH_TOKEN}}"}}}}
  - name: moor7
    source: http
    format: moor7.event
    http: {{path: /push/7moor}}
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:1
      queue: Alicom-Queue-1-VoiceReport
      auth: {{mode: access_key, access_key_id: id, access_key_secret: secret}}
"""
    )
    token = "Config-Token-0123456789"
    config = load_config(config_file, env={"PUSH_TOKEN": token})
    sink = open_sqlite(config.sink.url)
    sink.migrate()
    server = push_server(config, sink)
    # Then only the http queues get a path
    assert [e.queue for e in server.endpoints] == ["huawei-voice", "moor7"]

    async def scenario() -> None:
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{port}"
                # When Huawei pushes to its URL with the token from the environment
                async with session.post(
                    f"{base}/push/huawei/voice/{token}",
                    data=status("config@h"),
                    headers={"Content-Type": JSON},
                ) as reply:
                    assert reply.status == 200
                async with session.get(f"{base}/readyz") as ready:
                    assert ready.status == 200
        finally:
            await server.close()

    run(scenario)
    sink.close()
    # Then the event is in the configured database
    with sqlite3.connect(tmp_path / "events.db") as conn:
        assert conn.execute("SELECT call_id, queue FROM call_events").fetchall() == [
            ("config@h", "huawei-voice")
        ]


# -- whatever the body, a 200 means stored or quarantined byte for byte -------------------------


class BackgroundRig:
    """A `serving` rig on an event loop of its own thread, so hypothesis can drive it."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._stack = AsyncExitStack()
        self.rig: Rig = self.call(self._stack.enter_async_context(serving(tmp_path, every_queue())))

    def call(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(20)

    def close(self) -> None:
        self.call(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


SAMPLE_BODIES = [body for _, _, body in samples("huawei.")] + [
    body for _, _, body in samples("moor7.")
]
BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(SAMPLE_BODIES),
    st.sampled_from(SAMPLE_BODIES).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
)


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundRig]:
    rig = BackgroundRig(tmp_path_factory.mktemp("push-property"))
    yield rig
    rig.close()


PROPERTY_PATHS = {
    "/push/huawei/voice": "huawei.voice_call",
    "/push/huawei/privacy": "huawei.privacy_number",
    "/push/7moor": "moor7.event",
}


@settings(max_examples=60, deadline=None)
@given(body=BODIES, path=st.sampled_from(sorted(PROPERTY_PATHS)))
def test_any_body_is_answered_200_only_once_it_is_stored_or_quarantined(
    background: BackgroundRig, body: bytes, path: str
) -> None:
    rig = background.rig
    # When any body is pushed to a queue
    reply = background.call(rig.post(path, body))

    # Then the answer is 200, and what it says is in the database: every event of the body
    # (stored by this request, or already by an earlier push of the same content), or the
    # body itself in dead_letters under the request's id
    assert reply.status == 200
    request_id = reply.headers["X-Request-Id"]
    if reply.headers["X-Consumer-Result"] == "stored":
        ids = [n.event.event_id for n in get_format(PROPERTY_PATHS[path]).parse(body)]
        marks = ",".join("?" * len(ids))
        found = rig.rows(f"SELECT count(*) FROM call_events WHERE event_id IN ({marks})", *ids)
        assert found[0][0] == len(set(ids))
    else:
        assert reply.headers["X-Consumer-Result"] == "dead_lettered"
        payload = rig.rows("SELECT payload FROM dead_letters WHERE message_id = ?", request_id)
        assert payload == [(body,)]


# -- small pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses_are_split_into_host_and_port(
    listen: str, expected: tuple[str, int]
) -> None:
    # Given an http.listen value, when it is parsed, then host and port come apart
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8080", ":8080", "host:", "host:http"])
def test_a_listen_address_without_host_and_port_is_a_config_error(listen: str) -> None:
    # Given a malformed http.listen, when it is parsed, then the error names the key
    with pytest.raises(ConfigError, match=r"http\.listen: not HOST:PORT"):
        parse_listen(listen)


def test_the_allowlist_matches_ipv4_ipv6_and_ipv4_mapped_clients(tmp_path: Path) -> None:
    # Given a queue open to one IPv4 and one IPv6 network
    sink = open_sqlite(f"sqlite:///{tmp_path / 'events.db'}")
    endpoint = push_endpoint(
        queue("q", "moor7.event", "/p", allow_from=["203.0.113.0/24", "2001:db8::/32"]), sink
    )
    try:
        # When clients connect, then only addresses inside them (IPv4-mapped too) are let in
        assert endpoint.allows("203.0.113.7")
        assert endpoint.allows("::ffff:203.0.113.7")
        assert endpoint.allows("2001:db8::1")
        assert not endpoint.allows("198.51.100.1")
        assert not endpoint.allows("::1")
        assert not endpoint.allows(None)
        assert not endpoint.allows("not-an-address")
    finally:
        endpoint.commits.close()
        sink.close()


# -- bytes in flight, start-up and readiness -----------------------------------------------------


def test_a_body_past_the_listeners_cap_is_answered_503_and_the_bytes_come_back(
    tmp_path: Path,
) -> None:
    # Given a listener that holds at most 1000 body bytes, and a sender stalled after 800
    async def scenario() -> None:
        async with serving(tmp_path, [queue("moor7", "moor7.event", "/p")]) as rig:
            rig.server.bodies.limit = 1000
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            head = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            writer.write(head + b"Content-Length: 900\r\n\r\n" + b" " * 800)
            await writer.drain()
            while rig.server.bodies.used < 800:
                await asyncio.sleep(0.01)
            # When another body would pass the cap
            refused = await rig.post("/p", b'{"pushType": "' + b"x" * 300 + b'"}')
            # Then it is answered 503 at once, and nothing of it is stored
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "5"
            assert rig.count("dead_letters") == rig.count("call_events") == 0
            # When the stalled sender finishes, its bytes come back and pushes go through
            writer.write(b" " * 100)
            await writer.drain()
            first = await reader.readline()
            writer.close()
            assert first.startswith(b"HTTP/1.1 200")  # quarantined: 900 spaces are no JSON
            while rig.server.bodies.used:
                await asyncio.sleep(0.01)
            assert (await rig.post("/p", status("s-after"))).status == 200

    run(scenario)


def test_a_listener_waiting_for_its_database_serves_health_but_takes_no_push(
    tmp_path: Path,
) -> None:
    # Given a listener started before its database is ready
    async def scenario() -> None:
        async with serving(tmp_path, [queue("moor7", "moor7.event", "/p")]) as rig:
            rig.server.accepting = False
            # When it is probed and pushed to, Then it is alive, not ready, and stores nothing
            assert (await rig.get("/healthz")).status == 200
            assert (await rig.get("/readyz")).status == 503
            assert (await rig.post("/p", status("s-early"))).status == 503
            assert rig.count("call_events") == 0
            # When the database is ready, Then it takes pushes
            rig.server.accept()
            assert (await rig.get("/readyz")).status == 200
            assert (await rig.post("/p", status("s-later"))).status == 200

    run(scenario)


def test_readyz_after_a_failed_commit_is_ready_only_once_a_write_goes_through(
    tmp_path: Path,
) -> None:
    # Given a listener whose database reads but takes no write (another writer holds the lock)
    async def scenario() -> None:
        async with serving(tmp_path, [queue("moor7", "moor7.event", "/p")]) as rig:
            sink = rig.server.endpoints[0].commits.pipeline.sink
            assert isinstance(rig.server.service, Probes)
            rig.server.service.write_probe = getattr(sink, "write_probe", None)
            assert (await rig.get("/readyz")).status == 200
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                # When a push fails to commit, Then /readyz says so, though a read still works
                assert (await rig.post("/p", status("s-locked"))).status == 503
                assert (await rig.get("/readyz")).status == 503
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            # When writes go through again, Then it is ready without waiting for a push
            assert (await rig.get("/readyz")).status == 200

    run(scenario)


def test_a_stored_push_is_answered_with_the_same_head_byte_for_byte(tmp_path: Path) -> None:
    # Given a listener, and a Huawei push sent on a raw connection
    fmt, _, body = next(s for s in samples("huawei.voice_call") if ".invalid." not in s[1])

    async def scenario() -> bytes:
        async with serving(tmp_path, every_queue()) as rig:
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            writer.write(
                b"POST /push/huawei/voice HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            answer = await asyncio.wait_for(reader.readexactly(len(success_body(fmt))), 5)
            writer.close()
            await writer.wait_closed()
            assert answer == success_body(fmt)
            return head

    head = run(scenario).decode("latin-1").split("\r\n")
    # Then the status line and the headers, in their order, are those of the 200 answer
    # (the request id and the date vary)
    names = [line.split(":", 1)[0] for line in head[1:] if line]
    assert head[0] == "HTTP/1.1 200 OK"
    assert names == [
        "X-Request-Id",
        "X-Consumer-Result",
        "Content-Type",
        "Content-Length",
        "Date",
        "Server",
    ]
    assert "Content-Type: application/json; charset=utf-8" in head
    assert "X-Consumer-Result: stored" in head
    assert f"Content-Length: {len(success_body(fmt))}" in head


def test_a_push_cancelled_by_the_listener_shutdown_is_still_committed_before_close_returns(
    tmp_path: Path,
) -> None:
    # Given a listener that gives requests 0.3 s at shutdown, whose commit is held up by a lock
    db = tmp_path / "events.db"
    store = open_sqlite(f"sqlite:///{db}?timeout=10")
    store.migrate()
    sink = FaultySink(store)
    endpoint = push_endpoint(queue("huawei-voice", "huawei.voice_call", "/push/huawei/voice"), sink)

    async def scenario() -> tuple[bool, int]:
        server = PushServer([endpoint], listen="127.0.0.1:0", shutdown_timeout=0.3)
        await server.start()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        async with aiohttp.ClientSession() as session:
            push = asyncio.create_task(
                session.post(
                    server.url + "/push/huawei/voice",
                    data=status("shutdown@h"),
                    headers={"Content-Type": JSON},
                )
            )
            while sink.calls < 1:  # the commit waits for the lock
                await asyncio.sleep(0.01)
            # When the listener shuts down: the waiting handler is cancelled after 0.3 s
            closing = asyncio.create_task(server.close())
            await asyncio.sleep(1.0)
            # Then close still waits for the commit the push joined
            waited = not closing.done()
            blocker.execute("ROLLBACK")
            blocker.close()
            await asyncio.wait_for(closing, 10)
            with contextlib.suppress(aiohttp.ClientError):
                (await push).release()
        # and the push is stored
        return waited, sink.calls

    try:
        waited, calls = run(scenario)
    finally:
        store.close()
    assert waited
    assert calls == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM call_events").fetchone() == (1,)
