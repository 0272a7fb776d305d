"""Limits that hold before work is done: a configuration costs bounded time and memory to reject.

Each limit is checked at the cheapest point: the size of a file before it is read (and while it
is read: a pipe or `/proc` file has no size), the number of queue files while the directory is
listed, and YAML nodes while the document is composed, with every alias counted as the size of
what it stands for, so a merge-key or "billion laughs" bomb stops after the budget, not after
its expansion. A configuration file is small: an operator with more than a thousand queues
runs more daemons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_FILE_BYTES = 1 << 20
"""One configuration file (consumer.yaml or a queue file)."""
MAX_DIRECTORY_BYTES = 4 << 20
"""All files of a conf.d directory together."""
MAX_REFERENCE_BYTES = 64 << 10
"""A file read by a `${file:...}` reference (a secret)."""
MAX_QUEUES = 1000
"""Queues in one configuration, and so queue files in queues.d."""
MAX_NODES = 50_000
"""YAML nodes of the whole configuration, with aliases and merges expanded: a thousand queues
of twenty-odd keys and list items each fit, and composing that many takes well under a second."""
MAX_DEPTH = 64
"""Nesting of mappings and lists."""


class LimitExceeded(Exception):
    """A limit was reached; `mark` is where in the YAML text, if anywhere."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


def size_text(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} bytes"


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes; `LimitExceeded` as soon as it holds more than `limit`.

    Raises `OSError` as `open` does.
    """
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise LimitExceeded(f"larger than {size_text(limit)}, the limit of {what}")
    return data


class _BoundedComposer(Composer):
    """PyYAML's composer under a node budget and a depth limit.

    Nodes are counted as they are composed, an alias as the expanded size of its target, so
    the count is what building the data would visit. A recursive alias (to a node still being
    composed) counts one; building stops it by depth.
    """

    def _limits(self, budget: int, max_depth: int) -> None:
        self.budget = budget
        self.max_depth = max_depth
        self.nodes = 0  # expanded nodes composed so far
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size, once composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark: yaml.Mark = self.peek_event().start_mark  # type: ignore[attr-defined]
        if self.check_event(AliasEvent):  # type: ignore[attr-defined]
            target = super().compose_node(parent, index)
            assert target is not None  # an alias stands for a node, or composing raised
            self._charge(self._sizes.get(id(target), 1), mark)
            return target
        self._depth += 1
        if self._depth > self.max_depth:
            raise LimitExceeded(_deeper_than(self.max_depth), mark)
        before = self.nodes
        self._charge(1, mark)
        node = super().compose_node(parent, index)
        assert node is not None  # a scalar, sequence or mapping event starts a node
        self._depth -= 1
        self._sizes[id(node)] = self.nodes - before
        return node

    def _charge(self, nodes: int, mark: yaml.Mark) -> None:
        self.nodes += nodes
        if self.nodes > self.budget:
            raise LimitExceeded(
                f"more than {MAX_NODES:,} YAML nodes with aliases and merges expanded,"
                " the node limit",
                mark,
            )


class _Loader(Reader, Scanner, Parser, _BoundedComposer, Resolver):
    """PyYAML's pure-Python parser (about 20 times slower than libyaml)."""

    def __init__(self, stream: str, budget: int, max_depth: int) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        Resolver.__init__(self)
        self._limits(budget, max_depth)


def _fast_loader() -> type[_BoundedComposer] | None:
    """The same composer on libyaml's parser (about 20 times faster), where PyYAML has it."""
    try:
        from yaml._yaml import CParser  # noqa: PLC0415
    except ImportError:
        return None

    class _CLoader(_BoundedComposer, CParser, Resolver):
        def __init__(self, stream: str, budget: int, max_depth: int) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            Resolver.__init__(self)
            self._limits(budget, max_depth)

    return _CLoader


_CLoader = _fast_loader()


def compose(
    text: str, budget: int = MAX_NODES, max_depth: int = MAX_DEPTH
) -> tuple[yaml.Node | None, int]:
    """The single document of `text` and the expanded nodes it holds (within `budget`).

    libyaml parses where PyYAML has it (every PyYAML wheel does), else PyYAML's own parser;
    their syntax errors are worded differently. libyaml's scanner stops at 1000 nested flow
    collections by itself, ahead of the composer: that is the depth limit too.
    """
    if _CLoader is None:
        return _run(_Loader(text, budget, max_depth))
    try:
        return _run(_CLoader(text, budget, max_depth))  # type: ignore[call-arg]
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):
            raise LimitExceeded(_deeper_than(max_depth), exc.problem_mark) from None
        raise


def _deeper_than(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels, the depth limit"


def _run(loader: _BoundedComposer) -> tuple[yaml.Node | None, int]:
    try:
        return loader.get_single_node(), loader.nodes
    finally:
        loader.dispose()  # type: ignore[attr-defined]


__all__ = [
    "MAX_DEPTH",
    "MAX_DIRECTORY_BYTES",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_QUEUES",
    "MAX_REFERENCE_BYTES",
    "LimitExceeded",
    "compose",
    "read_bounded",
    "size_text",
]
