"""What the reconciler asks a provider: one call's final record, or why it cannot say.

A `Query` returns the final record as a normalized event (`extras.source = "reconcile"`),
None when the provider does not have it (yet), or raises `QueryError` with the result label
of `consumer_reconcile_queries_total`. The Aliyun SDKs raise tea-openapi exceptions carrying
`code` and `status_code`; `classify` turns them into one of those results.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import SecretStr

from consumer.errors import describe
from consumer.model import CallEvent, Normalized, Provider
from consumer.openapi import client_options
from consumer.sinks.reconcile import OwedCall

Result = Literal["found", "not_found", "error", "auth_error", "throttled"]
QUERYABLE = (Provider.ALIYUN_VMS, Provider.ALIYUN_OUTBOUND_BOT)
"""The providers with an API to ask for a call's final record (`runner.build_queries`)."""
SOURCE = "reconcile"
T = TypeVar("T")

# Codes that mean the credentials, not the request, are wrong: retrying cannot help.
_AUTH_CODES = (
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "Forbidden",
    "NoPermission",
    "isv.AccountNotExists",
)


class QueryError(Exception):
    """A query that did not answer; `retry` says whether asking again may help."""

    def __init__(self, result: Result, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.result: Result = result
        self.reason = reason
        self.retry = retry


class Query(Protocol):
    @property
    def provider(self) -> Provider: ...

    def fetch(self, call: OwedCall) -> Normalized | None: ...


class Account(Protocol):
    """The credentials of a query's configuration."""

    @property
    def access_key_id(self) -> str: ...

    @property
    def access_key_secret(self) -> SecretStr: ...


def sdk_client(
    client: Callable[[Any], T],
    account: Account,
    url: str,
    region: str,
    timeouts: tuple[float, float],
) -> tuple[T, Any]:
    """An Aliyun SDK `client` of `account` at `url`, and the runtime options of its calls;
    `timeouts`: to connect and to read, in seconds."""
    from alibabacloud_tea_openapi.models import Config  # noqa: PLC0415 - with the SDK
    from darabonba.runtime import RuntimeOptions  # noqa: PLC0415

    options, runtime = client_options(
        account.access_key_id,
        account.access_key_secret.get_secret_value(),
        url,
        region=region,
        connect_timeout=timeouts[0],
        read_timeout=timeouts[1],
    )
    return client(Config(**options)), RuntimeOptions(**runtime)


def classify(exc: Exception) -> QueryError:
    """A tea-openapi exception (or a network failure) as a `QueryError`."""
    if isinstance(exc, QueryError):
        return exc
    code = str(getattr(exc, "code", "") or "")
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc)[:300]
    reason = f"{code or type(exc).__name__}: {message}" if code else describe(exc)
    return classify_code(code, status if isinstance(status, int) else None, reason[:400])


def classify_code(code: str, status: int | None, reason: str) -> QueryError:
    if code.startswith(_AUTH_CODES) or status in (401, 403):
        return QueryError("auth_error", reason, retry=False)
    if code.startswith("Throttling") or "Throttling" in code or status == 429:
        return QueryError("throttled", reason, retry=True)
    if status is None or status >= 500:
        return QueryError("error", reason, retry=True)  # network trouble or the service's own
    return QueryError("error", reason, retry=False)


def tagged(event: CallEvent, **extra: Any) -> CallEvent:
    """The event marked as fetched by the reconciler."""
    return event.model_copy(update={"extras": {**event.extras, "source": SOURCE, **extra}})


class RateLimiter:
    """At most `per_second` calls per second, spaced evenly (Aliyun's per-account QPS limits)."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Return when this caller's slot has come (slots are handed out in call order)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(api: str, access_key_id: str, per_second: float) -> RateLimiter:
    """One limiter per API and account in this process, whoever asks."""
    with _limiters_lock:
        key = (api, access_key_id)
        if key not in _limiters:
            _limiters[key] = RateLimiter(per_second)
        return _limiters[key]


__all__ = [
    "QUERYABLE",
    "SOURCE",
    "Query",
    "QueryError",
    "RateLimiter",
    "Result",
    "classify",
    "classify_code",
    "limiter_for",
    "sdk_client",
    "tagged",
]
