"""Typed errors that decide what the pipeline does with a message.

`InvalidMessage` is permanent: the message goes to `dead_letters` and is acknowledged.
`TransientError` is worth retrying: nothing is acknowledged, the message stays queued.
"""

from __future__ import annotations

QUOTE_LIMIT = 64
"""Characters of an untrusted value quoted in an error or a log line (`clip`'s default)."""
DETAIL_LIMIT = 1024
"""Characters of an `InvalidMessage` detail, and so of `dead_letters.error`."""


def clip(value: str | bytes, limit: int = QUOTE_LIMIT, *, quote: bool = True) -> str:
    """`value` for an error or a log line: its repr (or, `quote=False`, itself) cut to `limit`.

    Untrusted input must never reach a log line or `dead_letters.error` whole (a 1 MB field
    name would make a 1 MB line), so every quote of it goes through here. A cut value ends in
    `…` and says its full size: `'abc…' (1048576 bytes)`. Linear in `limit`, plus one encode
    to count the bytes of a long non-ASCII text.
    """
    quote = quote or isinstance(value, bytes)  # bytes are always shown as their repr
    if len(value) <= limit:
        return repr(value) if quote else str(value)
    head = value[:limit]
    shown = repr(head)[:-1] + "…" + repr(head)[-1] if quote else f"{head!s}…"
    if isinstance(value, str) and not value.isascii():
        size = len(value.encode("utf-8", "surrogatepass"))
    else:
        size = len(value)
    return f"{shown} ({size} bytes)"


class ConsumerError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidMessage(ConsumerError):
    """A message body that can never be normalized, whatever we retry.

    `reason` is a short stable code (`not_json`, `missing_field`, `unknown_event_type`, ...)
    used in `dead_letters.reason` and in metrics; `detail` says precisely what is wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        detail = clip(detail, DETAIL_LIMIT, quote=False)  # the last line against amplification
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientError(ConsumerError):
    """A failure outside the message (database down, network) that a retry may cure."""


class RejectedData(ConsumerError):
    """The database refuses a value of the batch (a constraint, a NUL in text, an int too big).

    Retrying the same data fails the same way, so the pipeline isolates the message that holds
    it and quarantines that one. Any other exception from a sink is a bug: nothing is
    acknowledged and the batch comes back, rather than good messages being quarantined.
    """


class ConfigError(ConsumerError):
    """A configuration that cannot run; `location` is the file and key path."""

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem
