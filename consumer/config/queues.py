"""The members of the `source` union of a queue, one per transport, with their sections.

A new transport adds its member to `QueueConfig` here: its `source:` value, its section, its
`receive_settings()` defaults, and how it opens itself (ARCHITECTURE.md, "Where to add things").
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from consumer.config.fields import HOST_URL, Duration, Strict
from consumer.config.sections import RetryConfig
from consumer.errors import ConfigError
from consumer.formats import FORMAT_NAMES

if TYPE_CHECKING:
    from consumer.sources.base import Source

# RocketMQ 5 moves a message to its %DLQ% topic after 16 failed deliveries by default.
ROCKETMQ_MAX_RETRIES = 16


class AlicomTokenAuth(Strict):
    mode: Literal["alicom_token"] = "alicom_token"
    message_type: Literal["VoiceReport", "VoiceCallReport", "VoiceRecordReport", "VoiceRTASRReport"]
    access_key_id: str
    access_key_secret: SecretStr
    token_endpoint: str = Field(
        default="https://dybaseapi.aliyuncs.com",
        pattern=HOST_URL,
        description="a URL http(s)://host[:port] without a path",
    )


class AccessKeyAuth(Strict):
    mode: Literal["access_key"]
    access_key_id: str
    access_key_secret: SecretStr


class StsAuth(Strict):
    mode: Literal["sts"]
    access_key_id: str
    access_key_secret: SecretStr
    security_token: SecretStr


def _alicom_by_default(value: object) -> object:
    # alicom_token is the default mode (docs/mns.md, "Auth modes"), so `mode:` may be left out.
    if isinstance(value, dict) and "mode" not in value:
        return {**value, "mode": "alicom_token"}
    return value


MnsAuth = Annotated[
    AlicomTokenAuth | AccessKeyAuth | StsAuth,
    BeforeValidator(_alicom_by_default),
    Field(discriminator="mode"),
]


class MnsConfig(Strict):
    endpoint: str = Field(
        pattern=r"^https?://[^/\s]+/?$",
        description="an http:// or https:// URL without a path, "
        "like https://ID.mns.cn-hangzhou.aliyuncs.com",
    )
    queue: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,255}$",
        description="a queue name: letters, digits and -, up to 256 characters",
    )
    auth: MnsAuth
    batch_size: int = Field(default=16, ge=1, le=16)
    wait_seconds: int = Field(default=30, ge=0, le=30)


class RocketMqCredentials(Strict):
    username: str
    password: SecretStr


class RocketMqConfig(Strict):
    protocol: Literal["grpc", "remoting"] = "grpc"
    """grpc: RocketMQ 5 (rocketmq-python-client); remoting: RocketMQ 4.x (rocketmq-client-python
    2.0.0 over librocketmq, the `rocketmq4` extra)."""
    endpoints: str = Field(
        pattern=r"^([^\s:;]+:\d{1,5}(;[^\s:;]+:\d{1,5})*|https?://[^\s/;]+(:\d{1,5})?/?)$",
        description="HOST:PORT, or several separated by ;"
        " (remoting also: an http:// name server address URL)",
    )
    topic: str = Field(
        pattern=r"^[%A-Za-z0-9_-]{1,127}$",
        description="a topic name: letters, digits, %, _ and -, up to 127 characters",
    )
    group: str = Field(
        pattern=r"^[%A-Za-z0-9_-]{1,255}$",
        description="a consumer group name: letters, digits, %, _ and -, up to 255 characters",
    )
    tag: str = Field(
        default="*",
        pattern=r"^(\*|[^\s|*]+(\|\|[^\s|*]+)*)$",
        description="* or tags separated by || without spaces",
    )
    namespace: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="an instance id: letters, digits, _ and -",
    )
    tls: bool = False
    credentials: RocketMqCredentials | None = None
    batch_size: int = Field(default=16, ge=1, le=32)
    invisible_duration: Duration = timedelta(seconds=60)

    @field_validator("endpoints")
    @classmethod
    def _ports_in_range(cls, endpoints: str) -> str:
        if endpoints.startswith(("http://", "https://")):
            return endpoints
        for endpoint in endpoints.split(";"):
            if not 1 <= int(endpoint.rsplit(":", 1)[1]) <= 65535:
                raise ValueError(f"port must be 1 to 65535: {endpoint!r}")
        return endpoints

    @field_validator("endpoints")
    @classmethod
    def _url_for_remoting(cls, endpoints: str, info: ValidationInfo) -> str:
        if (
            endpoints.startswith(("http://", "https://"))
            and info.data.get("protocol") != "remoting"
        ):
            raise ValueError("an http:// name server address needs protocol: remoting")
        return endpoints

    @field_validator("tls", "invisible_duration")
    @classmethod
    def _grpc_only(cls, value: object, info: ValidationInfo) -> object:
        # Set explicitly only (defaults are not validated): remoting would silently ignore it.
        if info.data.get("protocol") == "remoting":
            raise ValueError("applies to protocol grpc only (this queue uses remoting)")
        return value


class NoAuth(Strict):
    mode: Literal["none"]


class TokenAuth(Strict):
    mode: Literal["token"]
    token: SecretStr

    @field_validator("token")
    @classmethod
    def _path_safe(cls, token: SecretStr) -> SecretStr:
        # Huawei push URLs allow only a-zA-Z0-9 - : . / (docs/http-push.md).
        if not re.fullmatch(r"[A-Za-z0-9-]{16,128}", token.get_secret_value()):
            raise ValueError("must be 16 to 128 characters of A-Z, a-z, 0-9 and -")
        return token


MAX_PUSH_SKEW = timedelta(minutes=15)


class HuaweiAkskAuth(Strict):
    mode: Literal["huawei_aksk"]
    app_key: str
    app_secret: SecretStr
    max_skew: Duration = timedelta(minutes=5)
    """How far `Created` may be from now; a nonce is remembered (in the database) this long."""

    @field_validator("max_skew")
    @classmethod
    def _skew_in_range(cls, skew: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= skew <= MAX_PUSH_SKEW:
            raise ValueError(
                f"must be 1s to {MAX_PUSH_SKEW.seconds // 60}m, not {skew.total_seconds():g}s"
            )
        return skew


PushAuth = Annotated[NoAuth | TokenAuth | HuaweiAkskAuth, Field(discriminator="mode")]


RESERVED_HTTP_PATHS = ("/healthz", "/readyz", "/metrics")


class HttpSourceConfig(Strict):
    path: str = Field(
        pattern=r"^/[A-Za-z0-9._~/-]*$",
        description="a URL path starting with /, of letters, digits and . _ ~ / -",
    )
    auth: PushAuth = NoAuth(mode="none")
    allow_from: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1, le=64 * 1_048_576)

    @field_validator("path")
    @classmethod
    def _not_reserved(cls, path: str) -> str:
        if path.rstrip("/") in RESERVED_HTTP_PATHS:
            raise ValueError(
                f"{path} is the listener's own; {', '.join(RESERVED_HTTP_PATHS)} are reserved"
            )
        return path

    @field_validator("allow_from")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR block: {cidr!r}") from None
        return cidrs


class QueueBase(Strict):
    """What every queue has, whatever its transport; a transport's member adds its section."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="1 to 64 of a-z, 0-9, _ . -, starting with a letter or digit",
    )
    format: str
    workers: int = Field(default=1, ge=1, le=64)
    retry: RetryConfig = RetryConfig()
    max_deliveries: int = Field(default=10, ge=1, le=1000)

    pull: ClassVar[bool] = True
    """A pull queue runs `workers` worker processes; a push queue is served by the listener."""

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:
        if name not in FORMAT_NAMES:
            raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMAT_NAMES)}")
        return name

    def receive_settings(self) -> tuple[float, int]:
        """The long-poll seconds and the batch size of a pull queue."""
        raise ConfigError(f"queues.{self.name}.source", f"{self.kind} is not a pull source")

    @property
    def kind(self) -> str:
        """The value of `source:`."""
        return str(getattr(self, "source"))  # noqa: B009 - each member declares its Literal

    @property
    def transport(self) -> str:
        """The module that opens the queue (`consumer.sources`' registry): its `source:`, unless
        the section picks a protocol."""
        return self.kind

    def open(self) -> Source:
        """The queue's source, its SDK imported only now (in the one process that needs it)."""
        from consumer.sources import open_source  # noqa: PLC0415 - the SDKs load lazily

        return open_source(self)


