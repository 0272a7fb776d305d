"""The configuration file (README, "Configuration") as pydantic models: `Config`, and the face
every importer uses for the models of its sections.

Unknown keys are errors everywhere (`extra="forbid"`); secrets are `SecretStr`, so printing a
model never shows them. The models live by job: `fields` (what sections are built from),
`queues` (the `source` union: one member per transport), `sections` (everything beside the
queues). Loading (files, conf.d, `${...}` references) is `consumer.config.load`.
"""

from __future__ import annotations

from urllib.parse import unquote

from pydantic import Field, PrivateAttr

from consumer.config.fields import Duration, Strict
from consumer.config.queues import (
    MAX_PUSH_SKEW,
    RESERVED_HTTP_PATHS,
    ROCKETMQ_MAX_RETRIES,
    ROCKETMQ_WAIT,
    AccessKeyAuth,
    AlicomTokenAuth,
    HttpQueue,
    HttpSourceConfig,
    HuaweiAkskAuth,
    MnsAuth,
    MnsConfig,
    MnsQueue,
    NoAuth,
    PushAuth,
    QueueBase,
    QueueConfig,
    RocketMqConfig,
    RocketMqCredentials,
    RocketMqQueue,
    StsAuth,
    TokenAuth,
)
from consumer.config.secrets import secret_items
from consumer.config.sections import (
    DEFAULT_RECORDING_HOSTS,
    VMS_PROD_IDS,
    AliyunOutboundBotQuery,
    AliyunVmsQuery,
    Forward,
    HttpConfig,
    HuaweiPrivacyRecordings,
    JsonlForward,
    LogConfig,
    PythonForward,
    ReconcileConfig,
    ReconcileDeadlines,
    RecordingsConfig,
    RecordingsRetry,
    RecordingsS3,
    RetryConfig,
    SinkConfig,
    WebhookForward,
    webhook_url_problem,
)


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


__all__ = [
    "DEFAULT_RECORDING_HOSTS",
    "MAX_PUSH_SKEW",
    "RESERVED_HTTP_PATHS",
    "ROCKETMQ_MAX_RETRIES",
    "ROCKETMQ_WAIT",
    "VMS_PROD_IDS",
    "AccessKeyAuth",
    "AlicomTokenAuth",
    "AliyunOutboundBotQuery",
    "AliyunVmsQuery",
    "Config",
    "Duration",
    "Forward",
    "HttpConfig",
    "HttpQueue",
    "HttpSourceConfig",
    "HuaweiAkskAuth",
    "HuaweiPrivacyRecordings",
    "JsonlForward",
    "LogConfig",
    "MnsAuth",
    "MnsConfig",
    "MnsQueue",
    "NoAuth",
    "PushAuth",
    "PythonForward",
    "QueueBase",
    "QueueConfig",
    "ReconcileConfig",
    "ReconcileDeadlines",
    "RecordingsConfig",
    "RecordingsRetry",
    "RecordingsS3",
    "RetryConfig",
    "RocketMqConfig",
    "RocketMqCredentials",
    "RocketMqQueue",
    "SinkConfig",
    "Strict",
    "StsAuth",
    "TokenAuth",
    "WebhookForward",
    "webhook_url_problem",
]
