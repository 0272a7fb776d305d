"""The configuration file (README, "Configuration") as pydantic models.

Unknown keys are errors everywhere (`extra="forbid"`); secrets are `SecretStr`, so printing a
model never shows them. Loading (files, conf.d, `${...}` references) is `consumer.config.load`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from consumer.config.secrets import secret_items
from consumer.errors import ConfigError
from consumer.formats import FORMAT_NAMES

if TYPE_CHECKING:
    from consumer.sources.base import Source

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: object) -> object:
    """`1s`, `500ms`, `2m`, `1h`, or a bare number of seconds."""
    if isinstance(value, timedelta | bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"not a duration (like 500ms, 1s, 2m, 1h): {value!r}")


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(lambda td: f"{td.total_seconds():g}s", return_type=str),
]


# RocketMQ 5 moves a message to its %DLQ% topic after 16 failed deliveries by default.
ROCKETMQ_MAX_RETRIES = 16


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    forward: list[Forward] = []

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


class RetryConfig(Strict):
    """Transient failures retry with exponential backoff, bounded in attempts and in total time."""

    attempts: int = Field(default=5, ge=1, le=100)
    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(seconds=30)
    total: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _ordered(self) -> RetryConfig:
        if self.initial > self.max:
            raise ValueError("initial must not be longer than max")
        return self


class AlicomTokenAuth(Strict):
    mode: Literal["alicom_token"] = "alicom_token"
    message_type: Literal["VoiceReport", "VoiceCallReport", "VoiceRecordReport", "VoiceRTASRReport"]
    access_key_id: str
    access_key_secret: SecretStr
    token_endpoint: str = Field(
        default="https://dybaseapi.aliyuncs.com",
        pattern=r"^https?://[^/\s?#]+/?$",
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
    allow_from: list[str] = []
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
        pattern=r"^https?://[^/\s?#]+/?$",
        description="an http(s) URL without a path, like https://oss-cn-hangzhou.aliyuncs.com",
    )
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"


class RecordingsRetry(Strict):
    attempts: int = Field(default=8, ge=1, le=100)
    initial: Duration = timedelta(seconds=30)
    max: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _ordered(self) -> RecordingsRetry:
        if self.initial > self.max:
            raise ValueError("initial must not be longer than max")
        return self


class HuaweiPrivacyRecordings(Strict):
    """The app of the Private Number "获取录音文件下载地址" API (X-AKSK signed)."""

    endpoint: str = Field(
        default="https://rtcpns.cn-north-1.myhuaweicloud.com",
        pattern=r"^https?://[^/\s?#]+/?$",
        description="an http(s) URL without a path",
    )
    app_key: str = Field(min_length=1)
    app_secret: SecretStr


class RecordingsConfig(Strict):
    store: str = Field(description="file:///absolute/dir or s3://bucket[/prefix]")
    s3: RecordingsS3 | None = None
    allow_hosts: list[str] = list(DEFAULT_RECORDING_HOSTS)
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

_ENDPOINT = r"^https?://[^/\s?#]+/?$"
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
        pattern=_ENDPOINT,
        description="a URL http(s)://host[:port] without a path",
    )
    prod_ids: list[int] = Field(default=list(VMS_PROD_IDS), min_length=1)
    max_qps: int = Field(default=100, ge=1, le=100)


class AliyunOutboundBotQuery(Strict):
    access_key_id: str
    access_key_secret: SecretStr
    region: str = Field(default="cn-shanghai", pattern=r"^[a-z0-9-]+$")
    endpoint: str | None = Field(
        default=None, pattern=_ENDPOINT, description="a URL http(s)://host[:port] without a path"
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


class Config(Strict):
    log: LogConfig = LogConfig()
    sink: SinkConfig = SinkConfig()
    http: HttpConfig = HttpConfig()
    queues: list[QueueConfig] = Field(min_length=1)
    recordings: RecordingsConfig | None = None
    reconcile: ReconcileConfig | None = None

    # Values resolved from ${...} inside secret fields, set by the loader (see `secrets`).
    _referenced_secrets: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def secrets(self) -> frozenset[str]:
        """Every secret value in this configuration, for log redaction.

        The `SecretStr` fields, the password of the sink URL, and each value the loader resolved
        from a `${...}` reference inside a secret field (a secret may be glued from pieces).
        """
        found = {secret.get_secret_value() for _, secret in secret_items(self)}
        password = self.sink.url_password
        if password:
            found.update({password, unquote(password)})
        found |= self._referenced_secrets
        return frozenset(value for value in found if value)

    def queue(self, name: str) -> QueueConfig:
        return next(queue for queue in self.queues if queue.name == name)
