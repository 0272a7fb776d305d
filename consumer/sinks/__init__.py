"""Where normalized events are stored: SQLite (the default) or PostgreSQL, plus forwarders.

`open_sink` builds the sink of a `sink:` section; `open_forward_runner` the thread-ready runner
that feeds its `forward:` entries from the outbox. The runtime calls `migrate()` once per
process at start-up (safe when several workers start at once).

`PostgresSink` (psycopg and its pool, ~15 MB) is imported only when a PostgreSQL URL is opened,
so a worker on SQLite never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consumer.config.model import SinkConfig
from consumer.errors import ConfigError
from consumer.sinks.base import DeadLetter, DeadLetterRow, Sink, StoredEvent
from consumer.sinks.forward import ForwardRunner, build_all, forward_name
from consumer.sinks.sql import SqlSink
from consumer.sinks.sqlite import SqliteSink

if TYPE_CHECKING:
    from consumer.sinks.postgres import PostgresSink


def open_sink(config: SinkConfig) -> SqlSink:
    """The sink of `config.url`, writing outbox rows for each of `config.forward`.

    Opening connects nowhere yet: a database that is down shows up as `TransientError` from
    `migrate()` or `store()`.
    """
    names = [forward_name(entry) for entry in config.forward]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError("sink.forward", f"configured twice: {', '.join(duplicates)}")
    if config.url.startswith("sqlite:///"):
        return SqliteSink.from_url(config.url, forwarders=names)
    if config.url.startswith(("postgresql://", "postgres://")):
        from consumer.sinks.postgres import PostgresSink  # noqa: PLC0415 - psycopg on demand

        return PostgresSink.from_url(config.url, forwarders=names)
    raise ConfigError("sink.url", f"must start with sqlite:/// or postgresql://: {config.url!r}")


def open_forward_runner(config: SinkConfig, sink: SqlSink) -> ForwardRunner | None:
    """The runner of `config.forward` on `sink`'s outbox; None when nothing is forwarded."""
    if not config.forward:
        return None
    return ForwardRunner(sink, build_all(config.forward))


def __getattr__(name: str) -> Any:
    """`consumer.sinks.PostgresSink`, imported on first use."""
    if name == "PostgresSink":
        from consumer.sinks.postgres import PostgresSink  # noqa: PLC0415 - psycopg on demand

        return PostgresSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DeadLetter",
    "DeadLetterRow",
    "ForwardRunner",
    "PostgresSink",
    "Sink",
    "SqlSink",
    "SqliteSink",
    "StoredEvent",
    "open_forward_runner",
    "open_sink",
]
