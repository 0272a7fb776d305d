"""Loading the configuration (interfaces.md §3): one YAML file or a conf.d directory.

Every problem becomes a `ConfigError` whose location names the file and the key path
(`queues[1].mns.queue`; in a conf.d layout the queue's own file and the path inside it), so an
operator can go straight to the line. YAML is read node by node rather than with `safe_load`
because `safe_load` silently keeps the last of two duplicate keys and forgets line numbers.
Sizes, node counts and nesting are bounded as the files are read (`consumer.config.limits`).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from consumer.config.limits import (
    MAX_DEPTH,
    MAX_DIRECTORY_BYTES,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_QUEUES,
    MAX_REFERENCE_BYTES,
    LimitExceeded,
    compose,
    read_bounded,
    size_text,
)
from consumer.config.model import Config
from consumer.config.secrets import secret_items
from consumer.errors import ConfigError

KeyPath = tuple[str | int, ...]

CONF_D_MAIN = "consumer.yaml"
CONF_D_QUEUES = "queues.d"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate PATH (a YAML file or a conf.d directory).

    `env` replaces `os.environ` for `${NAME}` references (tests). Raises `ConfigErrors`.
    The returned `Config.secrets` holds every secret value, for log redaction.
    """
    loader = _Loader(os.environ if env is None else env)
    root = Path(path)
    if root.is_dir():
        data = loader.read_conf_d(root)
    elif root.is_file():
        data = loader.read_file(root)
    elif root.exists():
        raise ConfigErrors([ConfigError(str(root), "not a file or a directory")])
    else:
        raise ConfigErrors([ConfigError(str(root), "no such file or directory")])
    loader.check_queue_count(data)
    loader.check_unique(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loader.add_pydantic_error(error)
        loader.raise_if_errors()
        raise  # unreachable: every validation error was recorded
    loader.raise_if_errors()
    secret_paths = {where for where, _ in secret_items(config)}
    referenced = {value for where, value in loader.references if where in secret_paths}
    config._referenced_secrets = frozenset(value for value in referenced if value)
    return config


@dataclass
class _Document:
    """One YAML file and where its root sits in the combined configuration."""

    file: str
    prefix: KeyPath
    lines: dict[KeyPath, int] = field(default_factory=dict)


@dataclass
class _Problem:
    where: KeyPath  # in the combined configuration: ("queues", 2, ...) even in a queue file
    text: str
    document: _Document | None = None  # when `where` is not enough to find the file
    covers: bool = True  # validation errors at or under `where` are its fallout: drop them


class _Loader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.documents: list[_Document] = []
        self.problems: list[_Problem] = []
        self.references: list[tuple[KeyPath, str]] = []
        self._nodes = 0  # built, across all files
        self._composed = 0  # composed (aliases expanded), across all files
        self._bytes_read = 0  # of configuration files, across all files
        self._clashes = False
        self._base_dir = Path()
        self._constructor = yaml.SafeLoader("")

    # -- layouts ---------------------------------------------------------------------------

    def read_file(self, path: Path) -> Any:
        document = _Document(str(path), ())
        self.documents.append(document)
        data = self._parse(path, document)
        if data is not None and not isinstance(data, dict):
            self._fail(document, (), "the top level must be a mapping (log, sink, http, queues)")
        return data

    def read_conf_d(self, root: Path) -> Any:
        main = root / CONF_D_MAIN
        queues_dir = root / CONF_D_QUEUES
        if not main.is_file():
            raise ConfigErrors(
                [ConfigError(str(main), f"missing: a conf.d directory needs {CONF_D_MAIN}")]
            )
        document = _Document(str(main), ())
        self.documents.append(document)
        data = self._parse(main, document)
        # covers=False: the queue files' own errors are still worth reporting.
        if data is not None and not isinstance(data, dict):
            self._fail(
                document, (), "the top level must be a mapping (log, sink, http)", covers=False
            )
        if isinstance(data, dict) and "queues" in data:
            self._fail(
                document,
                ("queues",),
                f"queues belong in {CONF_D_QUEUES}/*.yaml, one file per queue",
                covers=False,
            )
        if not queues_dir.is_dir():
            raise ConfigErrors(
                [ConfigError(str(queues_dir), "missing: a conf.d directory needs this directory")]
            )
        files = sorted(_queue_files(queues_dir))
        _check_directory_size(root, [main, *files])
        queues: list[Any] = []
        for entry in files:
            if entry.suffix == ".yml":
                self.problems.append(
                    _Problem((), "queue files must end in .yaml", _Document(str(entry), ()), False)
                )
                continue
            queue_document = _Document(str(entry), ("queues", len(queues)))
            self.documents.append(queue_document)
            queue = self._parse(entry, queue_document)
            if queue is not None and not isinstance(queue, dict):
                self._fail(
                    queue_document,
                    queue_document.prefix,
                    "a queue file holds one mapping (name, source, ...)",
                )
            queues.append(queue)
        if not files:
            raise ConfigErrors(
                [ConfigError(str(queues_dir), "no queue files: add at least one NAME.yaml")]
            )
        combined = dict(data) if isinstance(data, dict) else {}
        combined.pop("queues", None)
        combined["queues"] = queues
        return combined

    def _parse(self, path: Path, document: _Document) -> Any:
        try:
            raw = read_bounded(path, MAX_FILE_BYTES, "a configuration file")
            self._bytes_read += len(raw)
            if self._bytes_read > MAX_DIRECTORY_BYTES:  # only a conf.d directory gets here
                raise LimitExceeded(
                    f"the files of the conf.d directory hold more than"
                    f" {size_text(MAX_DIRECTORY_BYTES)} up to this one,"
                    " the limit of a configuration directory"
                )
            text = raw.decode("utf-8")
        except OSError as exc:
            raise ConfigErrors([ConfigError(str(path), f"cannot read: {exc.strerror}")]) from None
        except LimitExceeded as exc:
            raise ConfigErrors([ConfigError(str(path), exc.problem)]) from None
        except UnicodeDecodeError as exc:
            raise ConfigErrors(
                [ConfigError(str(path), f"not UTF-8 text (byte {exc.start})")]
            ) from None
        try:
            node, composed = compose(text, MAX_NODES - self._composed)
            self._composed += composed
        except LimitExceeded as exc:
            raise ConfigErrors([_limit_error(str(path), exc)]) from None
        except yaml.MarkedYAMLError as exc:
            raise ConfigErrors([_syntax_error(str(path), text, exc)]) from None
        except yaml.YAMLError as exc:
            raise ConfigErrors([ConfigError(str(path), f"not valid YAML: {exc}")]) from None
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value == ""):
            raise ConfigErrors([ConfigError(str(path), "the file is empty")])
        self._base_dir = path.parent
        try:
            return self._build(node, document, document.prefix, 0)
        except yaml.MarkedYAMLError as exc:
            raise ConfigErrors([_syntax_error(str(path), text, exc)]) from None

    # -- YAML nodes to data ----------------------------------------------------------------

    def _build(self, node: yaml.Node, document: _Document, where: KeyPath, depth: int) -> Any:
        self._charge(document, where, depth)
        document.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._build_mapping(node, document, where, depth)
        if isinstance(node, yaml.SequenceNode):
            return [
                self._build(item, document, (*where, index), depth + 1)
                for index, item in enumerate(node.value)
            ]
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, str) and "$" in value:
            return self._expand(value, document, where)
        return value

    def _charge(self, document: _Document, where: KeyPath, depth: int) -> None:
        """Count one node built; stop a recursive alias (which composing counts once)."""
        self._nodes += 1
        if depth > MAX_DEPTH or self._nodes > MAX_NODES:
            self._fail(
                document,
                where[: len(document.prefix) + 1],
                "nested too deeply or too large (a recursive alias?)",
            )
            raise ConfigErrors(self._errors())

    def _build_mapping(
        self, node: yaml.MappingNode, document: _Document, where: KeyPath, depth: int
    ) -> dict[str, Any]:
        self._charge(document, where, depth)  # merged mappings count too
        result: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            line = key_node.start_mark.line + 1
            key = (
                self._constructor.construct_object(key_node, deep=True)
                if isinstance(key_node, yaml.ScalarNode)
                else key_node
            )
            if not isinstance(key, str):
                shown = "a mapping or list" if isinstance(key, yaml.Node) else repr(key)
                document.lines.setdefault((*where, str(key)), line)
                self._fail(document, (*where, str(key)), f"keys must be text, not {shown}")
                continue
            if key in key_lines:
                document.lines[(*where, key)] = line
                self._fail(
                    document,
                    (*where, key),
                    f"duplicate key (also at line {key_lines[key]}); YAML would keep only one",
                )
                continue
            key_lines[key] = line
            document.lines[(*where, key)] = line
            result[key] = self._build(value_node, document, (*where, key), depth + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self._fail(document, where, "<< must merge a mapping or a list of mappings")
                    continue
                for key, value in self._build_mapping(source, document, where, depth + 1).items():
                    result.setdefault(key, value)
        return result

    # -- ${...} references -----------------------------------------------------------------

    def _expand(self, text: str, document: _Document, where: KeyPath) -> str:
        out: list[str] = []
        index = 0
        while index < len(text):
            if text.startswith("$${", index):
                out.append("${")
                index += 3
                continue
            if not text.startswith("${", index):
                out.append(text[index])
                index += 1
                continue
            end = _closing_brace(text, index + 2)
            if end < 0:
                self._fail(document, where, "unclosed ${ (write $${ for a literal ${)")
                return text
            value = self._resolve(text[index + 2 : end], document, where)
            if value is None:
                return text
            self.references.append((where, value))
            out.append(value)
            index = end + 1
        return "".join(out)

    def _resolve(self, reference: str, document: _Document, where: KeyPath) -> str | None:
        if reference.startswith("file:"):
            return self._read_reference_file(reference[5:].strip(), document, where)
        if not _ENV_NAME.fullmatch(reference):
            self._fail(
                document,
                where,
                f"bad reference ${{{reference}}}: use ${{NAME}} for an environment variable "
                "or ${file:/path} for a file ($${ is a literal ${)",
            )
            return None
        value = self.env.get(reference)
        if value is None:
            self._fail(document, where, f"environment variable {reference} is not set")
            return None
        if value == "":
            self._fail(document, where, f"environment variable {reference} is empty")
            return None
        return value

    def _read_reference_file(self, raw: str, document: _Document, where: KeyPath) -> str | None:
        missing: list[str] = []

        def variable(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            value = self.env.get(name)
            if not value:
                missing.append(name)
                return ""
            return value

        expanded = _PATH_VAR.sub(variable, raw)
        if missing:
            hint = (
                " (systemd sets it for units with LoadCredential=)"
                if "CREDENTIALS_DIRECTORY" in missing
                else ""
            )
            self._fail(
                document,
                where,
                f"${{file:{raw}}}: environment variable {missing[0]} is not set{hint}",
            )
            return None
        if not expanded:
            self._fail(document, where, "${file:} needs a path")
            return None
        path = self._base_dir / expanded
        try:
            content = read_bounded(path, MAX_REFERENCE_BYTES, "a file read by ${file:}").decode(
                "utf-8"
            )
        except OSError as exc:
            self._fail(document, where, f"cannot read {path}: {exc.strerror}")
            return None
        except LimitExceeded as exc:
            self._fail(document, where, f"{path} is {exc.problem}")
            return None
        except UnicodeDecodeError:
            self._fail(document, where, f"{path} is not UTF-8 text")
            return None
        content = content.removesuffix("\n")
        if content == "":
            self._fail(document, where, f"{path} is empty")
            return None
        return content

    # -- cross-queue checks ----------------------------------------------------------------

    def check_queue_count(self, data: Any) -> None:
        """At most `MAX_QUEUES` queues, before any of them is validated."""
        if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
            return
        if len(data["queues"]) > MAX_QUEUES:
            self._fail_at(
                ("queues",),
                f"{len(data['queues'])} queues: more than {MAX_QUEUES}, the queue limit",
            )
            raise ConfigErrors(self._errors())

    def check_unique(self, data: Any) -> None:
        """Name and path clashes, located at the second queue (the model only sees the list)."""
        if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
            return
        names: dict[str, int] = {}
        paths: dict[str, int] = {}
        for index, queue in enumerate(data["queues"]):
            if not isinstance(queue, dict):
                continue
            name = queue.get("name")
            if isinstance(name, str):
                if name in names:
                    self._clash(
                        ("queues", index, "name"),
                        f"queue name {name!r} is already used by {self._describe(names[name])}",
                    )
                else:
                    names[name] = index
            http = queue.get("http")
            path = http.get("path") if isinstance(http, dict) else None
            if isinstance(path, str) and queue.get("source") == "http":
                if path in paths:
                    self._clash(
                        ("queues", index, "http", "path"),
                        f"http path {path!r} is already used by {self._describe(paths[path])}",
                    )
                else:
                    paths[path] = index

    def _clash(self, where: KeyPath, text: str) -> None:
        self._clashes = True
        self.problems.append(_Problem(where, text, covers=False))

    def _describe(self, index: int) -> str:
        document = self._document_for(("queues", index))
        if document.prefix:
            return document.file
        return f"queues[{index}]"

    # -- errors ----------------------------------------------------------------------------

    def add_pydantic_error(self, error: ErrorDetails) -> None:
        where, text = _translate(error)
        # An unresolved ${...}, a duplicate key or a name clash was reported already, more
        # precisely; what validation says about it is noise.
        if not where and self._clashes:
            return
        for problem in self.problems:
            if problem.covers and where[: len(problem.where)] == problem.where:
                return
        self._fail_at(where, text)

    def _fail(self, document: _Document, where: KeyPath, text: str, covers: bool = True) -> None:
        self.problems.append(_Problem(where, text, document, covers))

    def _fail_at(self, where: KeyPath, text: str) -> None:
        self.problems.append(_Problem(where, text))

    def _document_for(self, where: KeyPath) -> _Document:
        best = self.documents[0]
        for document in self.documents:
            if where[: len(document.prefix)] == document.prefix and len(document.prefix) > len(
                best.prefix
            ):
                best = document
        return best

    def _errors(self) -> list[ConfigError]:
        located: list[tuple[int, int, ConfigError]] = []
        for problem in self.problems:
            document = problem.document or self._document_for(problem.where)
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
            raise ConfigErrors(self._errors())


def format_key_path(parts: Iterable[str | int]) -> str:
    """`("queues", 1, "mns", "queue")` as `queues[1].mns.queue`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _line_for(document: _Document, where: KeyPath) -> int | None:
    # A missing key has no line of its own: point at the mapping that lacks it.
    for end in range(len(where), len(document.prefix) - 1, -1):
        line = document.lines.get(where[:end])
        if line is not None:
            return line
    return None


def _queue_files(directory: Path) -> list[Path]:
    """The queue files of queues.d; `ConfigErrors` past `MAX_QUEUES`, before reading any."""
    found: list[Path] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".yaml", ".yml")):
                continue
            found.append(Path(entry.path))
            if len(found) > MAX_QUEUES:
                raise ConfigErrors(
                    [
                        ConfigError(
                            str(directory),
                            f"more than {MAX_QUEUES} queue files, the queue limit",
                        )
                    ]
                )
    return found


def _check_directory_size(root: Path, files: list[Path]) -> None:
    """The files' sizes together, before any is read (reading checks again, as it goes)."""
    total = 0
    for path in files:
        with contextlib.suppress(OSError):  # reading it says why it cannot be read
            total += path.stat().st_size
    if total > MAX_DIRECTORY_BYTES:
        raise ConfigErrors(
            [
                ConfigError(
                    str(root),
                    f"its files hold {total:,} bytes: more than {size_text(MAX_DIRECTORY_BYTES)},"
                    " the limit of a configuration directory",
                )
            ]
        )


def _limit_error(file: str, exc: LimitExceeded) -> ConfigError:
    if exc.mark is None:
        return ConfigError(file, exc.problem)
    return ConfigError(
        f"{file}: line {exc.mark.line + 1}, column {exc.mark.column + 1}", exc.problem
    )


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    index = start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _syntax_error(file: str, text: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if exc.context and exc.problem and exc.context_mark is not None and mark is not None:
        if exc.context_mark.line != mark.line:
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        else:
            problem = f"{problem} ({exc.context})"
    if mark is None:
        return ConfigError(file, f"not valid YAML: {problem}")
    lines = text.splitlines()
    source_line = lines[mark.line] if mark.line < len(lines) else ""
    if "${" in source_line and ("{" in problem or "flow" in problem or "'{'" in problem):
        problem += '; inside { } or [ ] put ${...} references in quotes: "${NAME}"'
    return ConfigError(f"{file}: line {mark.line + 1}, column {mark.column + 1}", problem)


# -- pydantic errors in operator words -------------------------------------------------------

_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list",
}


def _translate(error: ErrorDetails) -> tuple[KeyPath, str]:
    loc = tuple(error["loc"])
    where, owner, info, annotation = _walk(loc)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    secret = info is not None and _mentions(info.annotation, SecretStr)
    value = error.get("input")
    shown = "(not shown: secret)" if secret else _short(value)
    if kind == "missing":
        return where, "required key is missing"
    if kind == "extra_forbidden":
        allowed = list(owner.model_fields) if owner is not None else []
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return where, f"unknown key{hint} (allowed here: {', '.join(allowed)})"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return where, f"bad value {shown}; allowed: {expected}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(ctx.get("discriminator", "mode")).strip("'")
        tags = ", ".join(_tags(annotation, discriminator))
        if kind == "union_tag_not_found":
            return (*where, discriminator), f"required key is missing; one of: {tags}"
        return (*where, discriminator), f"bad value {_short(ctx.get('tag'))}; allowed: {tags}"
    if kind in _EXPECTED:
        hint = ' (put it in quotes: "...")' if kind == "string_type" and _is_scalar(value) else ""
        got = "something else (not shown: secret)" if secret else _kind_of(value)
        return where, f"wrong type: expected {_EXPECTED[kind]}, got {got}{hint}"
    if kind == "string_pattern_mismatch":
        description = info.description if info is not None and info.description else None
        rule = description or f"must match {ctx.get('pattern')}"
        return where, f"bad value {shown}: must be {rule}" if description else f"{shown}: {rule}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return where, f"bad value {shown}: must be {words} {limit}"
    if kind == "too_short":
        if loc == ("queues",):
            return where, "no queues: add at least one"
        return where, f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return where, f"allows at most {ctx.get('max_length')} item(s)"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if secret:
        message = message.replace(repr(value), "(secret)")
    return where, message


def _walk(loc: KeyPath) -> tuple[KeyPath, type[BaseModel] | None, FieldInfo | None, Any]:
    """The shown key path (union tags dropped) and the model and field the error is about."""
    annotation: Any = Config
    owner: type[BaseModel] | None = None
    info: FieldInfo | None = None
    shown: list[str | int] = []
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            shown.append(part)
            annotation = get_args(annotation)[0] if get_origin(annotation) is list else None
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            info = annotation.model_fields.get(part)
            annotation = info.annotation if info is not None else None
            shown.append(part)
            continue
        member = _union_member(annotation, part)
        if member is not None:
            annotation = member  # a discriminated union's tag: not a key in the file
            continue
        shown.append(part)
        annotation = None
    return tuple(shown), owner, info, _unwrap(annotation)


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    if get_origin(annotation) not in (Union, types.UnionType):
        return []
    return [
        arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)
    ]


def _tags(annotation: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for model in _models(annotation):
        info = model.model_fields.get(discriminator)
        if info is not None:
            tags.extend(str(arg) for arg in get_args(info.annotation))
    return tags


def _union_member(annotation: Any, tag: str) -> type[BaseModel] | None:
    for model in _models(annotation):
        info = model.model_fields.get("mode")
        if info is not None and tag in get_args(info.annotation):
            return model
    return None


def _mentions(annotation: Any, target: type) -> bool:
    if annotation is target:
        return True
    return any(_mentions(arg, target) for arg in get_args(annotation))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float | bool) or value is None


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text {_short(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["CONF_D_MAIN", "CONF_D_QUEUES", "ConfigErrors", "format_key_path", "load_config"]