class MnsQueue(QueueBase):
    source: Literal["mns"]
    mns: MnsConfig

    def receive_settings(self) -> tuple[float, int]:
        return float(self.mns.wait_seconds), self.mns.batch_size


ROCKETMQ_WAIT = 15.0
"""The long poll of a RocketMQ receive (the SDK's own default)."""


class RocketMqQueue(QueueBase):
    source: Literal["rocketmq"]
    rocketmq: RocketMqConfig

    def receive_settings(self) -> tuple[float, int]:
        return ROCKETMQ_WAIT, self.rocketmq.batch_size

    def source_options(self) -> dict[str, Any]:
        """What both RocketMQ sources take besides the section: the delivery bound, and the
        key path their configuration errors name."""
        return {"max_deliveries": self.max_deliveries, "location": f"queues.{self.name}.rocketmq"}

    @property
    def transport(self) -> str:
        """`rocketmq` (5.x over gRPC) or `remoting` (4.x)."""
        return "remoting" if self.rocketmq.protocol == "remoting" else "rocketmq"

    @model_validator(mode="after")
    def _broker_keeps_the_dead_letters(self) -> RocketMqQueue:
        if self.max_deliveries > ROCKETMQ_MAX_RETRIES:
            raise ValueError(
                f"max_deliveries must be at most {ROCKETMQ_MAX_RETRIES} for a rocketmq queue: "
                "past that the broker moves the message to %DLQ% before dead_letters sees it"
            )
        return self


