"""Where a configuration problem is: the file, the key path inside it and the line.

Every reader (the YAML reader, the `${...}` expander, the cross-queue checks, the translated
validation errors) records its problems here; `errors()` turns them into `ConfigError`s located
as `<file>: <key path>` (in a conf.d layout the queue's own file and the path inside it), sorted
in file order, so an operator can go straight to the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from consumer.errors import ConfigError

KeyPath = tuple[str | int, ...]


class ConfigErrors(ConfigError):
    """Several configuration problems at once; `errors` holds each, in file order.

    It is a `ConfigError` itself (the first problem), so callers that want one message keep
    working, and `consumer check` can print them all.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.location, first.problem)
        self.errors = errors
        if len(errors) > 1:
            self.args = (f"{first} (and {len(errors) - 1} more)",)


def single(location: str, problem: str) -> ConfigErrors:
    """One problem that stops reading at once (a missing file, a syntax error)."""
    return ConfigErrors([ConfigError(location, problem)])


@dataclass
class Document:
    """One YAML file and where its root sits in the combined configuration."""

    file: str
    prefix: KeyPath
    lines: dict[KeyPath, int] = field(default_factory=dict)


@dataclass
class Problem:
    where: KeyPath  # in the combined configuration: ("queues", 2, ...) even in a queue file
    text: str
    document: Document | None = None  # when `where` is not enough to find the file
    covers: bool = True  # validation errors at or under `where` are its fallout: drop them


class Problems:
    """The documents read so far and the problems found in them."""

    def __init__(self) -> None:
        self.documents: list[Document] = []
        self.problems: list[Problem] = []

    def fail(self, document: Document, where: KeyPath, text: str, covers: bool = True) -> None:
        self.problems.append(Problem(where, text, document, covers))

    def fail_at(self, where: KeyPath, text: str) -> None:
        self.problems.append(Problem(where, text))

    def clash(self, where: KeyPath, text: str) -> None:
        """Two queues claim one name or path (checked by the loader alone: it knows the files)."""
        self.problems.append(Problem(where, text, covers=False))

    def add_validation_error(self, where: KeyPath, text: str) -> None:
        # An unresolved ${...} or a duplicate key was reported already, more precisely; what
        # validation says about it is noise.
        for problem in self.problems:
            if problem.covers and where[: len(problem.where)] == problem.where:
                return
        self.fail_at(where, text)

    def document_for(self, where: KeyPath) -> Document:
        best = self.documents[0]
        for document in self.documents:
            if where[: len(document.prefix)] == document.prefix and len(document.prefix) > len(
                best.prefix
            ):
                best = document
        return best

    def describe_queue(self, index: int) -> str:
        """The queue as the operator knows it: its file in conf.d, else `queues[i]`."""
        document = self.document_for(("queues", index))
        if document.prefix:
            return document.file
        return f"queues[{index}]"

    def errors(self) -> list[ConfigError]:
        located: list[tuple[int, int, ConfigError]] = []
        for problem in self.problems:
            document = problem.document or self.document_for(problem.where)
            relative = problem.where[len(document.prefix) :]
            line = _line_for(document, problem.where)
            path_text = format_key_path(relative)
            location = f"{document.file}: {path_text}" if path_text else document.file
            text = f"{problem.text} (line {line})" if line else problem.text
            order = self.documents.index(document) if document in self.documents else -1
            located.append((order, line or 0, ConfigError(location, text)))
        located.sort(key=lambda item: (item[0], item[1]))
        return [error for _, _, error in located]

    def raise_if_errors(self) -> None:
        if self.problems:
            raise ConfigErrors(self.errors())


def format_key_path(parts: Iterable[str | int]) -> str:
    """`("queues", 1, "mns", "queue")` as `queues[1].mns.queue`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _line_for(document: Document, where: KeyPath) -> int | None:
    # A missing key has no line of its own: point at the mapping that lacks it.
    for end in range(len(where), len(document.prefix) - 1, -1):
        line = document.lines.get(where[:end])
        if line is not None:
            return line
    return None


__all__ = [
    "ConfigErrors",
    "Document",
    "KeyPath",
    "Problem",
    "Problems",
    "format_key_path",
    "single",
]
