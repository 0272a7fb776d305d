"""Streaming a recording into a file: redirects followed by hand (each hop checked against
`allow_hosts` before it is contacted), cut at `max_bytes`, hashed on the way.

The file is written chunk by chunk (64 KiB), so memory stays flat whatever the file's size.
The writes happen on the event loop: a 64 KiB write into the page cache costs microseconds, and
the slow part, the fsync, runs in a thread when the store commits the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin

import aiohttp

from consumer.archive.hosts import HostPolicy
from consumer.errors import describe

CHUNK = 65536
MAX_REDIRECTS = 10
GONE = frozenset({403, 404, 410})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DownloadError(Exception):
    """One failed attempt; `kind` says what the archiver does next."""

    REFUSED = "refused"  # a host outside allow_hosts: final, never contacted
    GONE = "gone"  # 403/404/410: the link has (probably) expired
    TOO_LARGE = "too_large"  # past max_bytes: final
    ERROR = "error"  # anything else: retry
    FINAL = "final"  # cannot succeed as configured (no Huawei credentials): failed at once

    def __init__(self, kind: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Downloaded:
    size: int
    sha256: str
    content_type: str | None
    url: str
    """The last URL of the redirect chain (without its query, for logs)."""


async def download(
    session: aiohttp.ClientSession,
    url: str,
    into: BinaryIO,
    *,
    max_bytes: int,
    policy: HostPolicy | None,
) -> Downloaded:
    """GET `url` into `into`. `policy` None trusts the URL and its redirects (configuration)."""
    for _ in range(MAX_REDIRECTS + 1):
        if policy is not None and (why := policy.refusal(url)) is not None:
            raise DownloadError(DownloadError.REFUSED, why)
        try:
            async with session.get(url, allow_redirects=False) as response:
                target = _redirect(response, url)
                if target is None:
                    return await _save(response, url, into, max_bytes)
        except aiohttp.ClientError as exc:
            raise DownloadError(DownloadError.ERROR, describe(exc)) from exc
        except TimeoutError as exc:
            raise DownloadError(DownloadError.ERROR, "timed out") from exc
        url = target
    raise DownloadError(DownloadError.ERROR, f"more than {MAX_REDIRECTS} redirects")


def _redirect(response: aiohttp.ClientResponse, url: str) -> str | None:
    """Where a redirect points (checked by the caller before it is contacted), or None."""
    if response.status not in _REDIRECTS:
        return None
    location = response.headers.get("Location")
    if not location:
        raise DownloadError(
            DownloadError.ERROR, f"HTTP {response.status} without Location", response.status
        )
    return urljoin(url, location)


async def _save(
    response: aiohttp.ClientResponse, url: str, into: BinaryIO, max_bytes: int
) -> Downloaded:
    """The body of a final answer into `into`, refused before reading when it says it is too
    large, and cut as soon as it proves so."""
    if response.status in GONE:
        raise DownloadError(DownloadError.GONE, f"HTTP {response.status}", response.status)
    if response.status != 200:
        raise DownloadError(DownloadError.ERROR, f"HTTP {response.status}", response.status)
    length = response.content_length
    if length is not None and length > max_bytes:
        raise DownloadError(
            DownloadError.TOO_LARGE, f"Content-Length {length} is over max_bytes {max_bytes}", 200
        )
    digest = hashlib.sha256()
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise DownloadError(
                DownloadError.TOO_LARGE, f"cut at max_bytes {max_bytes}: the file is larger", 200
            )
        digest.update(chunk)
        into.write(chunk)
    if length is not None and size != length:
        raise DownloadError(DownloadError.ERROR, f"got {size} of {length} bytes", 200)
    content_type = (response.headers.get("Content-Type") or "")[:200] or None
    return Downloaded(size, digest.hexdigest(), content_type, url.split("?", 1)[0])


__all__ = ["GONE", "DownloadError", "Downloaded", "download"]
