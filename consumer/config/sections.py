"""The sections beside `queues:`: log, sink and its forwarders, http, recordings, reconcile; and
`retry:`, which every queue has."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from consumer.config.fields import HOST_URL, Backoff, Duration, Strict


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] | None = None  # None: json unless stderr is a TTY
    mask_phone_numbers: bool = True


class WebhookForward(Strict):
    url: str
    secret: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        problem = webhook_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url


def webhook_url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL, if anything: the one rule, for config and forwarder."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL: {url!r}"
    if parts.username or parts.password:
        # The URL is printed and logged; a credential belongs in `secret`.
        return "credentials in the URL are not supported; use secret"
    return None


class PythonForward(Strict):
    callable: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class JsonlForward(Strict):
    path: str


class Forward(Strict):
    """One forwarder: exactly one of the keys."""

    webhook: WebhookForward | None = None
    python: PythonForward | None = None
    jsonl: JsonlForward | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Forward:
        given = [name for name in ("webhook", "python", "jsonl") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("a forward entry needs exactly one of webhook, python, jsonl")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in ("webhook", "python", "jsonl") if getattr(self, name))


class SinkConfig(Strict):
    url: str = "sqlite:///var/events.db"
    forward: list[Forward] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @property
    def url_password(self) -> str | None:
        """The password in a PostgreSQL URL: a secret even though the URL itself is not."""
        return urlsplit(self.url).password or None

    @property
    def redacted_url(self) -> str:
        """The URL with its password replaced by `***`, for printing and logging."""
        parts = urlsplit(self.url)
        if not parts.password:
            return self.url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class HttpConfig(Strict):
    listen: str = Field(
        default="127.0.0.1:8080",
        pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$",
        description="HOST:PORT, like 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080",
    )

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, listen: str) -> str:
        if not 0 < int(listen.rpartition(":")[2]) <= 65535:
            raise ValueError(f"port must be 1 to 65535: {listen!r}")
        return listen


class RetryConfig(Backoff):
    """Transient failures retry with exponential backoff, bounded in attempts and in total time."""

    attempts: int = Field(default=5, ge=1, le=100)
    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(seconds=30)
    total: Duration = timedelta(seconds=60)


# -- recordings: the recording archive (README "Recording archive") -----------------------------

DEFAULT_RECORDING_HOSTS = (
    "*.aliyuncs.com",
    "*.huaweicloud.com",
    "*.myhuaweicloud.com",
    "*.huawei.com",
    "*.7moor.com",
)
_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$|^\[?[0-9a-fA-F:.]+\]?$")


class RecordingsS3(Strict):
    """Where an `s3://` store lives; credentials fall back to boto3's own chain when left out."""

    endpoint: str | None = Field(
        default=None,
        pattern=HOST_URL,
        description="an http(s) URL without a path, like https://oss-cn-hangzhou.aliyuncs.com",
    )
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"


class RecordingsRetry(Backoff):
    attempts: int = Field(default=8, ge=1, le=100)
    initial: Duration = timedelta(seconds=30)
    max: Duration = timedelta(minutes=30)


class HuaweiPrivacyRecordings(Strict):
    """The app of the Private Number "获取录音文件下载地址" API (X-AKSK signed)."""

    endpoint: str = Field(
        default="https://rtcpns.cn-north-1.myhuaweicloud.com",
        pattern=HOST_URL,
        description="an http(s) URL without a path",
    )
    app_key: str = Field(min_length=1)
    app_secret: SecretStr


