"""Credentials for MNS queues: Alicom STS tokens, cached and refreshed, or static keys.

Alicom's VMS receipt queues live in Alicom's MNS account; the customer's AccessKey buys a
short-lived STS triple per queue through Dybaseapi `QueryTokenForMnsQueue` (docs/mns.md, "Token
refresh").
The MNS SDK asks its `credentials_provider` for credentials on every request, so a provider
backed by a cache rotates tokens without rebuilding the SDK's `Account`. Rules:

- refresh when less than `refresh_margin` (120 s) remains before `ExpireTime`, which is an
  Asia/Shanghai wall time; a request never leaves with a token past that margin;
- after MNS refuses the credentials, the source calls `on_auth_error()`: the cached token is
  dropped and the next request fetches a new one (at most once per token, however many
  threads saw the refusal);
- `Code` other than "OK" with HTTP 200 is a failure, like any HTTP error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from mns.auth import Credentials, CredentialsProvider
from mns.mns_exception import MNSServerException
from prometheus_client import Counter, Gauge

from consumer.config.model import AccessKeyAuth, AlicomTokenAuth, StsAuth
from consumer.errors import ConsumerError
from consumer.openapi import client_options

SHANGHAI = ZoneInfo("Asia/Shanghai")
REFRESH_MARGIN_SECONDS = 120.0
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# MNS answers 403 to every credential problem, but the exception does not carry the status,
# so the codes decide. The code for an expired STS token is undocumented (docs/mns.md):
# anything naming a token, a key or a signature counts.
AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSecurityToken",
        "SecurityTokenExpired",
        "SecurityTokenMismatch",
    }
)

T = TypeVar("T")

# In the MNS worker processes, through the multiprocess files like every pipeline metric: an
# operator alerts on failed refreshes and on a token close to its ExpireTime (the refresh is
# tried 120 s before it, so a token with less left means every refresh since has failed).
TOKEN_REFRESHES = Counter(
    "consumer_alicom_token_refreshes",
    "Alicom QueryTokenForMnsQueue calls, by result (ok or failed)",
    ["mns_queue", "result"],
)
TOKEN_EXPIRY = Gauge(
    "consumer_alicom_token_expiry_timestamp_seconds",
    "When the current Alicom STS token of the MNS queue expires (Unix time)",
    ["mns_queue"],
    multiprocess_mode="livemax",
)


class AlicomTokenError(ConsumerError):
    """`QueryTokenForMnsQueue` gave no usable token.

    `transient` is True for network failures and 5xx answers (retry with back-off) and False
    for answers that repeat until the configuration changes (unknown AccessKey, Code ≠ OK).
    """

    def __init__(
        self,
        problem: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ) -> None:
        details = ", ".join(
            f"{name} {value}"
            for name, value in (("code", code), ("HTTP", status), ("request id", request_id))
            if value is not None
        )
        super().__init__(f"QueryTokenForMnsQueue: {problem}" + (f" ({details})" if details else ""))
        self.code = code
        self.status = status
        self.request_id = request_id
        self.transient = transient


@dataclass(frozen=True)
class MnsToken:
    """One STS triple for one queue; `expires_at` is epoch seconds."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: float
    fetched_at: float


def parse_alicom_time(value: str) -> float:
    """Epoch seconds of an Alicom `yyyy-MM-dd HH:mm:ss` wall time in Asia/Shanghai."""
    try:
        wall = datetime.strptime(value.strip(), _TIME_FORMAT)
    except ValueError:
        raise ValueError(f"not a 'yyyy-MM-dd HH:mm:ss' time: {value!r}") from None
    return wall.replace(tzinfo=SHANGHAI).timestamp()


