"""The optional dependencies: each transport's SDK is an extra of the package, not a hard need.

`pip install 'consumer[mns]'` brings the MNS SDK, `consumer[rocketmq]` the RocketMQ 5 client,
`consumer[s3]` boto3 for an `s3://` recordings store, `consumer[reconcile]` the Aliyun query
SDKs. An extra's SDK is imported lazily, only where it is used; call `require(extra, ...)` just
before that import, so that a user without it gets a `ConfigError` naming the extra to install
rather than a bare `ModuleNotFoundError`. A transport's extra carries the name of its `source:`.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from consumer.errors import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "mns": ("mns", "alibabacloud_dybaseapi20170525"),
    "rocketmq": ("rocketmq",),
    "s3": ("boto3",),
    "reconcile": ("alibabacloud_dyvmsapi20170525", "alibabacloud_outboundbot20191226"),
}


class MissingExtra(ConfigError):
    """The configuration needs an optional dependency that is not installed."""

    def __init__(self, location: str, extra: str, module: str) -> None:
        super().__init__(
            location,
            f"needs the optional dependencies of consumer[{extra}] ({module} is not installed):"
            f" pip install 'consumer[{extra}]'",
        )
        self.extra = extra


def require(extra: str, location: str) -> None:
    """Raise `MissingExtra` (at `location`) unless the modules of `extra` can be imported.

    A name that is no extra (a transport without an SDK of its own, like `http`) needs nothing.
    """
    for module in EXTRAS.get(extra, ()):
        if find_spec(module) is None:
            raise MissingExtra(location, extra, module)


def queue_extra(queue: Any) -> str:
    """The extra a queue needs: its `source:`, but none for RocketMQ 4.x (`protocol: remoting`),
    whose binding is installed apart (`make rocketmq4`; docs/rocketmq-remoting.md)."""
    if getattr(getattr(queue, "rocketmq", None), "protocol", None) == "remoting":
        return ""
    return str(queue.source)


__all__ = ["EXTRAS", "MissingExtra", "queue_extra", "require"]
