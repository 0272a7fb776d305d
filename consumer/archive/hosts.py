"""`allow_hosts`: the hosts an event's recording link (and each redirect) may point at.

The links come from pushed bodies: without this check the archive would fetch whatever
address a sender names, internal ones included. A pattern is an exact host name or IP
address, or `*.domain`, which matches every name under the domain (not the domain itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


class HostPolicy:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.exact = frozenset(p.lower().strip("[]") for p in patterns if not p.startswith("*."))
        self.suffixes = tuple(p.lower()[1:] for p in patterns if p.startswith("*."))

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.exact or any(
            host.endswith(suffix) and len(host) > len(suffix) for suffix in self.suffixes
        )

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be fetched, or None when it may."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme!r} is not http or https"
        if not host:
            return "the URL has no host"
        if parts.username or parts.password:
            return "credentials in the URL"
        if not self.allows_host(host):
            return f"host {host[:253]!r} is not in recordings.allow_hosts"
        return None


__all__ = ["HostPolicy"]
