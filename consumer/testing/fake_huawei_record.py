"""A local peer of Huawei Private Number's "获取录音文件下载地址" API.

`GET /rest/provision/voice/record/v1.0?recordDomain=D&fileName=F` with an `X-AKSK` UsernameToken
(HMAC-SHA256 of Nonce + Created with the app secret, checked by the same code that checks
Huawei's pushes) is answered `301` with `Location: <location_base>/<D>/<F>`; a bad or missing
signature `401`, an unknown path `404`. `requests` records each call and its verdict.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

from multidict import CIMultiDict

from consumer.sources.http_auth import Credentials, HuaweiAksk
from consumer.testing._http import HttpPeer, QuietHandler

RECORD_PATH = "/rest/provision/voice/record/v1.0"


@dataclass(frozen=True, slots=True)
class RecordRequest:
    record_domain: str | None
    file_name: str | None
    denied: str | None
    """Why the signature was refused, or None."""


class FakeHuaweiRecordApi(HttpPeer):
    name = "fake-huawei-record"

    def __init__(
        self, app_key: str, app_secret: str, location_base: str, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host)
        self.checker = HuaweiAksk(app_key, app_secret, timedelta(minutes=5))
        self.location_base = location_base.rstrip("/")
        self.requests: list[RecordRequest] = []
        self._lock = threading.Lock()

    def _handler(self) -> type[_Handler]:
        return _Handler


class _Handler(QuietHandler):
    peer: FakeHuaweiRecordApi

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != RECORD_PATH:
            self._empty(404)
            return
        query = parse_qs(parts.query)
        domain = next(iter(query.get("recordDomain", [])), None)
        name = next(iter(query.get("fileName", [])), None)
        headers = CIMultiDict(self.headers.items())
        denied = self.peer.checker.check(Credentials(headers, None))
        reason = None if denied is None else f"{denied.reason}: {denied.detail}"
        with self.peer._lock:
            self.peer.requests.append(RecordRequest(domain, name, reason))
        if denied is not None:
            self._empty(401)
        elif not domain or not name:
            self._empty(400)
        else:
            location = f"{self.peer.location_base}/{quote(domain)}/{quote(name)}"
            self._empty(301, {"Location": location})


__all__ = ["RECORD_PATH", "FakeHuaweiRecordApi", "RecordRequest"]
