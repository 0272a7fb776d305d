"""A local Aliyun POP (RPC-style OpenAPI) endpoint: the Alicom token and two query APIs.

One server answers, by `Action`:
- `QueryTokenForMnsQueue` (Dybaseapi 2017-05-25): STS triples that it registers with a
  `FakeMnsServer`, so the whole Alicom token flow runs locally;
- `QueryCallDetailByCallId` (Dyvmsapi 2017-05-25) from a table of call details
  (`add_call_detail`): an unknown call, a wrong `ProdId` or a `QueryDate` whose 24 hours miss
  the call answer `Code` OK without `Data`, as the service does for a record not there yet;
- `DescribeJob` (OutboundBot 2019-12-26) from a table of jobs (`add_job`).

It accepts both wire forms (the new SDK's ACS3-HMAC-SHA256 `Authorization` header and the classic
RPC query string signed with HMAC-SHA1) and verifies the signature with the account's secret:
a wrong secret is refused with HTTP 400 `SignatureDoesNotMatch`, an unknown AccessKeyId with
HTTP 403 `InvalidAccessKeyId.NotFound`. Knobs produce the other answers a client must survive:
`Code` other than OK with HTTP 200, throttling, 5xx, and short-lived tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from consumer.testing._http import HttpPeer, QuietHandler
from consumer.testing.fake_mns import FakeMnsServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
ACTION = "QueryTokenForMnsQueue"
QUERY_CALL_DETAIL = "QueryCallDetailByCallId"
DESCRIBE_JOB = "DescribeJob"
_CREDENTIAL = re.compile(r"Credential=([^,\s/]+)")
_ACS3 = re.compile(
    r"^(ACS3-HMAC-SHA256) Credential=([^,\s]+),SignedHeaders=([^,\s]*),Signature=([0-9a-f]+)$"
)
_ROA = re.compile(r"^acs\s+([^:\s]+):")
_DAY_MS = 86_400_000


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
    params: dict[str, str] = field(default_factory=dict)


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
    query_delay: float = 0.0


class FakeAlicomServer(HttpPeer):
    """The POP endpoint on 127.0.0.1: `auth.token_endpoint`, and the `endpoint` of the
    `reconcile.aliyun_vms` and `reconcile.aliyun_outbound_bot` query clients.

    `accounts` maps the customer's AccessKeyId to its secret, which every request's signature
    must match; unknown ids get 403 InvalidAccessKeyId.NotFound. `clock` is epoch seconds and
    should be the `FakeMnsServer`'s clock, so tokens expire for both at the same instant.
    """

    name = "fake-alicom"

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
        super().__init__(host, port)
        self._mns = mns
        self._accounts = dict(accounts or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._knobs = _Knobs(token_ttl=token_ttl)
        self._requests: list[TokenRequest] = []
        self._issued: list[IssuedToken] = []
        self._call_details: dict[tuple[str, int], dict[str, Any]] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._in_flight: dict[str, int] = {}
        self._overlaps: list[str] = []
        self._serial = itertools.count(1)

    def _handler(self) -> type[_Handler]:
        return _Handler

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
        sdk-notes.md 1.2; 4xx/5xx make the SDK raise.
        """
        with self._lock:
            self._knobs.answers.extend([(status, code, message or code)] * count)

    def add_call_detail(self, call_id: str, prod_id: int, data: dict[str, Any]) -> None:
        """What `QueryCallDetailByCallId` answers for this call and product from now on.

        `data` is the object that `Data` carries as a JSON string (`callId`, `startDate`,
        `endDate`, `state`, `duration`, ...); its `gmtCreate` (or `startDate`), Asia/Shanghai
        wall time, must fall within the 24 hours after the request's `QueryDate`.
        """
        with self._lock:
            self._call_details[(call_id, prod_id)] = dict(data)

    def add_job(self, instance_id: str, job: dict[str, Any]) -> None:
        """What `DescribeJob` answers for `job["JobId"]` in this instance (the `Job` object)."""
        with self._lock:
            self._jobs[(instance_id, str(job["JobId"]))] = dict(job)

    def set_query_delay(self, seconds: float) -> None:
        """Hold every query answer this long (so that overlapping askers would show)."""
        with self._lock:
            self._knobs.query_delay = seconds

    @property
    def overlaps(self) -> list[str]:
        """The calls (`CallId`, or `JobId`) asked for again while a query for them was open."""
        with self._lock:
            return list(self._overlaps)

    def actions(self, action: str) -> list[TokenRequest]:
        """The requests for one `Action`, in arrival order."""
        return [request for request in self.requests if request.action == action]

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return list(self._issued)

    # -- the service -----------------------------------------------------------------------

    def handle(
        self,
        query: dict[str, str],
        headers: dict[str, str],
        signed: _Signed | None = None,
    ) -> tuple[int, dict[str, Any]]:
        form = "acs3" if "x-acs-action" in headers else "rpc"
        action = headers.get("x-acs-action") or query.get("Action")
        authorization = headers.get("authorization", "")
        match = _CREDENTIAL.search(authorization) or _ROA.match(authorization)
        key_id = match.group(1) if match else query.get("AccessKeyId")
        message_type = query.get("MessageType")
        queue_name = query.get("QueueName")
        request_id = str(uuid.uuid4()).upper()
        with self._lock:
            secret = self._accounts.get(key_id or "")
        if secret is not None and signed is not None and not signed.verify(secret):
            status, body = (
                400,
                {
                    "RequestId": request_id,
                    "Code": "SignatureDoesNotMatch",
                    "Message": "Specified signature is not matched with our calculation.",
                    "HostId": "pop.aliyuncs.com",
                },
            )
        elif action in (QUERY_CALL_DETAIL, DESCRIBE_JOB):
            status, body = self._query(key_id, action, query, request_id)
        else:
            status, body = self._answer(key_id, action, message_type, queue_name, request_id)
        with self._lock:
            self._requests.append(
                TokenRequest(
                    key_id,
                    action,
                    message_type,
                    queue_name,
                    form,
                    status,
                    str(body["Code"]),
                    dict(query),
                )
            )
        return status, body

    def _query(
        self, key_id: str | None, action: str, query: dict[str, str], request_id: str
    ) -> tuple[int, dict[str, Any]]:
        subject = query.get("CallId") or query.get("JobId") or ""
        with self._lock:
            if self._in_flight.get(subject):
                self._overlaps.append(subject)
            self._in_flight[subject] = self._in_flight.get(subject, 0) + 1
            delay = self._knobs.query_delay
        try:
            if delay:
                time.sleep(delay)
            return self._query_answer(key_id, action, query, request_id)
        finally:
            with self._lock:
                self._in_flight[subject] -= 1

    def _query_answer(
        self, key_id: str | None, action: str, query: dict[str, str], request_id: str
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            answer = self._knobs.answers.pop(0) if self._knobs.answers else None
            known = key_id in self._accounts
        if answer is not None:
            status, code, message = answer
            return status, {"RequestId": request_id, "Code": code, "Message": message}
        if not known:
            return 403, {
                "RequestId": request_id,
                "Code": "InvalidAccessKeyId.NotFound",
                "Message": "Specified access key is not found.",
            }
        if action == QUERY_CALL_DETAIL:
            return 200, self._call_detail(query, request_id)
        instance_id, job_id = query.get("InstanceId", ""), query.get("JobId", "")
        with self._lock:
            job = self._jobs.get((instance_id, job_id))
        if job is None:
            return 404, {
                "RequestId": request_id,
                "Code": "NotExists.JobId",
                "Message": f"The job {job_id} does not exist.",
                "Success": False,
                "HttpStatusCode": 404,
            }
        return 200, {
            "RequestId": request_id,
            "Code": "OK",
            "Message": "",
            "Success": True,
            "HttpStatusCode": 200,
            "Job": job,
        }

    def _call_detail(self, query: dict[str, str], request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"RequestId": request_id, "Code": "OK", "Message": "OK"}
        try:
            prod_id, query_date = int(query.get("ProdId", "")), int(query.get("QueryDate", ""))
        except ValueError:
            return {**body, "Code": "isv.InvalidParameter", "Message": "ProdId, QueryDate"}
        with self._lock:
            data = self._call_details.get((query.get("CallId", ""), prod_id))
        if data is None:
            return body
        when = str(data.get("gmtCreate") or data.get("startDate") or "")
        at = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
        if not 0 <= int(at.timestamp() * 1000) - query_date < _DAY_MS:
            return body  # the service looks only at the 24 hours after QueryDate
        return {**body, "Data": json.dumps(data, ensure_ascii=False)}

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


@dataclass(frozen=True)
class _Signed:
    """A request as received, to check its signature against the account's secret."""

    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> bool:
        acs3 = _ACS3.match(self.headers.get("authorization", ""))
        if acs3 is not None:
            return self._verify_acs3(secret, acs3)
        params = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(self.body.decode(), keep_blank_values=True))
        if "Signature" in params:
            return self._verify_rpc(secret, params)
        return False  # neither form: unsigned

    def _verify_acs3(self, secret: str, match: re.Match[str]) -> bool:
        """ACS3-HMAC-SHA256 (the V3 signature of Aliyun's OpenAPI)."""
        algorithm, _, signed_headers, signature = match.groups()
        payload_hash = hashlib.sha256(self.body).hexdigest()
        if self.headers.get("x-acs-content-sha256", payload_hash) != payload_hash:
            return False
        pairs = sorted(parse_qsl(self.raw_query, keep_blank_values=True))
        canonical_query = "&".join(f"{k}={_percent(v)}" for k, v in pairs)
        names = signed_headers.split(";") if signed_headers else []
        canonical_headers = "".join(
            f"{name}:{self.headers.get(name, '').strip()}\n" for name in names
        )
        canonical = "\n".join(
            [
                self.method,
                self.path or "/",
                canonical_query,
                canonical_headers,
                signed_headers,
                self.headers.get("x-acs-content-sha256", payload_hash),
            ]
        )
        to_sign = f"{algorithm}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def _verify_rpc(self, secret: str, params: dict[str, str]) -> bool:
        """The classic RPC signature: HMAC-SHA1 over the sorted, percent-encoded parameters."""
        given = params.pop("Signature")
        canonical = "&".join(f"{_percent(k)}={_percent(v)}" for k, v in sorted(params.items()))
        to_sign = f"{self.method}&{_percent('/')}&{_percent(canonical)}"
        digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(digest).decode(), given)


def _percent(value: str) -> str:
    return quote(value, safe="~")


def shanghai_wall_time(epoch: float) -> str:
    """`yyyy-MM-dd HH:mm:ss` in Asia/Shanghai, as Alicom writes CreateTime and ExpireTime."""
    return datetime.fromtimestamp(epoch, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class _Handler(QuietHandler):
    peer: FakeAlicomServer
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
        signed = _Signed(self.command, self.path.partition("?")[0], raw_query, headers, body)
        status, answer = self.peer.handle(query, headers, signed)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-acs-request-id", str(answer.get("RequestId", "")))
        self.end_headers()
        self.wfile.write(payload)


__all__ = [
    "ACTION",
    "DESCRIBE_JOB",
    "QUERY_CALL_DETAIL",
    "FakeAlicomServer",
    "IssuedToken",
    "TokenRequest",
    "shanghai_wall_time",
]
