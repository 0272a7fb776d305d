"""Typed errors that decide what the pipeline does with a message.

`InvalidMessage` is permanent: the message goes to `dead_letters` and is acknowledged.
`TransientError` is worth retrying: nothing is acknowledged, the message stays queued.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidMessage(ConsumerError):
    """A message body that can never be normalized, whatever we retry.

    `reason` is a short stable code (`not_json`, `missing_field`, `unknown_event_type`, ...)
    used in `dead_letters.reason` and in metrics; `detail` says precisely what is wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
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
