"""Aliyun VMS receipts by HTTP batch push, served from the shipped sample configuration.

Aliyun waits 700 ms for `HTTP 200` with a numeric `code` and retries otherwise
(help.aliyun.com/zh/vms/developer-reference/http-batch-delivery-mode-1). The latency figure is
bench/bench_aliyun_push.py's; this test checks what the answer is under that load.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp

from consumer.config.load import load_config
from consumer.runtime.push import push_server
from tests.sources.test_http import JSON, free_port, open_sqlite, run

REPO = Path(__file__).parents[2]
SAMPLES = REPO / "consumer" / "testing" / "samples"
TOKEN = "Aliyun-Push-Token-0123456789"
CONCURRENCY = 64


def page_batch(n: int) -> bytes:
    """The voicereport-6 page example as Aliyun would push it for call `n`: a JSON array."""
    [record] = json.loads((SAMPLES / "aliyun.voice_report.vms_push.json").read_bytes())
    record["call_id"] = f"122628733198^{n:014d}"
    return json.dumps([record], ensure_ascii=False).encode("utf-8")


def test_64_concurrent_pushes_are_all_answered_with_the_documented_body(tmp_path: Path) -> None:
    # Given the shipped config/aliyun-vms-push.yaml, on a free local port and a SQLite file,
    text = (REPO / "config" / "aliyun-vms-push.yaml").read_text(encoding="utf-8")
    text = text.replace("0.0.0.0:8080", f"127.0.0.1:{free_port()}")
    text = text.replace(
        "postgresql://consumer:${PG_PASSWORD}@127.0.0.1:5432/calls",
        f"sqlite:///{tmp_path / 'events.db'}",
    )
    config_file = tmp_path / "consumer.yaml"
    config_file.write_text(text, encoding="utf-8")
    config = load_config(config_file, env={"ALIYUN_PUSH_TOKEN": TOKEN})
    sink = open_sqlite(config.sink.url)
    sink.migrate()
    server = push_server(config, sink)
    bodies = [page_batch(n) for n in range(CONCURRENCY)]

    async def scenario() -> list[tuple[int, bytes]]:
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{server.port}/push/aliyun/voice-report/{TOKEN}"

                async def push(body: bytes) -> tuple[int, bytes]:
                    headers = {"Content-Type": JSON}
                    async with session.post(url, data=body, headers=headers) as reply:
                        return reply.status, await reply.read()

                # When Aliyun pushes 64 batches at once,
                return await asyncio.gather(*(push(body) for body in bodies))
        finally:
            await server.close()

    replies = run(scenario)
    sink.close()
    # Then every push is answered 200 with the body the page documents,
    assert [status for status, _ in replies] == [200] * CONCURRENCY
    assert {json.loads(body)["code"] for _, body in replies} == {0}
    assert {body for _, body in replies} == {'{"code": 0, "msg": "接收成功"}'.encode()}
    # and each record is stored answered, at its b_start_time, under its own call.
    with sqlite3.connect(tmp_path / "events.db") as conn:
        rows = conn.execute("SELECT call_id, answered_at, outcome FROM calls").fetchall()
    assert len(rows) == CONCURRENCY
    assert {(answered, outcome) for _, answered, outcome in rows} == {
        ("2021-04-28T02:03:40.000000Z", "answered")
    }
