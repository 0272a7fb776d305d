"""The push listener's wiring: each `source: http` queue's endpoint, with its pipeline behind it.

`consumer.sources.http` receives, authenticates and answers pushes and knows nothing of the
pipeline; this module gives each endpoint its `PushSource` and the `PushCommits` that receive
from it into the queue's pipeline, so the import goes from the runtime down, never up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import structlog

from consumer.config.model import Config, HttpQueue, QueueConfig
from consumer.errors import ConfigError
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.metrics import Metrics
from consumer.pipeline.push import PushCommits
from consumer.runtime.probes import Probes
from consumer.sinks.base import Sink
from consumer.sources.http import PushEndpoint, PushServer
from consumer.sources.http_auth import HuaweiAksk, NonceCache, authenticator
from consumer.sources.http_nonces import NonceLedger
from consumer.sources.push import PushSource

log = structlog.get_logger("consumer.http")

DEFAULT_PUSH_BUDGET = 5.0
"""Seconds of sink retries a push waits for before it is answered 503 (below senders' timeouts)."""


def push_endpoint(
    config: QueueConfig,
    sink: Sink,
    metrics: Metrics | None = None,
    *,
    budget: float = DEFAULT_PUSH_BUDGET,
    nonces: NonceCache | None = None,
) -> PushEndpoint:
    """The endpoint of one `source: http` queue, committing into `sink`."""
    if not isinstance(config, HttpQueue):
        raise ConfigError(f"queues.{config.name}", "is not a `source: http` queue")
    auth = authenticator(config.http.auth, nonces=nonces)
    ledger = NonceLedger(sink) if isinstance(auth, HuaweiAksk) else None
    if ledger is not None and not ledger.durable:
        log.warning("nonces are remembered per process only", queue=config.name, sink=sink)
    pipeline = Pipeline.for_queue(config, ledger or sink, metrics)
    budget = min(budget, config.retry.total.total_seconds())
    source = PushSource(config.name)
    return PushEndpoint(
        queue=config.name,
        format=config.format,
        path=config.http.path,
        source=source,
        commits=PushCommits(source, pipeline, budget),
        auth=auth,
        allow_from=tuple(ipaddress.ip_network(c, strict=False) for c in config.http.allow_from),
        max_body_bytes=config.http.max_body_bytes,
        ledger=ledger,
    )


def push_server(
    config: Config,
    sink: Sink,
    metrics: Metrics | None = None,
    *,
    queues: Sequence[str] = (),
    budget: float = DEFAULT_PUSH_BUDGET,
) -> PushServer:
    """A listener for the `source: http` queues of `config` (only `queues` if given)."""
    nonces = NonceCache()
    endpoints = [
        push_endpoint(queue, sink, metrics, budget=budget, nonces=nonces)
        for queue in config.queues
        if isinstance(queue, HttpQueue) and (not queues or queue.name in queues)
    ]
    return PushServer(
        endpoints,
        listen=config.http.listen,
        service=Probes(ready=sink_probe(sink), write_probe=getattr(sink, "write_probe", None)),
    )


def sink_probe(sink: Sink) -> Callable[[], object]:
    """Readiness: one cheap read (`SqlSink.schema_version`, else an empty dead-letter lookup)."""
    probe = getattr(sink, "schema_version", None)
    if callable(probe):
        return probe  # type: ignore[no-any-return]
    return lambda: sink.dead_letters([0])


__all__ = ["DEFAULT_PUSH_BUDGET", "push_endpoint", "push_server", "sink_probe"]
