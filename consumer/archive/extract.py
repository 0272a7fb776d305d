"""Which events name a recording, and the dedupe key that makes it one `recordings` row.

A link is the same recording when the provider, the call id and the link without its query
string agree (providers re-sign links: a new query is not a new file); a Huawei Private Number
recording is named by `recordObjectName` (with `recordDomain`, which locates it), so the same
object name is the same recording.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from consumer.model import CallEvent

HUAWEI_OBJECT = "huawei-object"
"""`Wanted.kind` of a recordDomain/recordObjectName pair (resolved through the download API)."""
LINK = "link"

# Extras that carry a second recording of the same call (Outbound Bot RecordingReady mkvUrl).
_EXTRA_LINKS = ("mkv_url",)
# The object name of a recording in the provider's storage (with recordDomain: Huawei).
_OBJECT_NAME = "recordObjectName"
# Every extra that may name a recording: without one (and a recording_url), there is none.
_NAMING_EXTRAS = frozenset({*_EXTRA_LINKS, _OBJECT_NAME})
_MAX_SOURCE = 4096  # a longer "link" is not one: the row would only hold garbage


@dataclass(frozen=True, slots=True)
class Wanted:
    provider: str
    call_id: str | None
    source: str
    """The link, or `recordDomain/recordObjectName`."""
    key: str
    """The dedupe key: a hex digest, unique in `recordings.source_key`."""

    @property
    def kind(self) -> str:
        return source_kind(self.source)


def source_kind(source: str) -> str:
    """`LINK` or `HUAWEI_OBJECT`, from a `recordings.source`."""
    return LINK if source.startswith(("http://", "https://")) else HUAWEI_OBJECT


def link_key(provider: str, call_id: str | None, link: str) -> str:
    parts = urlsplit(link)
    bare = urlunsplit(parts._replace(query="", fragment=""))
    return _digest(LINK, provider, call_id or "", bare)


def object_key(provider: str, object_name: str) -> str:
    return _digest(HUAWEI_OBJECT, provider, object_name)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def recordings(event: CallEvent) -> list[Wanted]:
    """The recordings `event` names (usually none, at most a few)."""
    if event.recording_url is None and event.extras.keys().isdisjoint(_NAMING_EXTRAS):
        return []  # most events: one test instead of the lists and lookups of `_named`
    return _named(event)


def _named(event: CallEvent) -> list[Wanted]:
    provider = event.provider.value
    found: dict[str, Wanted] = {}
    links = [event.recording_url, *(event.extras.get(name) for name in _EXTRA_LINKS)]
    for link in links:
        if isinstance(link, str) and _is_link(link):
            key = link_key(provider, event.call_id, link)
            found.setdefault(key, Wanted(provider, event.call_id, link, key))
    domain = event.extras.get("recordDomain")
    name = event.extras.get(_OBJECT_NAME)
    if isinstance(domain, str) and isinstance(name, str) and domain and name:
        source = f"{domain}/{name}"
        if len(source) <= _MAX_SOURCE:
            key = object_key(provider, name)
            found.setdefault(key, Wanted(provider, event.call_id, source, key))
    return list(found.values())


def _is_link(text: str) -> bool:
    if len(text) > _MAX_SOURCE:
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


__all__ = [
    "HUAWEI_OBJECT",
    "LINK",
    "Wanted",
    "link_key",
    "object_key",
    "recordings",
    "source_kind",
]