class RecordingsConfig(Strict):
    store: str = Field(description="file:///absolute/dir or s3://bucket[/prefix]")
    s3: RecordingsS3 | None = None
    allow_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_RECORDING_HOSTS))
    max_bytes: int = Field(default=209_715_200, ge=1)
    concurrency: int = Field(default=4, ge=1, le=64)
    retry: RecordingsRetry = RecordingsRetry()
    huawei_privacy: HuaweiPrivacyRecordings | None = None

    @field_validator("store")
    @classmethod
    def _store_url(cls, store: str) -> str:
        parts = urlsplit(store)
        if parts.scheme == "file":
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError(f"a file store is file:///absolute/directory: {store!r}")
        elif parts.scheme == "s3":
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,62}", parts.netloc):
                raise ValueError(
                    f"an S3 store is s3://bucket[/prefix] with a valid bucket: {store!r}"
                )
            if parts.query or parts.fragment:
                raise ValueError(f"an S3 store URL takes no query or fragment: {store!r}")
        else:
            raise ValueError(f"must start with file:/// or s3://: {store!r}")
        return store

    @field_validator("allow_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST_PATTERN.match(host):
                raise ValueError(f"not a host name, *.domain pattern or IP address: {host!r}")
        return [host.lower() for host in hosts]

    @model_validator(mode="after")
    def _s3_only_for_s3(self) -> RecordingsConfig:
        if self.s3 is not None and not self.store.startswith("s3://"):
            raise ValueError("`s3:` belongs to an s3:// store")
        return self


# -- reconcile: calls owed a final record (docs/reconcile.md) --------------------------------

VMS_PROD_IDS = (11000000300006, 11010000138001, 11000000300005, 11000000300009, 11030000180001)
"""QueryCallDetailByCallId's documented ProdId values, in the order the reconciler tries them."""


class ReconcileDeadlines(Strict):
    """After a call's last event, per provider: each provider's own re-push budget."""

    aliyun_vms: Duration = timedelta(minutes=15)
    aliyun_outbound_bot: Duration = timedelta(minutes=30)
    huawei_voice: Duration = timedelta(hours=7)
    huawei_privacy: Duration = timedelta(hours=11)
    moor7: Duration = timedelta(minutes=30)


class AliyunVmsQuery(Strict):
    access_key_id: str
    access_key_secret: SecretStr
    endpoint: str = Field(
        default="https://dyvmsapi.aliyuncs.com",
        pattern=HOST_URL,
        description="a URL http(s)://host[:port] without a path",
    )
    prod_ids: list[int] = Field(default=list(VMS_PROD_IDS), min_length=1)
    max_qps: int = Field(default=100, ge=1, le=100)


class AliyunOutboundBotQuery(Strict):
    access_key_id: str
    access_key_secret: SecretStr
    region: str = Field(default="cn-shanghai", pattern=r"^[a-z0-9-]+$")
    endpoint: str | None = Field(
        default=None, pattern=HOST_URL, description="a URL http(s)://host[:port] without a path"
    )

    @property
    def url(self) -> str:
        return self.endpoint or f"https://outboundbot.{self.region}.aliyuncs.com"


class ReconcileConfig(Strict):
    every: Duration = timedelta(minutes=1)
    give_up_after: Duration = timedelta(hours=72)
    deadlines: ReconcileDeadlines = ReconcileDeadlines()
    aliyun_vms: AliyunVmsQuery | None = None
    aliyun_outbound_bot: AliyunOutboundBotQuery | None = None

    @model_validator(mode="after")
    def _give_up_after_the_deadlines(self) -> ReconcileConfig:
        if self.every <= timedelta(0):
            raise ValueError("every must be longer than 0s")
        longest = max(getattr(self.deadlines, name) for name in ReconcileDeadlines.model_fields)
        if self.give_up_after <= longest:
            raise ValueError(
                f"give_up_after ({self.give_up_after}) must be longer than every deadline "
                f"(the longest is {longest})"
            )
        return self


__all__ = [
    "DEFAULT_RECORDING_HOSTS",
    "VMS_PROD_IDS",
    "AliyunOutboundBotQuery",
    "AliyunVmsQuery",
    "Forward",
    "HttpConfig",
    "HuaweiPrivacyRecordings",
    "JsonlForward",
    "LogConfig",
    "PythonForward",
    "ReconcileConfig",
    "ReconcileDeadlines",
    "RecordingsConfig",
    "RecordingsRetry",
    "RecordingsS3",
    "RetryConfig",
    "SinkConfig",
    "WebhookForward",
    "webhook_url_problem",
]
