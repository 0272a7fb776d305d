"""Pathological configurations, written to disk: shared by the limit tests and their benchmark.

Each writer returns the path to give `consumer check -c`, and the words its error must hold
(the limit it trips).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

HEADER = "sink: {url: 'sqlite:///var/events.db'}\n"


def queue_yaml(n: int, indent: str = "  - ") -> str:
    """One valid HTTP push queue, as an item of `queues:` (or, indent='', a queue file)."""
    rest = " " * len(indent)
    return (
        f"{indent}name: q{n:07d}\n"
        f"{rest}source: http\n"
        f"{rest}format: moor7.event\n"
        f"{rest}http: {{path: /push/q{n:07d}, auth: {{mode: none}}}}\n"
    )


def merge_bomb(directory: Path) -> tuple[Path, str]:
    """Under 1 KB: ten levels, each merging ten copies of the level below (10^10 merges)."""
    lines = ["b0: &b0 {}"]
    for level in range(1, 11):
        copies = ", ".join([f"*b{level - 1}"] * 10)
        lines.append(f"b{level}: &b{level} {{<<: [{copies}]}}")
    path = directory / "merge-bomb.yaml"
    path.write_text(HEADER + "\n".join(lines) + "\nqueues: []\n", encoding="utf-8")
    return path, "the node limit"


def billion_laughs(directory: Path) -> tuple[Path, str]:
    """Nine levels of ten aliases each: 10^9 strings from under a kilobyte."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        copies = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{copies}]")
    path = directory / "billion-laughs.yaml"
    path.write_text(HEADER + "\n".join(lines) + "\nqueues: []\n", encoding="utf-8")
    return path, "the node limit"


def many_queues(directory: Path, queues: int = 700_000) -> tuple[Path, str]:
    """700,000 valid queues in about 55 MB: rejected by its size before it is parsed."""
    path = directory / "many-queues.yaml"
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "queues:\n")
        out.writelines(
            f"- {{name: q{n}, source: http, format: moor7.event, http: {{path: /{n}}}}}\n"
            for n in range(queues)
        )
    return path, "the limit of a configuration file"


def queues_over_the_limit(directory: Path, queues: int = 1001) -> tuple[Path, str]:
    """A small file (under 100 KB) with one queue more than allowed."""
    path = directory / "over-the-queue-limit.yaml"
    path.write_text(
        HEADER + "queues:\n" + "".join(queue_yaml(n) for n in range(queues)), encoding="utf-8"
    )
    return path, "the queue limit"


def deep_nesting(directory: Path, depth: int = 100_000) -> tuple[Path, str]:
    """A list nested 100,000 levels deep (200 KB)."""
    path = directory / "deep.yaml"
    path.write_text(HEADER + "x: " + "[" * depth + "]" * depth + "\nqueues: []\n")
    return path, "the depth limit"


def huge_scalar(directory: Path, size: int = 50 << 20) -> tuple[Path, str]:
    """One 50 MB string."""
    path = directory / "huge-scalar.yaml"
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "x: ")
        chunk = "x" * (1 << 20)
        for _ in range(size >> 20):
            out.write(chunk)
        out.write("\nqueues: []\n")
    return path, "the limit of a configuration file"


def conf_d(directory: Path, name: str) -> tuple[Path, Path]:
    root = directory / name
    (root / "queues.d").mkdir(parents=True)
    (root / "consumer.yaml").write_text(HEADER, encoding="utf-8")
    return root, root / "queues.d"


def many_queue_files(directory: Path, files: int = 1001) -> tuple[Path, str]:
    """A conf.d directory with one queue file more than allowed."""
    root, queues = conf_d(directory, "many-files.d")
    for n in range(files):
        (queues / f"q{n:07d}.yaml").write_text(queue_yaml(n, indent=""), encoding="utf-8")
    return root, "the queue limit"


def large_directory(directory: Path, files: int = 5, size: int = 1000 << 10) -> tuple[Path, str]:
    """A conf.d directory of five queue files, each under the file limit, 5 MB together."""
    root, queues = conf_d(directory, "large.d")
    padding = "#" * 1000 + "\n"
    for n in range(files):
        text = queue_yaml(n, indent="") + padding * (size // len(padding))
        (queues / f"q{n:07d}.yaml").write_text(text, encoding="utf-8")
    return root, "the limit of a configuration directory"


def endless_secret(directory: Path) -> tuple[Path, str]:
    """A secret read from a device that never ends."""
    path = directory / "endless-secret.yaml"
    path.write_text(
        HEADER
        + "queues:\n"
        + queue_yaml(0).replace(
            "auth: {mode: none}", 'auth: {mode: token, token: "${file:/dev/zero}"}'
        ),
        encoding="utf-8",
    )
    return path, "the limit of a file read by ${file:}"


BOMBS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "merge-bomb": merge_bomb,
    "billion-laughs": billion_laughs,
    "55MB-700k-queues": many_queues,
    "1001-queues": queues_over_the_limit,
    "deep-nesting": deep_nesting,
    "huge-scalar": huge_scalar,
    "1001-queue-files": many_queue_files,
    "5MB-conf.d": large_directory,
    "endless-secret": endless_secret,
}