class HttpQueue(QueueBase):
    source: Literal["http"]
    http: HttpSourceConfig

    pull: ClassVar[bool] = False


def _one_source_section(value: object) -> object:
    """A queue names its transport in `source:` and configures it in the section of that name."""
    if not isinstance(value, dict) or value.get("source") not in _SECTIONS:
        return value  # the union reports a missing or unknown `source:`
    source = value["source"]
    if source not in value:
        raise ValueError(f"source {source} needs a `{source}:` section")
    for section in _SECTIONS:
        if section != source and section in value:
            raise ValueError(f"`{section}:` does not belong to a source {source} queue")
    return value


QueueConfig = Annotated[
    Annotated[MnsQueue | RocketMqQueue | HttpQueue, Field(discriminator="source")],
    BeforeValidator(_one_source_section),
]
"""One member per transport, told apart by `source:`; a new transport adds its member here."""

_SECTIONS = tuple(
    arg
    for member in get_args(get_args(QueueConfig)[0])
    for arg in get_args(member.model_fields["source"].annotation)
)


__all__ = [
    "MAX_PUSH_SKEW",
    "RESERVED_HTTP_PATHS",
    "ROCKETMQ_MAX_RETRIES",
    "ROCKETMQ_WAIT",
    "AccessKeyAuth",
    "AlicomTokenAuth",
    "HttpQueue",
    "HttpSourceConfig",
    "HuaweiAkskAuth",
    "MnsAuth",
    "MnsConfig",
    "MnsQueue",
    "NoAuth",
    "PushAuth",
    "QueueBase",
    "QueueConfig",
    "RocketMqConfig",
    "RocketMqCredentials",
    "RocketMqQueue",
    "StsAuth",
    "TokenAuth",
]