def _split_endpoint(url: str) -> tuple[str, str]:
    """`https://host[:port]` → (protocol, host[:port]) as tea-openapi's Config wants them."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(
            f"auth.token_endpoint must look like https://dybaseapi.aliyuncs.com, got {url!r}"
        )
    return parts.scheme, parts.netloc


class AlicomTokenCache:
    """The current STS token of one (AccessKeyId, MessageType, QueueName); thread-safe."""

    def __init__(
        self,
        auth: AlicomTokenAuth,
        queue_name: str,
        *,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The Dybaseapi SDK (with its credentials stack, ~25 MB) loads only where a token is
        # fetched: queues in access_key or sts mode never import it.
        from alibabacloud_dybaseapi20170525.client import Client as DybaseapiClient  # noqa: PLC0415
        from alibabacloud_tea_openapi.models import Config as OpenApiConfig  # noqa: PLC0415
        from alibabacloud_tea_util.models import RuntimeOptions  # noqa: PLC0415

        _split_endpoint(auth.token_endpoint)  # refuse a URL with a path before any request
        config, runtime = client_options(
            auth.access_key_id,
            auth.access_key_secret.get_secret_value(),
            auth.token_endpoint,
            region="cn-hangzhou",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._auth = auth
        self._queue_name = queue_name
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: MnsToken | None = None
        self.fetches = 0
        """How many tokens were fetched (for tests and metrics)."""
        self._client = DybaseapiClient(OpenApiConfig(**config))
        self._runtime = RuntimeOptions(**runtime)

    @property
    def queue_name(self) -> str:
        return self._queue_name

    def get(self) -> MnsToken:
        """A token with more than the refresh margin left, fetching one if needed."""
        with self._lock:
            token = self._token
            if token is None or not self._fresh(token):
                try:
                    token = self._fetch()
                except AlicomTokenError:
                    TOKEN_REFRESHES.labels(self._queue_name, "failed").inc()
                    raise
                TOKEN_REFRESHES.labels(self._queue_name, "ok").inc()
                TOKEN_EXPIRY.labels(self._queue_name).set(token.expires_at)
                self._token = token
            return token

    def invalidate(self, token: MnsToken | None = None) -> None:
        """Forget the cached token (only if it is still `token`, when given)."""
        with self._lock:
            if token is None or self._token is token:
                self._token = None

    def _fresh(self, token: MnsToken) -> bool:
        # A token that lives shorter than twice the margin is refreshed at half its life,
        # so short-lived tokens do not make every request fetch a new one.
        lifetime = token.expires_at - token.fetched_at
        margin = min(self._refresh_margin, lifetime / 2)
        return token.expires_at - self._clock() > margin

    def _fetch(self) -> MnsToken:
        from alibabacloud_dybaseapi20170525 import models as dybaseapi_models  # noqa: PLC0415

        request = dybaseapi_models.QueryTokenForMnsQueueRequest(
            message_type=self._auth.message_type, queue_name=self._queue_name
        )
        try:
            response = self._client.query_token_for_mns_queue_with_options(request, self._runtime)
        except Exception as exc:  # the SDK's exception classes differ between releases
            raise _token_error(exc) from exc
        body = response.body
        code = getattr(body, "code", None)
        request_id = getattr(body, "request_id", None)
        if code != "OK":
            raise AlicomTokenError(
                f"refused: {getattr(body, 'message', None) or 'no message'}",
                code=str(code),
                status=response.status_code,
                request_id=request_id,
            )
        dto = body.message_token_dto
        if dto is None or not (dto.access_key_id and dto.access_key_secret and dto.security_token):
            raise AlicomTokenError(
                "the answer carries no complete MessageTokenDTO", code=code, request_id=request_id
            )
        try:
            expires_at = parse_alicom_time(str(dto.expire_time))
        except ValueError as exc:
            raise AlicomTokenError(f"bad ExpireTime: {exc}", request_id=request_id) from None
        now = self._clock()
        if expires_at <= now:
            raise AlicomTokenError(
                f"the token expired at {dto.expire_time} (Asia/Shanghai) already; "
                "is the host clock right?",
                request_id=request_id,
                transient=True,
            )
        self.fetches += 1
        return MnsToken(
            dto.access_key_id, dto.access_key_secret, dto.security_token, expires_at, now
        )


def _token_error(exc: Exception) -> AlicomTokenError:
    code = getattr(exc, "code", None)
    status = getattr(exc, "status_code", None)
    request_id = getattr(exc, "request_id", None)
    if isinstance(status, int):
        message = getattr(exc, "message", None) or str(exc)
        return AlicomTokenError(
            f"HTTP {status}: {message}",
            code=str(code) if code else None,
            status=status,
            request_id=str(request_id) if request_id else None,
            transient=status >= 500 or status == 429,
        )
    return AlicomTokenError(f"cannot reach the token endpoint: {exc}", transient=True)


_shared_lock = threading.Lock()
_shared: dict[tuple[str, str, str, str], AlicomTokenCache] = {}


def shared_token_cache(auth: AlicomTokenAuth, queue_name: str, **options: Any) -> AlicomTokenCache:
    """One cache per process and (AccessKeyId, MessageType, QueueName, endpoint)."""
    key = (auth.access_key_id, auth.message_type, queue_name, auth.token_endpoint)
    with _shared_lock:
        cache = _shared.get(key)
        if cache is None:
            cache = _shared[key] = AlicomTokenCache(auth, queue_name, **options)
        return cache


class RefreshableCredentials(Protocol):
    """What the MNS source needs from a credentials provider."""

    def get_credentials(self) -> Credentials: ...

    def on_auth_error(self) -> bool:
        """React to MNS refusing the credentials; True if retrying may now succeed."""
        ...


class AlicomCredentialsProvider(CredentialsProvider):  # type: ignore[misc]
    """`mns.auth.CredentialsProvider` serving the cache's token on every SDK request.

    Raises `AlicomTokenError` out of the SDK call when no token can be had, before anything
    is sent. Remembers per thread which token went out, so `on_auth_error` drops that one.
    """

    def __init__(self, cache: AlicomTokenCache) -> None:
        self._cache = cache
        self._used = threading.local()

    @property
    def cache(self) -> AlicomTokenCache:
        return self._cache

    def get_credentials(self) -> Credentials:
        token = self._cache.get()
        self._used.token = token
        return Credentials(token.access_key_id, token.access_key_secret, token.security_token)

    def on_auth_error(self) -> bool:
        self._cache.invalidate(getattr(self._used, "token", None))
        return True


class StaticProvider(CredentialsProvider):  # type: ignore[misc]
    """`access_key` and `sts` modes: fixed credentials; a refusal cannot be cured here."""

    def __init__(
        self, access_key_id: str, access_key_secret: str, security_token: str = ""
    ) -> None:
        # The SDK sends `security-token` whenever the token is not "" (None would be sent).
        self._credentials = Credentials(access_key_id, access_key_secret, security_token)

    def get_credentials(self) -> Credentials:
        return self._credentials

    def on_auth_error(self) -> bool:
        return False


def credentials_provider(
    auth: AlicomTokenAuth | AccessKeyAuth | StsAuth, queue_name: str, **options: Any
) -> AlicomCredentialsProvider | StaticProvider:
    """The provider for a queue's `mns.auth`; `options` go to `AlicomTokenCache`."""
    if isinstance(auth, AlicomTokenAuth):
        return AlicomCredentialsProvider(shared_token_cache(auth, queue_name, **options))
    if isinstance(auth, StsAuth):
        return StaticProvider(
            auth.access_key_id,
            auth.access_key_secret.get_secret_value(),
            auth.security_token.get_secret_value(),
        )
    return StaticProvider(auth.access_key_id, auth.access_key_secret.get_secret_value())


def is_auth_error(exc: BaseException) -> bool:
    """Whether an MNS error means the credentials were refused."""
    if not isinstance(exc, MNSServerException):
        return False
    code = str(exc.type or "")
    return code in AUTH_ERROR_CODES or any(
        word in code for word in ("SecurityToken", "AccessKey", "Signature")
    )


def call_with_auth_retry(provider: RefreshableCredentials, call: Callable[[], T]) -> T:
    """Run an SDK call; on a credentials refusal refresh them and run it once more."""
    try:
        return call()
    except MNSServerException as exc:
        if is_auth_error(exc) and provider.on_auth_error():
            return call()
        raise


__all__ = [
    "AUTH_ERROR_CODES",
    "REFRESH_MARGIN_SECONDS",
    "AlicomCredentialsProvider",
    "AlicomTokenCache",
    "AlicomTokenError",
    "MnsToken",
    "RefreshableCredentials",
    "StaticProvider",
    "call_with_auth_retry",
    "credentials_provider",
    "is_auth_error",
    "parse_alicom_time",
    "shared_token_cache",
]
