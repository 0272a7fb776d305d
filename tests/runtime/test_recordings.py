"""The recording archive in the real daemon (`consumer run`), fed by HTTP pushes, archiving from
a local file server and the Huawei download-URL peer into a file store; and a SIGKILL of the
daemon in the middle of a batch of downloads."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from consumer.archive.store import PARTIAL_DIR
from consumer.testing.fake_huawei_record import FakeHuaweiRecordApi
from consumer.testing.recording_server import File, RecordingServer, sha256
from tests.runtime.helpers import Daemon, free_port, wait_until

pytestmark = pytest.mark.timeout(180)

APP_KEY, APP_SECRET = "rec-app-key", "rec-app-secret"


@pytest.fixture
def files() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.stop(signal.SIGKILL)


def write_config(tmp_path: Path, port: int, huawei_endpoint: str, *, max_bytes: int) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "sqlite:///{tmp_path}/events.db"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: vms-record
    source: http
    format: aliyun.voice_record_report
    http: {{path: /push/record}}
  - name: privacy
    source: http
    format: huawei.privacy_number
    http: {{path: /push/privacy}}
recordings:
  store: {(tmp_path / "archive").as_uri()}
  allow_hosts: ["127.0.0.1"]
  max_bytes: {max_bytes}
  concurrency: 4
  retry: {{attempts: 4, initial: 100ms, max: 300ms}}
  huawei_privacy:
    endpoint: {huawei_endpoint}
    app_key: {APP_KEY}
    app_secret: {APP_SECRET}
"""
    )
    return path


