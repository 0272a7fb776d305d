"""The archiver end to end in one process: real sockets to a local file server, real files."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from prometheus_client import CollectorRegistry

from consumer.archive.metrics import ArchiveMetrics
from consumer.archive.store import PARTIAL_DIR
from consumer.archive.worker import Archiver
from consumer.model import Provider
from consumer.sinks.recordings import RecordingTable
from consumer.sinks.sqlite import SqliteSink
from consumer.testing.recording_server import File, RecordingServer, sha256
from tests.archive.conftest import archive_all, file_store, ready, settings, store_events


def _local(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


def test_files_arrive_complete_with_their_checksum(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given two recordings, one 3 MB and one behind a redirect
    big = files.add("/rec/big.mp3", File(size=3_000_000 + 17))
    files.add("/rec/moved.wav", File(size=70_000, content_type="audio/wav"))
    moved = files.add("/old/moved", File(redirect=files.base + "/rec/moved.wav"))
    store_events(sink, [ready("c1", big + "?Signature=x"), ready("c2", moved)])
    root = tmp_path / "rec"
    # When the archiver runs
    rows = archive_all(sink, settings(root.as_uri()), file_store(root))
    # Then both are archived, with the bytes and checksum of what the server sent
    by_call = {row.call_id: row for row in rows}
    assert [row.status for row in rows] == ["archived", "archived"]
    assert by_call["c1"].sha256 == sha256("/rec/big.mp3", 3_000_017)
    assert by_call["c2"].sha256 == sha256("/rec/moved.wav", 70_000)
    for row in rows:
        assert row.archive_uri is not None
        data = _local(row.archive_uri).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (row.bytes, row.sha256)
    # And the keys are provider/day/call id/digest.ext, the extension from the link
    assert by_call["c1"].archive_uri is not None
    relative = _local(by_call["c1"].archive_uri).relative_to(root).parts
    assert (relative[0], relative[2]) == ("aliyun_vms", "c1")
    assert relative[3].endswith(".mp3")
    # And nothing is left in the partial directory
    assert list((root / PARTIAL_DIR).iterdir()) == []


def test_a_link_failing_twice_is_archived_on_the_third_attempt(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given a link answering 503 twice
    url = files.add("/flaky.mp3", File(size=1000, fail_first=2))
    store_events(sink, [ready("c1", url)])
    # When the archiver runs
    (row,) = archive_all(sink, settings((tmp_path / "r").as_uri()), file_store(tmp_path / "r"))
    # Then it retried and archived it
    assert (row.status, row.attempts, files.hits["/flaky.mp3"]) == ("archived", 3, 3)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_a_gone_answer_after_an_earlier_failure_is_expired(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path, status: int
) -> None:
    # Given a link that answers 403, 404 or 410
    url = files.add("/gone.mp3", File(status=status))
    store_events(sink, [ready("c1", url)])
    # When the archiver runs
    (row,) = archive_all(sink, settings((tmp_path / "r").as_uri()), file_store(tmp_path / "r"))
    # Then the second such answer ends it expired, with the reason
    assert (row.status, row.attempts, row.last_http_status) == ("expired", 2, status)
    assert row.last_error == f"HTTP {status}"


def test_a_server_error_past_the_budget_is_failed(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given a link that always answers 500
    url = files.add("/broken.mp3", File(status=500))
    store_events(sink, [ready("c1", url)])
    # When the archiver runs with 4 attempts
    (row,) = archive_all(sink, settings((tmp_path / "r").as_uri()), file_store(tmp_path / "r"))
    # Then it ends failed after 4 attempts, saying so
    assert (row.status, row.attempts, files.hits["/broken.mp3"]) == ("failed", 4, 4)
    assert row.last_error == "HTTP 500 (after 4 attempts)"


def test_an_oversized_file_is_cut_and_failed(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given a declared and an undeclared length over max_bytes
    declared = files.add("/big.mp3", File(size=300_000))
    streamed = files.add("/big2.mp3", File(size=300_000, declare_length=False))
    store_events(sink, [ready("c1", declared), ready("c2", streamed)])
    root = tmp_path / "r"
    # When the archiver runs with max_bytes 100000
    rows = archive_all(sink, settings(root.as_uri(), max_bytes=100_000), file_store(root))
    # Then both fail at once, and nothing was stored
    by_call = {r.call_id: r for r in rows}
    assert [(r.status, r.attempts) for r in rows] == [("failed", 1), ("failed", 1)]
    assert by_call["c1"].last_error == "Content-Length 300000 is over max_bytes 100000"
    assert by_call["c2"].last_error == "cut at max_bytes 100000: the file is larger"
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_a_host_outside_allow_hosts_is_refused_without_being_contacted(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given a link to this server named as localhost (not allowed), and an allowed link that
    # redirects to it
    files.add("/secret.mp3", File(size=10))
    direct = f"http://localhost:{files.address[1]}/secret.mp3"
    bounce = files.add("/bounce", File(redirect=direct))
    store_events(sink, [ready("c1", direct), ready("c2", bounce)])
    # When the archiver runs
    root = tmp_path / "r"
    rows = archive_all(sink, settings(root.as_uri()), file_store(root))
    # Then both are refused, and the refused address was never requested
    assert [(r.status, r.attempts) for r in rows] == [("refused", 1), ("refused", 1)]
    for row in rows:
        assert row.last_error == "host 'localhost' is not in recordings.allow_hosts"
    assert files.hits["/secret.mp3"] == 0
    assert files.hits["/bounce"] == 1


def test_a_slow_file_does_not_hold_up_the_others(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given one slow file (20 chunks, 50 ms apart) and five quick ones
    slow = files.add("/slow.mp3", File(size=20 * 65536, chunk_delay=0.05))
    quick = [files.add(f"/q{i}.mp3", File(size=5000)) for i in range(5)]
    store_events(sink, [ready("slow", slow), *(ready(f"q{i}", u) for i, u in enumerate(quick))])
    # When the archiver runs
    root = tmp_path / "r"
    rows = archive_all(sink, settings(root.as_uri()), file_store(root))
    # Then every file is archived complete, the slow one included, and last
    assert {r.status for r in rows} == {"archived"}
    slow_row = next(r for r in rows if r.call_id == "slow")
    assert slow_row.sha256 == sha256("/slow.mp3", 20 * 65536)
    assert slow_row.archived_at is not None
    assert all(
        r.archived_at is not None and r.archived_at < slow_row.archived_at
        for r in rows
        if r is not slow_row
    )


def test_two_archivers_never_download_the_same_recording(
    files: RecordingServer, sink: SqliteSink, tmp_path: Path
) -> None:
    # Given a download (about 3 s) longer than the archivers' lease (2 s; renewed every 0.67 s,
    # leaving room for a loaded machine's scheduling stalls)
    url = files.add("/long.mp3", File(size=20 * 65536, chunk_delay=0.15))
    store_events(sink, [ready("c1", url)])
    root = tmp_path / "r"
    config, store, table = settings(root.as_uri()), file_store(root), RecordingTable(sink)

    async def main() -> None:
        archivers = [
            Archiver(config, table, store, lease_seconds=2.0, poll_seconds=0.05) for _ in range(2)
        ]
        tasks = [asyncio.create_task(archiver.run()) for archiver in archivers]
        try:
            async with asyncio.timeout(30):
                while await asyncio.to_thread(table.rows, "pending"):
                    await asyncio.sleep(0.05)
        finally:
            for archiver in archivers:
                archiver.stop()
            await asyncio.gather(*tasks)

    # When both run on the same table
    asyncio.run(main())
    # Then the holder renewed its lease: one attempt, one request, archived
    (row,) = table.rows()
    assert (row.status, row.attempts, files.hits["/long.mp3"]) == ("archived", 1, 1)


def test_a_started_archiver_exports_its_series_at_0(sink: SqliteSink, tmp_path: Path) -> None:
    # Given an archiver with nothing to archive
    root = tmp_path / "r"
    registry = CollectorRegistry()
    table = RecordingTable(sink)
    archiver = Archiver(
        settings(root.as_uri()),
        table,
        file_store(root),
        metrics=ArchiveMetrics(registry),
        poll_seconds=0.05,
    )

    async def main() -> None:
        task = asyncio.create_task(archiver.run())
        await asyncio.sleep(0.2)
        archiver.stop()
        await task

    # When it starts and runs a while
    asyncio.run(main())
    # Then every provider's final statuses, bytes and download histogram are series at 0
    for provider in Provider:
        labels = {"provider": provider.value}
        for status in ("archived", "failed", "expired", "refused"):
            finished = {**labels, "status": status}
            assert registry.get_sample_value("consumer_recordings_finished_total", finished) == 0
        assert registry.get_sample_value("consumer_recording_bytes_total", labels) == 0
        assert registry.get_sample_value("consumer_recording_download_seconds_count", labels) == 0
        bucket = {**labels, "le": "+Inf"}
        assert registry.get_sample_value("consumer_recording_download_seconds_bucket", bucket) == 0
