"""A local Dybaseapi endpoint answering `QueryTokenForMnsQueue` (clients.md §1.3).

It accepts both wire forms (the new SDK's `x-acs-action` headers and the classic RPC query
string), skips signature checks, and issues STS triples that it registers with a
`FakeMnsServer`, so the whole Alicom token flow runs locally. Knobs produce the answers the
daemon must survive: `Code` other than OK with HTTP 200, HTTP 403
`InvalidAccessKeyId.NotFound`, 5xx, and short-lived tokens.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from consumer.testing._http import serve, shut
from consumer.testing.fake_mns import FakeMnsServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
ACTION = "QueryTokenForMnsQueue"
_CREDENTIAL = re.compile(r"Credential=([^,\s/]+)")
_ROA = re.compile(r"^acs\s+([^:\s]+):")


@dataclass(frozen=True)
class TokenRequest:
    """One token request as the fake saw it."""

    access_key_id: str | None
    action: str | None
    message_type: str | None
    queue_name: str | None
    form: str  # "acs3" (x-acs-* headers) or "rpc" (classic query string)
    status: int
    code: str


@dataclass(frozen=True)
class IssuedToken:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expires_at: float  # epoch seconds, whole seconds as ExpireTime carries them
    queue_name: str | None


@dataclass
class _Knobs:
    token_ttl: float = 3600.0
    answers: list[tuple[int, str, str]] = field(default_factory=list)


class FakeAlicomServer:
    """Dybaseapi on 127.0.0.1; the `auth.token_endpoint` is `endpoint`.

    `accounts` maps the customer's AccessKeyId to its secret (the secret is not checked);
    unknown ids get 403 InvalidAccessKeyId.NotFound. `clock` is epoch seconds and should be
    the `FakeMnsServer`'s clock, so tokens expire for both at the same instant.
    """

    def __init__(
        self,
        mns: FakeMnsServer | None = None,
        *,
        accounts: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        token_ttl: float = 3600.0,
    ) -> None:
        self._mns = mns
        self._accounts = dict(accounts or {})
        self._address = (host, port)
        self._clock = clock
        self._lock = threading.Lock()
        self._knobs = _Knobs(token_ttl=token_ttl)
        self._requests: list[TokenRequest] = []
        self._issued: list[IssuedToken] = []
        self._serial = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeAlicomServer:
        if self._server is not None:
            raise RuntimeError("the fake Alicom server is already running")
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server, self._thread = serve(self._address, Handler, "fake-alicom")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        shut(server, self._thread)

    def __enter__(self) -> FakeAlicomServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Alicom server is not running")
        return f"http://{self._address[0]}:{self._server.server_address[1]}"

    # -- knobs and introspection -----------------------------------------------------------

    def add_account(self, access_key_id: str, access_key_secret: str) -> None:
        with self._lock:
            self._accounts[access_key_id] = access_key_secret

    def set_token_ttl(self, seconds: float) -> None:
        """Lifetime of the tokens issued from now on (ExpireTime − CreateTime)."""
        with self._lock:
            self._knobs.token_ttl = seconds

    def answer_next(self, status: int, code: str, message: str = "", count: int = 1) -> None:
        """Answer the next `count` requests with this instead of a token.

        `status` 200 with a `code` other than OK is the "does not raise" case of
        clients.md §1.2; 4xx/5xx make the SDK raise.
        """
        with self._lock:
            self._knobs.answers.extend([(status, code, message or code)] * count)

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return list(self._issued)

    # -- the service -----------------------------------------------------------------------

    def handle(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        form = "acs3" if "x-acs-action" in headers else "rpc"
        action = headers.get("x-acs-action") or query.get("Action")
        authorization = headers.get("authorization", "")
        match = _CREDENTIAL.search(authorization) or _ROA.match(authorization)
        key_id = match.group(1) if match else query.get("AccessKeyId")
        message_type = query.get("MessageType")
        queue_name = query.get("QueueName")
        request_id = str(uuid.uuid4()).upper()
        status, body = self._answer(key_id, action, message_type, queue_name, request_id)
        with self._lock:
            self._requests.append(
                TokenRequest(
                    key_id, action, message_type, queue_name, form, status, str(body["Code"])
                )
            )
        return status, body

    def _answer(
        self,
        key_id: str | None,
        action: str | None,
        message_type: str | None,
        queue_name: str | None,
        request_id: str,
    ) -> tuple[int, dict[str, Any]]:
        def error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
            body: dict[str, Any] = {"RequestId": request_id, "Code": code, "Message": message}
            if status >= 400:
                body["HostId"] = "dybaseapi.aliyuncs.com"
            return status, body

        with self._lock:
            answer = self._knobs.answers.pop(0) if self._knobs.answers else None
            known = key_id in self._accounts
            ttl = self._knobs.token_ttl
        if answer is not None:
            return error(*answer)
        if action != ACTION:
            return error(400, "InvalidAction.NotFound", f"Specified api is not found: {action}")
        if not known:
            return error(403, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if not message_type:
            return error(400, "MissingMessageType", "MessageType is mandatory for this action.")
        now = int(self._clock())
        token = IssuedToken(
            access_key_id=f"STS.fake{next(self._serial):04d}{secrets.token_hex(4)}",
            access_key_secret=secrets.token_urlsafe(24),
            security_token="CAIS" + secrets.token_urlsafe(48),
            expires_at=float(now + int(ttl)),
            queue_name=queue_name,
        )
        if self._mns is not None:
            self._mns.add_credentials(
                token.access_key_id,
                token.access_key_secret,
                token.security_token,
                expires_at=token.expires_at,
                queues=[queue_name] if queue_name else None,
            )
        with self._lock:
            self._issued.append(token)
        return 200, {
            "RequestId": request_id,
            "Code": "OK",
            "Message": "OK",
            "MessageTokenDTO": {
                "AccessKeyId": token.access_key_id,
                "AccessKeySecret": token.access_key_secret,
                "SecurityToken": token.security_token,
                "CreateTime": shanghai_wall_time(now),
                "ExpireTime": shanghai_wall_time(token.expires_at),
            },
        }


def shanghai_wall_time(epoch: float) -> str:
    """`yyyy-MM-dd HH:mm:ss` in Asia/Shanghai, as Alicom writes CreateTime and ExpireTime."""
    return datetime.fromtimestamp(epoch, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeAlicomServer
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is `FakeAlicomServer.requests`."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _, _, raw_query = self.path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        content_type = self.headers.get("Content-Type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            query.update(parse_qsl(body.decode(), keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer = self.server_fake.handle(query, headers)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-acs-request-id", str(answer.get("RequestId", "")))
        self.end_headers()
        self.wfile.write(payload)


__all__ = ["ACTION", "FakeAlicomServer", "IssuedToken", "TokenRequest", "shanghai_wall_time"]
