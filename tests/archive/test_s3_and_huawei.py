"""The archive into a real S3-protocol peer (moto's server, through boto3 as a user would point
it at OSS or OBS), and Huawei Private Number recordings through the download-URL API peer."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from consumer.archive.store import S3Store
from consumer.config.model import RecordingsConfig
from consumer.sinks.sqlite import SqliteSink
from consumer.testing.fake_huawei_record import FakeHuaweiRecordApi
from consumer.testing.recording_server import File, RecordingServer, sha256
from tests.archive.conftest import archive_all, file_store, ready, settings, store_events
from tests.sinks.scenarios import event

KEY, SECRET = "test-ak", "test-sk"


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


def _s3_settings(endpoint: str, **overrides: Any) -> RecordingsConfig:
    s3 = {
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_id": KEY,
        "secret_access_key": SECRET,
        "addressing_style": "path",
    }
    return settings("s3://recordings/archive", s3=s3, **overrides)


def test_recordings_land_in_the_bucket_complete(
    files: RecordingServer, sink: SqliteSink, s3_endpoint: str
) -> None:
    # Given a bucket, a small recording and one large enough for a multipart upload (9 MB)
    _client(s3_endpoint).create_bucket(Bucket="recordings")
    small = files.add("/a.mp3", File(size=1234))
    large = files.add("/b.wav", File(size=9 * 1024 * 1024 + 5, content_type="audio/wav"))
    store_events(sink, [ready("c1", small), ready("c2", large)])
    config = _s3_settings(s3_endpoint)
    store = S3Store("recordings", "archive", config.s3)
    sent: list[dict[str, str]] = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(dict(request.headers))
    )
    # When the archiver runs into an s3:// store
    rows = archive_all(sink, config, store)
    # Then each object is under its key, whole, with its checksum and content type
    assert [r.status for r in rows] == ["archived", "archived"]
    client = _client(s3_endpoint)
    by_call = {row.call_id: row for row in rows}
    expected = (("c1", "/a.mp3", 1234), ("c2", "/b.wav", 9 * 1024 * 1024 + 5))
    for call_id, path, size in expected:
        row = by_call[call_id]
        assert row.archive_uri is not None
        assert row.archive_uri.startswith("s3://recordings/archive/aliyun_vms/")
        key = row.archive_uri.removeprefix("s3://recordings/")
        body = client.get_object(Bucket="recordings", Key=key)
        data = body["Body"].read()
        assert hashlib.sha256(data).hexdigest() == sha256(path, size) == row.sha256
        assert body["ContentType"] == row.content_type
    # And no upload carried the CRC checksums that OSS and OBS refuse
    assert len(sent) >= 4  # one PUT, and the multipart upload's create, two parts, complete
    assert not [name for headers in sent for name in headers if "checksum" in name.lower()]
    # And nothing else is in the bucket
    listed = client.list_objects_v2(Bucket="recordings")["Contents"]
    assert len(listed) == 2


def test_a_missing_bucket_is_retried_then_failed(
    files: RecordingServer, sink: SqliteSink, s3_endpoint: str
) -> None:
    # Given a bucket that does not exist (moto's state is per process: a name no test creates)
    store_events(sink, [ready("c1", files.add("/a.mp3", File(size=10)))])
    config = _s3_settings(s3_endpoint, retry={"attempts": 2, "initial": "10ms", "max": "10ms"})
    # When the archiver runs
    (row,) = archive_all(sink, config, S3Store("never-created", "", config.s3))
    # Then the upload's error is the reason it failed
    assert (row.status, row.attempts) == ("failed", 2)
    assert "NoSuchBucket" in (row.last_error or "")


def _privacy_record(call_id: str, domain: str, name: str) -> Any:
    return event(
        "call.record",
        "huawei_privacy",
        call_id,
        1,
        extras={"recordDomain": domain, "recordObjectName": name, "recordBucketName": "b"},
    )


def test_a_private_number_recording_is_resolved_through_the_signed_api(
    files: RecordingServer, sink: SqliteSink, tmp_path: Any
) -> None:
    # Given the API peer, whose 301 points at the file server (a host not in allow_hosts:
    # the API's answer is trusted configuration)
    files.add("/obs.example.com/1200_x.wav", File(size=4000, content_type="audio/wav"))
    location_base = f"http://localhost:{files.address[1]}"
    with FakeHuaweiRecordApi("app-key", "app-secret", location_base) as api:
        store_events(sink, [_privacy_record("s1", "obs.example.com", "1200_x.wav")])
        huawei = {"endpoint": api.endpoint, "app_key": "app-key", "app_secret": "app-secret"}
        root = tmp_path / "r"
        # When the archiver runs
        (row,) = archive_all(sink, settings(root.as_uri(), huawei_privacy=huawei), file_store(root))
    # Then the API was asked once, with a signature that verified, and the file is archived
    assert [(r.record_domain, r.file_name, r.denied) for r in api.requests] == [
        ("obs.example.com", "1200_x.wav", None)
    ]
    assert (row.status, row.sha256) == ("archived", sha256("/obs.example.com/1200_x.wav", 4000))
    assert row.archive_uri is not None
    assert row.archive_uri.endswith(".wav")


def test_a_wrong_app_secret_is_refused_by_the_api_and_retried(
    files: RecordingServer, sink: SqliteSink, tmp_path: Any
) -> None:
    # Given credentials the API does not accept
    with FakeHuaweiRecordApi("app-key", "app-secret", files.base) as api:
        store_events(sink, [_privacy_record("s1", "d.example.com", "a.wav")])
        huawei = {"endpoint": api.endpoint, "app_key": "app-key", "app_secret": "wrong"}
        root = tmp_path / "r"
        config = settings(
            root.as_uri(),
            huawei_privacy=huawei,
            retry={"attempts": 2, "initial": "10ms", "max": "10ms"},
        )
        # When the archiver runs
        (row,) = archive_all(sink, config, file_store(root))
    # Then every request was denied for its digest, and the row failed with the API's answer
    assert [r.denied.split(":")[0] if r.denied else None for r in api.requests] == [
        "bad_digest",
        "bad_digest",
    ]
    assert (row.status, row.last_http_status) == ("failed", 401)


def test_without_huawei_credentials_a_private_number_recording_fails_at_once(
    sink: SqliteSink, tmp_path: Any
) -> None:
    # Given no huawei_privacy section
    store_events(sink, [_privacy_record("s1", "d.example.com", "a.wav")])
    root = tmp_path / "r"
    # When the archiver runs, Then the row fails on its first attempt, saying what is missing
    (row,) = archive_all(sink, settings(root.as_uri()), file_store(root))
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "recordings.huawei_privacy is not configured"
