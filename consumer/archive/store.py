"""Where archived recordings go: a local directory or an S3-compatible bucket.

Both write complete-or-absent: the download streams into a temporary file (beside the target
for `file://`, in the system temp directory for `s3://`), and only a complete, checksummed file
is renamed into place (fsynced, then its directory) or uploaded (S3 multipart uploads appear
only on completion). Nothing partial is ever under a final key. Keys are deterministic
(`provider/day/call id/digest.ext`), so a retried upload overwrites the same object.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from consumer.config.model import RecordingsConfig, RecordingsS3
from consumer.errors import ConfigError
from consumer.extras import require

PARTIAL_DIR = ".partial"
_SAFE = re.compile(r"[^A-Za-z0-9._@=-]")
_EXTENSIONS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/webm": "webm",
    "video/x-matroska": "mkv",
    "video/mp4": "mp4",
}
_KNOWN = frozenset(_EXTENSIONS.values()) | {"v3", "gsm", "flac", "opus"}


def extension(source: str, content_type: str | None) -> str:
    """From the link's (or object name's) suffix when it is a media one, else the content type."""
    path = urlsplit(source).path if "://" in source else source
    suffix = path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    if suffix in _KNOWN:
        return suffix
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(media, "bin")


def object_key(provider: str, day: datetime, call_id: str | None, digest: str, ext: str) -> str:
    """`provider/YYYY-MM-DD/call id/digest.ext`: the same recording always lands on one key."""
    call = _SAFE.sub("_", call_id or "_")[:128]
    if call.startswith("."):
        call = "_" + call[1:]
    return f"{_SAFE.sub('_', provider)}/{day:%Y-%m-%d}/{call}/{digest[:16]}.{ext}"


class Store(Protocol):
    def temporary(self) -> Path:
        """A new empty file to download into."""

    def commit(self, temporary: Path, key: str, content_type: str | None) -> str:
        """Make the complete file the object under `key` (blocking); its archive URI."""

    def discard(self, temporary: Path) -> None: ...


class FileStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.partial = self.root / PARTIAL_DIR

    def prepare(self, older_than: float = 3600.0) -> None:
        """Create the directories; drop partial files a crash left behind."""
        self.partial.mkdir(parents=True, exist_ok=True)
        limit = time.time() - older_than
        for stale in self.partial.iterdir():
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < limit:
                    stale.unlink()

    def temporary(self) -> Path:
        path = self.partial / f"{uuid.uuid4().hex}.part"
        path.touch(exist_ok=False)
        return path

    def commit(self, temporary: Path, key: str, content_type: str | None) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, target)
        _fsync_dir(target.parent)
        return target.as_uri()

    def discard(self, temporary: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


class S3Store:
    """boto3 (run in a thread by the caller): the library users point at OSS, OBS or AWS."""

    def __init__(self, bucket: str, prefix: str, settings: RecordingsS3 | None) -> None:
        require("s3", "recordings.store")
        import boto3  # noqa: PLC0415 - only an s3:// store needs it
        from botocore.config import Config as BotoConfig  # noqa: PLC0415

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        s3 = settings or RecordingsS3()
        # Recent boto3 adds CRC checksums to every upload, which OSS and OBS refuse: send them
        # only where an operation requires one.
        config = BotoConfig(
            s3={"addressing_style": s3.addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {"config": config}
        if s3.endpoint:
            kwargs["endpoint_url"] = s3.endpoint
        if s3.region:
            kwargs["region_name"] = s3.region
        if s3.access_key_id:
            kwargs["aws_access_key_id"] = s3.access_key_id
        if s3.secret_access_key is not None:
            kwargs["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
        self.client: Any = boto3.session.Session().client("s3", **kwargs)

    def temporary(self) -> Path:
        handle, name = tempfile.mkstemp(prefix="consumer-recording-", suffix=".part")
        os.close(handle)
        return Path(name)

    def commit(self, temporary: Path, key: str, content_type: str | None) -> str:
        full = f"{self.prefix}/{key}" if self.prefix else key
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.upload_file(str(temporary), self.bucket, full, ExtraArgs=extra)
        finally:
            self.discard(temporary)
        return f"s3://{self.bucket}/{full}"

    def discard(self, temporary: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def open_store(config: RecordingsConfig) -> FileStore | S3Store:
    parts = urlsplit(config.store)
    if parts.scheme == "file":
        store = FileStore(unquote(parts.path))
        try:
            store.prepare()
        except OSError as exc:
            raise ConfigError("recordings.store", f"cannot use {config.store}: {exc}") from exc
        return store
    if parts.scheme == "s3":
        return S3Store(parts.netloc, unquote(parts.path), config.s3)
    raise ConfigError("recordings.store", f"must start with file:/// or s3://: {config.store!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FileStore", "S3Store", "Store", "extension", "object_key", "open_store"]
