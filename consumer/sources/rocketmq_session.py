"""Setting up the RocketMQ 5 client (`rocketmq-python-client`) and naming its failures.

`consumer.sources.rocketmq` receives and settles batches; this module is what it needs around
that, and what the client does not do for us:

- Its import creates `$HOME/logs/rocketmq_python/` and fails when HOME is not writable; the
  import is lazy and falls back to `$CACHE_DIRECTORY`, `$STATE_DIRECTORY` or the temp dir.
- `startup()` neither connects nor fails; a failed route lookup surfaces at the first
  `receive()` as a bare "failed to fetch topic route" whatever the cause, so we ask `QueryRoute`
  ourselves to name it (unreachable, UNAUTHORIZED, TOPIC_NOT_FOUND).
- Its telemetry stream needs an event loop in the thread that starts or receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import tempfile
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

from consumer.config.model import RocketMqConfig
from consumer.errors import ConfigError, TransientError, describe
from consumer.logs import adopt_library_loggers
from consumer.sources.client_home import home

log = structlog.get_logger("consumer.sources.rocketmq")

OK = 20000
INVALID_RECEIPT_HANDLE = 40013
# Status codes that mean the request itself is wrong: retrying never helps.
_CONFIG_CODES = {
    40002: ".topic",  # ILLEGAL_TOPIC
    40003: ".group",  # ILLEGAL_CONSUMER_GROUP
    40010: ".tag",  # ILLEGAL_FILTER_EXPRESSION
    40011: ".invisible_duration",  # ILLEGAL_INVISIBLE_TIME
    40018: "",  # ILLEGAL_POLLING_TIME: the long poll does not fit the request deadline
}
_ROUTE_HINTS = {
    40100: "check rocketmq.credentials (the instance username and password)",
    40300: "the credentials may not use this topic or group",
    40402: "check rocketmq.topic and rocketmq.namespace",
    40400: "check rocketmq.topic and rocketmq.namespace",
}
_import_lock = threading.Lock()


def import_client() -> ModuleType:
    """Import `rocketmq`, pointing HOME at a writable directory if its log dir cannot be made."""
    with _import_lock:
        try:
            return importlib.import_module("rocketmq")
        except OSError as first:
            candidates = [
                os.environ.get("CACHE_DIRECTORY", "").split(":")[0],
                os.environ.get("STATE_DIRECTORY", "").split(":")[0],
                tempfile.gettempdir(),
            ]
            for directory in filter(None, candidates):
                with home(directory), contextlib.suppress(OSError):
                    return importlib.import_module("rocketmq")
            raise TransientError(
                f"cannot import rocketmq: it needs a writable $HOME/logs ({first})"
            ) from first


@dataclass(frozen=True)
class Session:
    """The settings one source connects with, and names its failures with."""

    config: RocketMqConfig
    location: str
    """Prefixes configuration errors (`queues.NAME.rocketmq`)."""
    request_timeout: int

    def start(self, await_duration: int) -> Any:
        """A started SimpleConsumer (it connects at its first receive)."""
        client = import_client()
        adopt_library_loggers()  # the client's own log files bypass the JSON lines and redaction
        cfg = self.config
        credentials = (
            client.Credentials(
                cfg.credentials.username, cfg.credentials.password.get_secret_value()
            )
            if cfg.credentials is not None
            else client.Credentials()
        )
        try:
            configuration = client.ClientConfiguration(
                cfg.endpoints,
                credentials,
                namespace=cfg.namespace,
                request_timeout=self.request_timeout,
            )
        except Exception as exc:  # the client cannot parse the endpoints
            raise ConfigError(
                f"{self.location}.endpoints", f"cannot use {cfg.endpoints!r}: {exc}"
            ) from exc
        try:
            consumer = client.SimpleConsumer(
                configuration,
                cfg.group,
                {cfg.topic: client.FilterExpression(cfg.tag or "*")},
                await_duration=await_duration,
                tls_enable=cfg.tls,
            )
            consumer.startup()
        except Exception as exc:
            raise TransientError(f"cannot start the RocketMQ consumer: {exc}") from exc
        log.info(
            "rocketmq consumer started",
            endpoints=cfg.endpoints,
            topic=cfg.topic,
            group=cfg.group,
            namespace=cfg.namespace,
            tls=cfg.tls,
        )
        return consumer

    def translate(self, exc: Exception, operation: str, consumer: Any) -> Exception:
        """Map a client failure onto ConfigError (the request is wrong) or TransientError."""
        code = getattr(exc, "code", None)
        if callable(code):  # a grpc.RpcError: transport trouble, time-out
            status = code()
            name = getattr(status, "name", str(status))
            return TransientError(f"rocketmq {operation} failed: gRPC {name}: {_details(exc)}")
        if isinstance(code, int) and code in _CONFIG_CODES:
            return ConfigError(f"{self.location}{_CONFIG_CODES[code]}", str(exc))
        if isinstance(code, int):
            return TransientError(f"rocketmq {operation} failed: {type(exc).__name__} {exc}")
        if "route" in str(exc):
            return TransientError(f"rocketmq {operation} failed: {self._route_problem(consumer)}")
        return TransientError(f"rocketmq {operation} failed: {describe(exc)}")

    def _route_problem(self, consumer: Any) -> str:
        """Ask QueryRoute ourselves: the client logs the refusal and raises a bare Exception."""
        cfg = self.config
        where = f"topic {cfg.topic!r} at {cfg.endpoints}"
        try:
            protocol = importlib.import_module("rocketmq.grpc_protocol")
            endpoints = consumer.client_configuration.rpc_endpoints
            request = protocol.QueryRouteRequest()
            request.topic.name = cfg.topic
            request.topic.resource_namespace = cfg.namespace
            request.endpoints.CopyFrom(endpoints.endpoints)
            response = consumer.rpc_client.query_topic_route_async(
                endpoints, request, metadata=consumer.sign(), timeout=self.request_timeout
            ).result(timeout=self.request_timeout + 1)
        except Exception as exc:
            return f"cannot reach {where}: {type(exc).__name__}: {_details(exc)}"
        code, message = int(response.status.code), str(response.status.message)
        hint = _ROUTE_HINTS.get(code, "")
        return f"route lookup for {where} answered {code} {message!r}" + (
            f": {hint}" if hint else ""
        )


class StatusError(Exception):
    """A status the broker answered in-band for one message (`code` as in `rocketmq`'s own
    exceptions, so `Session.translate` reads both alike)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


def _details(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):
            return str(details())
    return str(exc)


def ensure_event_loop() -> None:
    """Give the calling thread an event loop (never run) when it has none.

    The client opens its telemetry stream through grpc.aio from the thread that starts or
    receives, and grpc.aio asks that thread for its event loop: a thread without one (any but
    the main thread, or the main thread after an `asyncio.run`) fails the route lookup.
    """
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())


__all__ = [
    "INVALID_RECEIPT_HANDLE",
    "OK",
    "Session",
    "StatusError",
    "ensure_event_loop",
    "import_client",
]
