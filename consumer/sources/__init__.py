"""The transports, one module each, opened by the kind a queue names in `source:`.

This is the one place that maps a transport's name to its code, as `consumer.formats` does for
formats. A pull transport's module exposes `open_queue(queue) -> Source`; it is imported only
when a queue of its kind is opened, so an MNS worker never loads gRPC and a RocketMQ worker
never loads the Aliyun SDKs (`bench/bench_daemon.py` measures it).

Adding a transport: its module here, a line in `_MODULES`, its member of
`consumer.config.queues.QueueConfig` (the `source:` value, its section, its defaults), its tests.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from consumer.errors import ConfigError
from consumer.sources.base import Message, Source

if TYPE_CHECKING:
    from consumer.config.model import QueueBase

_MODULES = {
    "mns": "mns",
    "rocketmq": "rocketmq",
    "remoting": "remoting",
    "http": "http",
}

TRANSPORTS: tuple[str, ...] = tuple(_MODULES)
"""What `QueueBase.transport` may be: a `source:` value, or `remoting` (a `source: rocketmq`
queue with `protocol: remoting`, RocketMQ 4.x)."""


def open_source(queue: QueueBase) -> Source:
    """The source of a pull queue; a `ConfigError` for a push queue (the listener serves it)."""
    if not queue.pull:
        raise ConfigError(f"queues.{queue.name}.source", f"{queue.kind} is not a pull source")
    module = import_module(f"{__name__}.{_MODULES[queue.transport]}")
    source: Source = module.open_queue(queue)
    return source


__all__ = ["TRANSPORTS", "Message", "Source", "open_source"]
