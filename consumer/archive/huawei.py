"""Huawei Private Number recordings: `recordDomain` + `recordObjectName` to a download link.

The "获取录音文件下载地址" API (GET /rest/provision/voice/record/v1.0?recordDomain=&fileName=,
signed with `X-AKSK`) answers `301` with the short-lived link in `Location`, so it is asked
right before each download. The signature is the one push requests carry
(`consumer.sources.http_auth.sign_huawei`): HMAC-SHA256(app_secret, Nonce + Created), base64.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode, urljoin

import aiohttp

from consumer.archive.download import GONE, DownloadError
from consumer.config.model import HuaweiPrivacyRecordings
from consumer.sources.http_auth import sign_huawei

RECORD_PATH = "/rest/provision/voice/record/v1.0"


def split_source(source: str) -> tuple[str, str]:
    """`recordDomain/recordObjectName` back into its two parts."""
    domain, _, name = source.partition("/")
    return domain, name


async def resolve(session: aiohttp.ClientSession, app: HuaweiPrivacyRecordings, source: str) -> str:
    """The download link of one recording (the API's 301 Location)."""
    domain, name = split_source(source)
    url = (
        app.endpoint.rstrip("/")
        + RECORD_PATH
        + "?"
        + urlencode({"recordDomain": domain, "fileName": name})
    )
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = sign_huawei(
        "X-AKSK",
        app.app_key,
        app.app_secret.get_secret_value(),
        nonce=secrets.token_hex(16),
        created=created,
    )
    headers["Content-Type"] = "application/json;charset=UTF-8"
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                return urljoin(url, location)
            text = (await response.content.read(300)).decode("utf-8", "replace").strip()
            kind = DownloadError.GONE if response.status in GONE else DownloadError.ERROR
            raise DownloadError(
                kind,
                f"download-URL API: HTTP {response.status} {text[:200]}".rstrip(),
                response.status,
            )
    except aiohttp.ClientError as exc:
        raise DownloadError(
            DownloadError.ERROR, f"download-URL API: {type(exc).__name__}: {exc}"
        ) from exc
    except TimeoutError as exc:
        raise DownloadError(DownloadError.ERROR, "download-URL API: timed out") from exc


__all__ = ["RECORD_PATH", "resolve", "split_source"]
