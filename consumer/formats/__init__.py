"""The eight message formats (docs/formats.md): raw body bytes in, normalized events out.

Each module exposes `FORMAT`, a `Format` naming its provider and its `parse(body)` function.
`parse` returns one or more events, or raises `InvalidMessage`; it never raises anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from consumer.errors import InvalidMessage
from consumer.formats import _decode
from consumer.model import Normalized, Provider

Parser = Callable[[bytes], list[Normalized]]


JSON_TYPES = frozenset({"application/json", "text/json"})
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    provider: Provider
    parse: Parser
    answer: bytes = b"{}"
    """The body of the 200 a push sender expects once its push is stored."""
    accepts_form: bool = False
    """Whether the provider pushes it as a form (`application/x-www-form-urlencoded`) too."""

    def accepts(self, content_type: str) -> bool:
        """Whether a push of this content type may hold this format (JSON, or a form)."""
        if content_type in JSON_TYPES or content_type.endswith("+json"):
            return True
        return self.accepts_form and content_type == FORM_TYPE

    def __post_init__(self) -> None:
        # Every parse refuses a body over the size cap first, and runs (unless under 4 KiB)
        # with the cyclic GC paused (up to 5x faster on many small containers): what bounds
        # the CPU one message may cost (`_decode.bounded`).
        object.__setattr__(self, "parse", _decode.bounded(self.parse))


_MODULES = {
    "aliyun.voice_report": "aliyun_voice_report",
    "aliyun.voice_call_report": "aliyun_voice_call_report",
    "aliyun.voice_record_report": "aliyun_voice_record_report",
    "aliyun.voice_asr_report": "aliyun_voice_asr_report",
    "aliyun.outbound_bot": "aliyun_outbound_bot",
    "huawei.voice_call": "huawei_voice_call",
    "huawei.privacy_number": "huawei_privacy_number",
    "moor7.event": "moor7_event",
}

FORMAT_NAMES: tuple[str, ...] = tuple(_MODULES)


def get_format(name: str) -> Format:
    """The format called `name`; a `KeyError` naming the known ones otherwise."""
    try:
        module = _MODULES[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMAT_NAMES)}") from None
    fmt: Format = import_module(f"{__name__}.{module}").FORMAT
    return fmt


def parse(name: str, body: bytes) -> list[Normalized]:
    """Normalize one raw message body with the format called `name`."""
    return get_format(name).parse(body)


__all__ = ["FORMAT_NAMES", "Format", "InvalidMessage", "Parser", "get_format", "parse"]
