"""Where a push goes: each `source: http` queue's endpoint, and the listener's path table.

A path names one queue (up to a trailing slash), or one queue and a path token for the queues
whose authentication takes it (`http_auth`); the listener's reserved paths name none.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from consumer.config.model import RESERVED_HTTP_PATHS
from consumer.errors import ConfigError
from consumer.formats import Format, get_format
from consumer.sources.http_auth import Authenticator
from consumer.sources.http_nonces import NonceLedger
from consumer.sources.push import PushSource

RESERVED_PATHS = RESERVED_HTTP_PATHS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Commits(Protocol):
    """What commits a queue's requests, as the listener needs it (`pipeline.push.PushCommits`)."""

    last_failure: str | None
    """Why the last commit did not commit (None once one has): readiness reads it."""

    def close(self) -> None:
        """Release what commits (after the source's `drain`)."""
        ...


@dataclass
class PushEndpoint:
    """One `source: http` queue as the listener sees it."""

    queue: str
    format: str
    path: str
    source: PushSource
    """Where a request's message waits for its commit and answer."""
    commits: Commits
    """What receives from `source` into the queue's pipeline (`consumer.runtime.push` wires it)."""
    auth: Authenticator
    allow_from: tuple[Network, ...] = ()
    max_body_bytes: int = 1_048_576
    ledger: NonceLedger | None = None
    """Where signed requests' nonces are remembered with their events (`huawei_aksk` queues)."""

    def allows(self, remote: str | None) -> bool:
        if not self.allow_from:
            return True
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow_from)

    @functools.cached_property
    def parser(self) -> Format:
        """The queue's format, looked up once (not an import-machinery call per request)."""
        return get_format(self.format)


class Routes:
    """The queues' paths: refuses reserved and repeated ones when built."""

    def __init__(self, endpoints: Sequence[PushEndpoint]) -> None:
        self._routes: dict[str, PushEndpoint] = {}
        for endpoint in endpoints:
            key = endpoint.path.rstrip("/")
            where = f"queues.{endpoint.queue}.http.path"
            if (key or "/") in RESERVED_PATHS:
                raise ConfigError(where, f"{endpoint.path} is reserved by the listener")
            if key in self._routes:
                other = self._routes[key].queue
                raise ConfigError(where, f"{endpoint.path} is already the path of queue {other}")
            self._routes[key] = endpoint

    def match(self, path: str) -> tuple[PushEndpoint, str | None] | None:
        """The endpoint of `path`, and its path token if it has one."""
        key = path.rstrip("/")
        endpoint = self._routes.get(key)
        if endpoint is not None:
            return endpoint, None
        parent, _, segment = key.rpartition("/")
        endpoint = self._routes.get(parent)
        if endpoint is not None and segment and endpoint.auth.accepts_path_token():
            return endpoint, segment
        return None


def parse_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8080`, `0.0.0.0:8080` or `[::1]:8080` to host and port."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("http.listen", f"not HOST:PORT: {listen!r}")
    return host.strip("[]"), int(port)


__all__ = ["RESERVED_PATHS", "Commits", "PushEndpoint", "Routes", "parse_listen"]