def push(port: int, path: str, body: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()


def record_report(call_id: str, url: str) -> list[dict[str, str]]:
    return [
        {
            "call_id": call_id,
            "start_time": "2024-05-01 10:00:06",
            "end_time": "2024-05-01 10:00:36",
            "duration": "30",
            "status_code": "200000",
            "record_file": url,
        }
    ]


def privacy_fee(session_id: str, domain: str, name: str) -> dict[str, Any]:
    return {
        "eventType": "fee",
        "feeLst": [
            {
                "direction": 1,
                "sessionId": session_id,
                "callerNum": "+8613800000021",
                "calleeNum": "+8613800000022",
                "callInTime": "2019-01-24 02:30:03",
                "fwdAnswerTime": "2019-01-24 02:30:06",
                "callEndTime": "2019-01-24 02:30:22",
                "recordFlag": 1,
                "recordDomain": domain,
                "recordBucketName": "bucket",
                "recordObjectName": name,
            }
        ],
    }


def rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM recordings ORDER BY id")]


def pending(tmp_path: Path) -> int:
    return sum(1 for row in rows(tmp_path) if row["status"] == "pending")


def metrics(port: int) -> dict[tuple[str, str, str], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "le" in sample.labels:
                continue
            key = (sample.name, sample.labels.get("provider", ""), sample.labels.get("status", ""))
            found[key] = found.get(key, 0.0) + sample.value
    return found


def local(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


def final_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "archive"
    return sorted(p for p in root.rglob("*") if p.is_file() and PARTIAL_DIR not in p.parts)


def test_the_daemon_archives_every_recording_once_and_refuses_what_it_must(
    tmp_path: Path, files: RecordingServer, daemons: list[Daemon]
) -> None:
    # Given a file server with a plain, a redirected, a flaky, a gone, an oversized and a slow
    # file, a link to a host outside allow_hosts, and the Huawei download-URL peer
    plain = files.add("/r/plain.mp3", File(size=1_000_000))
    files.add("/r/target.mp3", File(size=50_000))
    moved = files.add("/r/moved", File(redirect="/r/target.mp3"))
    flaky = files.add("/r/flaky.mp3", File(size=20_000, fail_first=2))
    gone = files.add("/r/gone.mp3", File(status=404))
    huge = files.add("/r/huge.mp3", File(size=3_000_000))
    slow = files.add("/r/slow.mp3", File(size=8 * 65536, chunk_delay=0.05))
    files.add("/r/secret.mp3", File(size=10))
    refused = f"http://localhost:{files.address[1]}/r/secret.mp3"
    files.add("/obs.example.com/s1.wav", File(size=30_000, content_type="audio/wav"))
    port = free_port()
    with FakeHuaweiRecordApi(APP_KEY, APP_SECRET, files.base) as api:
        config = write_config(tmp_path, port, api.endpoint, max_bytes=2_000_000)
        daemon = Daemon(config, tmp_path)
        daemons.append(daemon)
        daemon.wait_ready()
        # When the events naming them are pushed, the plain one twice with re-signed links
        links = {"plain": plain, "moved": moved, "flaky": flaky, "gone": gone}
        links |= {"huge": huge, "slow": slow, "refused": refused}
        for call, url in links.items():
            push(port, "/push/record", record_report(call, url + "?Signature=one"))
        push(port, "/push/record", record_report("plain", plain + "?Signature=two"))
        push(port, "/push/privacy", privacy_fee("s1@x", "obs.example.com", "s1.wav"))
        wait_until(lambda: len(rows(tmp_path)) == 8 and pending(tmp_path) == 0, 60, "archiving")
        gauges = [("consumer_recordings_pending", p, "") for p in ("aliyun_vms", "huawei_privacy")]
        wait_until(
            lambda: [metrics(port).get(gauge) for gauge in gauges] == [0, 0], 30, "gauges at 0"
        )
        scraped = metrics(port)
        assert daemon.stop() == 0
    # Then each recording has one row with the status it deserves
    status = {row["call_id"]: row for row in rows(tmp_path)}
    assert {call: row["status"] for call, row in status.items()} == {
        "plain": "archived",
        "moved": "archived",
        "flaky": "archived",
        "gone": "expired",
        "huge": "failed",
        "slow": "archived",
        "refused": "refused",
        "s1@x": "archived",
    }
    assert status["flaky"]["attempts"] == 3
    # And every archived file is complete, with the checksum of what was served
    served = {
        "plain": ("/r/plain.mp3", 1_000_000),
        "moved": ("/r/target.mp3", 50_000),
        "flaky": ("/r/flaky.mp3", 20_000),
        "slow": ("/r/slow.mp3", 8 * 65536),
        "s1@x": ("/obs.example.com/s1.wav", 30_000),
    }
    for call, (path, size) in served.items():
        row = status[call]
        data = local(row["archive_uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256(path, size) == row["sha256"]
        assert row["bytes"] == size
    assert len(final_files(tmp_path)) == len(served)
    # And the plain file was fetched once although named twice; the refused host never
    assert files.hits["/r/plain.mp3"] == 1
    assert files.hits["/r/secret.mp3"] == 0
    # And the Huawei recording was resolved through a signature that verified
    assert [(r.file_name, r.denied) for r in api.requests] == [("s1.wav", None)]
    # And the calls point at their archived recordings
    with sqlite3.connect(tmp_path / "events.db") as db:
        uris = dict(db.execute("SELECT call_id, recording_archive_uri FROM calls").fetchall())
    assert {call: uris[call] for call in served} == {
        call: status[call]["archive_uri"] for call in served
    }
    # And /metrics counted each outcome per provider, with the pending gauges at 0
    vms = "aliyun_vms"
    assert scraped[("consumer_recordings_finished_total", vms, "archived")] == 4
    assert scraped[("consumer_recordings_finished_total", vms, "expired")] == 1
    assert scraped[("consumer_recordings_finished_total", vms, "failed")] == 1
    assert scraped[("consumer_recordings_finished_total", vms, "refused")] == 1
    assert scraped[("consumer_recordings_finished_total", "huawei_privacy", "archived")] == 1
    assert scraped[("consumer_recording_bytes_total", vms, "")] == 1_000_000 + 50_000 + 20_000 + (
        8 * 65536
    )
    assert scraped[("consumer_recording_download_seconds_count", vms, "")] == 4


def test_sigkill_mid_downloads_then_restart_archives_each_recording_exactly_once(
    tmp_path: Path, files: RecordingServer, daemons: list[Daemon]
) -> None:
    # Given eight slow recordings (2 s each), four downloading at a time
    size = 20 * 65536
    urls = {f"k{i}": files.add(f"/k/{i}.mp3", File(size=size, chunk_delay=0.1)) for i in range(8)}
    port = free_port()
    config = write_config(tmp_path, port, "http://127.0.0.1:9", max_bytes=10_000_000)
    daemon = Daemon(config, tmp_path)
    daemons.append(daemon)
    daemon.wait_ready()
    for call, url in urls.items():
        push(port, "/push/record", record_report(call, url))
    partial = tmp_path / "archive" / PARTIAL_DIR
    wait_until(
        lambda: any(p.stat().st_size > 0 for p in partial.iterdir()), 30, "downloads under way"
    )
    # When the listener and the supervisor are killed outright in the middle of them
    os.kill(daemon.worker_pids("listener")[-1], signal.SIGKILL)
    daemon.stop(signal.SIGKILL)
    killed_in_flight = [row["call_id"] for row in rows(tmp_path) if row["lease_owner"]]
    assert killed_in_flight  # the kill did interrupt downloads
    assert pending(tmp_path) == 8
    # And the daemon is started again
    again = Daemon(config, tmp_path)
    daemons.append(again)
    again.wait_ready()
    wait_until(lambda: pending(tmp_path) == 0, 90, "archiving after the restart")
    assert again.stop() == 0
    # Then every recording is archived exactly once, complete, under its own key
    final = rows(tmp_path)
    assert [row["status"] for row in final] == ["archived"] * 8
    objects = final_files(tmp_path)
    assert sorted(str(p) for p in objects) == sorted(
        str(local(row["archive_uri"])) for row in final
    )
    for row in final:
        data = local(row["archive_uri"]).read_bytes()
        path = urlsplit(urls[row["call_id"]]).path
        assert hashlib.sha256(data).hexdigest() == sha256(path, size) == row["sha256"]


def test_the_daemon_archives_into_an_s3_bucket(
    tmp_path: Path, files: RecordingServer, daemons: list[Daemon]
) -> None:
    # Given an S3-protocol peer (moto's server) with a bucket, and two recordings
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    try:
        host, s3_port = s3.get_host_and_port()
        endpoint = f"http://{host}:{s3_port}"
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="ak",
            aws_secret_access_key="sk",
        )
        client.create_bucket(Bucket="daemon-archive")
        sizes = {"s1": 300_000, "s2": 7 * 1024 * 1024}
        urls = {call: files.add(f"/s3/{call}.mp3", File(size=size)) for call, size in sizes.items()}
        port = free_port()
        config = write_config(tmp_path, port, "http://127.0.0.1:9", max_bytes=10_000_000)
        text = config.read_text().replace(
            f"  store: {(tmp_path / 'archive').as_uri()}\n",
            "  store: s3://daemon-archive/calls\n"
            f"  s3: {{endpoint: {endpoint}, region: us-east-1, addressing_style: path,"
            " access_key_id: ak, secret_access_key: sk-secret-value}\n",
        )
        config.write_text(text)
        daemon = Daemon(config, tmp_path)
        daemons.append(daemon)
        daemon.wait_ready()
        # When the events naming them are pushed
        for call, url in urls.items():
            push(port, "/push/record", record_report(call, url))
        wait_until(lambda: len(rows(tmp_path)) == 2 and pending(tmp_path) == 0, 60, "archiving")
        assert daemon.stop() == 0
        # Then both objects are in the bucket under their keys, complete
        for row in rows(tmp_path):
            assert row["status"] == "archived"
            assert row["archive_uri"].startswith("s3://daemon-archive/calls/aliyun_vms/")
            key = row["archive_uri"].removeprefix("s3://daemon-archive/")
            data = client.get_object(Bucket="daemon-archive", Key=key)["Body"].read()
            call = row["call_id"]
            expected = sha256(f"/s3/{call}.mp3", sizes[call])
            assert hashlib.sha256(data).hexdigest() == expected == row["sha256"]
        # And the secret key never reached the log
        assert "sk-secret-value" not in daemon.log_path.read_text()
    finally:
        s3.stop()
