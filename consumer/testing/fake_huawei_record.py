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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from multidict import CIMultiDict

from consumer.sources.http_auth import Credentials, HuaweiAksk
from consumer.testing._http import serve, shut

RECORD_PATH = "/rest/provision/voice/record/v1.0"


@dataclass(frozen=True, slots=True)
class RecordRequest:
    record_domain: str | None
    file_name: str | None
    denied: str | None
    """Why the signature was refused, or None."""


class FakeHuaweiRecordApi:
    def __init__(
        self, app_key: str, app_secret: str, location_base: str, host: str = "127.0.0.1"
    ) -> None:
        self.checker = HuaweiAksk(app_key, app_secret, timedelta(minutes=5))
        self.location_base = location_base.rstrip("/")
        self.address = (host, 0)
        self.requests: list[RecordRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def start(self) -> FakeHuaweiRecordApi:
        owner = self

        class Handler(_Handler):
            api = owner

        self._server, self._thread = serve(self.address, Handler, "fake-huawei-record")
        self.address = (self.address[0], self._server.server_address[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut(self._server, self._thread)
            self._server = None

    def __enter__(self) -> FakeHuaweiRecordApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    api: FakeHuaweiRecordApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != RECORD_PATH:
            self._answer(404, {})
            return
        query = parse_qs(parts.query)
        domain = next(iter(query.get("recordDomain", [])), None)
        name = next(iter(query.get("fileName", [])), None)
        headers = CIMultiDict(self.headers.items())
        denied = self.api.checker.check(Credentials(headers, None))
        reason = None if denied is None else f"{denied.reason}: {denied.detail}"
        with self.api._lock:
            self.api.requests.append(RecordRequest(domain, name, reason))
        if denied is not None:
            self._answer(401, {})
        elif not domain or not name:
            self._answer(400, {})
        else:
            location = f"{self.api.location_base}/{quote(domain)}/{quote(name)}"
            self._answer(301, {"Location": location})

    def _answer(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


__all__ = ["RECORD_PATH", "FakeHuaweiRecordApi", "RecordRequest"]
