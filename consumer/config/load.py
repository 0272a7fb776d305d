"""Loading the configuration: one YAML file or a conf.d directory (docs/configuration.md).

Every problem becomes a `ConfigError` whose location names the file and the key path
(`queues[1].mns.queue`; in a conf.d layout the queue's own file and the path inside it). The jobs
are split: `yaml_reader` reads the files (lines kept, duplicate keys refused, sizes bounded),
`expand` resolves `${...}`, `translate` puts validation errors in an operator's words and
`problems` locates them. This module lays out the files and checks what spans queues.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from consumer.config.expand import Expander
from consumer.config.limits import MAX_DIRECTORY_BYTES, MAX_QUEUES, size_text
from consumer.config.model import Config
from consumer.config.problems import (
    ConfigErrors,
    Document,
    Problem,
    Problems,
    format_key_path,
    single,
)
from consumer.config.secrets import secret_items
from consumer.config.translate import translate
from consumer.config.yaml_reader import YamlReader

CONF_D_MAIN = "consumer.yaml"
CONF_D_QUEUES = "queues.d"


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate PATH (a YAML file or a conf.d directory).

    `env` replaces `os.environ` for `${NAME}` references (tests). Raises `ConfigErrors`.
    The returned `Config.secrets` holds every secret value, for log redaction.
    """
    loader = _Loader(os.environ if env is None else env)
    problems = loader.problems
    root = Path(path)
    if root.is_dir():
        data = loader.read_conf_d(root)
    elif root.is_file():
        data = loader.read_file(root)
    elif root.exists():
        raise single(str(root), "not a file or a directory")
    else:
        raise single(str(root), "no such file or directory")
    loader.check_queue_count(data)
    loader.check_unique(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            problems.add_validation_error(*translate(error))
        problems.raise_if_errors()
        raise  # unreachable: every validation error was recorded
    problems.raise_if_errors()
    secret_paths = {where for where, _ in secret_items(config)}
    referenced = {value for where, value in loader.expander.references if where in secret_paths}
    config._referenced_secrets = frozenset(value for value in referenced if value)
    return config


class _Loader:
    """The layout of the files (one file, or conf.d) and the checks that span queues."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.problems = Problems()
        self.documents = self.problems.documents
        self.expander = Expander(env, self.problems)
        self.reader = YamlReader(self.problems, self.expander)

    def read_file(self, path: Path) -> Any:
        document = Document(str(path), ())
        self.documents.append(document)
        data = self.reader.read(path, document)
        if data is not None and not isinstance(data, dict):
            self.problems.fail(
                document, (), "the top level must be a mapping (log, sink, http, queues)"
            )
        return data

    def read_conf_d(self, root: Path) -> Any:
        main = root / CONF_D_MAIN
        queues_dir = root / CONF_D_QUEUES
        if not main.is_file():
            raise single(str(main), f"missing: a conf.d directory needs {CONF_D_MAIN}")
        document = Document(str(main), ())
        self.documents.append(document)
        data = self.reader.read(main, document)
        # covers=False: the queue files' own errors are still worth reporting.
        if data is not None and not isinstance(data, dict):
            self.problems.fail(
                document, (), "the top level must be a mapping (log, sink, http)", covers=False
            )
        if isinstance(data, dict) and "queues" in data:
            self.problems.fail(
                document,
                ("queues",),
                f"queues belong in {CONF_D_QUEUES}/*.yaml, one file per queue",
                covers=False,
            )
        if not queues_dir.is_dir():
            raise single(str(queues_dir), "missing: a conf.d directory needs this directory")
        files = sorted(_queue_files(queues_dir))
        _check_directory_size(root, [main, *files])
        queues: list[Any] = []
        for entry in files:
            if entry.suffix == ".yml":
                self.problems.problems.append(
                    Problem((), "queue files must end in .yaml", Document(str(entry), ()), False)
                )
                continue
            queue_document = Document(str(entry), ("queues", len(queues)))
            self.documents.append(queue_document)
            queue = self.reader.read(entry, queue_document)
            if queue is not None and not isinstance(queue, dict):
                self.problems.fail(
                    queue_document,
                    queue_document.prefix,
                    "a queue file holds one mapping (name, source, ...)",
                )
            queues.append(queue)
        if not files:
            raise single(str(queues_dir), "no queue files: add at least one NAME.yaml")
        combined = dict(data) if isinstance(data, dict) else {}
        combined.pop("queues", None)
        combined["queues"] = queues
        return combined

    def check_queue_count(self, data: Any) -> None:
        """At most `MAX_QUEUES` queues, before any of them is validated."""
        if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
            return
        if len(data["queues"]) > MAX_QUEUES:
            self.problems.fail_at(
                ("queues",),
                f"{len(data['queues'])} queues: more than {MAX_QUEUES}, the queue limit",
            )
            raise ConfigErrors(self.problems.errors())

    def check_unique(self, data: Any) -> None:
        """Name and path clashes, located at the second queue: the one check of this rule."""
        if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
            return
        describe = self.problems.describe_queue
        names: dict[str, int] = {}
        paths: dict[str, int] = {}
        for index, queue in enumerate(data["queues"]):
            if not isinstance(queue, dict):
                continue
            name = queue.get("name")
            if isinstance(name, str):
                if name in names:
                    self.problems.clash(
                        ("queues", index, "name"),
                        f"queue name {name!r} is already used by {describe(names[name])}",
                    )
                else:
                    names[name] = index
            http = queue.get("http")
            path = http.get("path") if isinstance(http, dict) else None
            if isinstance(path, str) and queue.get("source") == "http":
                if path in paths:
                    self.problems.clash(
                        ("queues", index, "http", "path"),
                        f"http path {path!r} is already used by {describe(paths[path])}",
                    )
                else:
                    paths[path] = index


def _queue_files(directory: Path) -> list[Path]:
    """The queue files of queues.d; `ConfigErrors` past `MAX_QUEUES`, before reading any."""
    found: list[Path] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".yaml", ".yml")):
                continue
            found.append(Path(entry.path))
            if len(found) > MAX_QUEUES:
                raise single(str(directory), f"more than {MAX_QUEUES} queue files, the queue limit")
    return found


def _check_directory_size(root: Path, files: list[Path]) -> None:
    """The files' sizes together, before any is read (reading checks again, as it goes)."""
    total = 0
    for path in files:
        with contextlib.suppress(OSError):  # reading it says why it cannot be read
            total += path.stat().st_size
    if total > MAX_DIRECTORY_BYTES:
        raise single(
            str(root),
            f"its files hold {total:,} bytes: more than {size_text(MAX_DIRECTORY_BYTES)},"
            " the limit of a configuration directory",
        )


__all__ = ["CONF_D_MAIN", "CONF_D_QUEUES", "ConfigErrors", "format_key_path", "load_config"]
