"""YAML read node by node: line numbers kept, duplicate keys refused, sizes bounded.

`yaml.safe_load` silently keeps the last of two duplicate keys and forgets line numbers, so the
reader builds the data from the composed nodes itself, recording each key path's line in its
`Document`. Sizes, node counts and nesting are bounded as the files are read
(`consumer.config.limits`); string scalars go through the `${...}` expander.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from consumer.config.expand import Expander
from consumer.config.limits import (
    MAX_DEPTH,
    MAX_DIRECTORY_BYTES,
    MAX_FILE_BYTES,
    MAX_NODES,
    LimitExceeded,
    compose,
    read_bounded,
    size_text,
)
from consumer.config.problems import ConfigErrors, Document, KeyPath, Problems, single
from consumer.errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlReader:
    """Reads the files of one configuration; the bounds hold across all of them."""

    def __init__(self, problems: Problems, expander: Expander) -> None:
        self.problems = problems
        self.expander = expander
        self._nodes = 0  # built, across all files
        self._composed = 0  # composed (aliases expanded), across all files
        self._bytes_read = 0  # of configuration files, across all files
        self._constructor = yaml.SafeLoader("")

    def read(self, path: Path, document: Document) -> Any:
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
            raise single(str(path), f"cannot read: {exc.strerror}") from None
        except LimitExceeded as exc:
            raise single(str(path), exc.problem) from None
        except UnicodeDecodeError as exc:
            raise single(str(path), f"not UTF-8 text (byte {exc.start})") from None
        try:
            node, composed = compose(text, MAX_NODES - self._composed)
            self._composed += composed
        except LimitExceeded as exc:
            raise ConfigErrors([_limit_error(str(path), exc)]) from None
        except yaml.MarkedYAMLError as exc:
            raise ConfigErrors([_syntax_error(str(path), text, exc)]) from None
        except yaml.YAMLError as exc:
            raise single(str(path), f"not valid YAML: {exc}") from None
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value == ""):
            raise single(str(path), "the file is empty")
        self.expander.base_dir = path.parent
        try:
            return self._build(node, document, document.prefix, 0)
        except yaml.MarkedYAMLError as exc:
            raise ConfigErrors([_syntax_error(str(path), text, exc)]) from None

    def _build(self, node: yaml.Node, document: Document, where: KeyPath, depth: int) -> Any:
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
            return self.expander.expand(value, document, where)
        return value

    def _charge(self, document: Document, where: KeyPath, depth: int) -> None:
        """Count one node built; stop a recursive alias (which composing counts once)."""
        self._nodes += 1
        if depth > MAX_DEPTH or self._nodes > MAX_NODES:
            self.problems.fail(
                document,
                where[: len(document.prefix) + 1],
                "nested too deeply or too large (a recursive alias?)",
            )
            raise ConfigErrors(self.problems.errors())

    def _build_mapping(
        self, node: yaml.MappingNode, document: Document, where: KeyPath, depth: int
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
                self.problems.fail(document, (*where, str(key)), f"keys must be text, not {shown}")
                continue
            if key in key_lines:
                document.lines[(*where, key)] = line
                self.problems.fail(
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
                    self.problems.fail(
                        document, where, "<< must merge a mapping or a list of mappings"
                    )
                    continue
                for key, value in self._build_mapping(source, document, where, depth + 1).items():
                    result.setdefault(key, value)
        return result


def _limit_error(file: str, exc: LimitExceeded) -> ConfigError:
    if exc.mark is None:
        return ConfigError(file, exc.problem)
    return ConfigError(
        f"{file}: line {exc.mark.line + 1}, column {exc.mark.column + 1}", exc.problem
    )


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


__all__ = ["YamlReader"]
