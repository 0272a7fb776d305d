"""The archiver against real peers: a local file server, a SQLite sink, a file store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer.archive.store import FileStore
from consumer.archive.worker import Archiver
from consumer.config.model import RecordingsConfig
from consumer.model import CallEvent
from consumer.sinks.recordings import Recording, RecordingTable
from consumer.sinks.sqlite import SqliteSink
from consumer.testing.recording_server import RecordingServer
from tests.sinks.scenarios import event, stored


@pytest.fixture
def files() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqliteSink]:
    sink = SqliteSink(tmp_path / "events.db")
    sink.migrate()
    yield sink
    sink.close()


def settings(store: str, **overrides: Any) -> RecordingsConfig:
    data: dict[str, Any] = {
        "store": store,
        "allow_hosts": ["127.0.0.1"],
        "retry": {"attempts": 4, "initial": "50ms", "max": "200ms"},
        "concurrency": 4,
        **overrides,
    }
    return RecordingsConfig.model_validate(data)


def ready(call_id: str, url: str, provider: str = "aliyun_vms") -> CallEvent:
    return event("recording.ready", provider, call_id, 1, recording_url=url)


def archive_all(
    sink: SqliteSink, config: RecordingsConfig, store: Any, timeout: float = 60.0
) -> list[Recording]:
    """Run an archiver until no row is pending; the rows then."""
    table = RecordingTable(sink)

    async def main() -> None:
        archiver = Archiver(config, table, store, poll_seconds=0.05)
        task = asyncio.create_task(archiver.run())
        try:
            async with asyncio.timeout(timeout):
                while await asyncio.to_thread(table.rows, "pending"):
                    await asyncio.sleep(0.05)
        finally:
            archiver.stop()
            await task

    asyncio.run(main())
    return table.rows()


def file_store(root: Path) -> FileStore:
    store = FileStore(root)
    store.prepare()
    return store


def store_events(sink: SqliteSink, events: list[CallEvent]) -> None:
    sink.store(stored(events), [])
