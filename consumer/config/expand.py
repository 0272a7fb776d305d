"""`${NAME}` and `${file:PATH}` references in configuration values (`$${` is a literal `${`).

Each resolved value is remembered with its key path, so that a value glued into a secret field
is redacted from logs like the field itself. A reference that cannot be resolved is a problem at
the value's key path; the value is then kept as written (validation of it is fallout, dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from consumer.config.limits import MAX_REFERENCE_BYTES, LimitExceeded, read_bounded
from consumer.config.problems import Document, KeyPath, Problems

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class Expander:
    def __init__(self, env: Mapping[str, str], problems: Problems) -> None:
        self.env = env
        self.problems = problems
        self.references: list[tuple[KeyPath, str]] = []
        self.base_dir = Path()  # of the file being read: `${file:}` paths are relative to it

    def expand(self, text: str, document: Document, where: KeyPath) -> str:
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
                self.problems.fail(document, where, "unclosed ${ (write $${ for a literal ${)")
                return text
            value = self._resolve(text[index + 2 : end], document, where)
            if value is None:
                return text
            self.references.append((where, value))
            out.append(value)
            index = end + 1
        return "".join(out)

    def _resolve(self, reference: str, document: Document, where: KeyPath) -> str | None:
        if reference.startswith("file:"):
            return self._read_reference_file(reference[5:].strip(), document, where)
        if not _ENV_NAME.fullmatch(reference):
            self.problems.fail(
                document,
                where,
                f"bad reference ${{{reference}}}: use ${{NAME}} for an environment variable "
                "or ${file:/path} for a file ($${ is a literal ${)",
            )
            return None
        value = self.env.get(reference)
        if value is None:
            self.problems.fail(document, where, f"environment variable {reference} is not set")
            return None
        if value == "":
            self.problems.fail(document, where, f"environment variable {reference} is empty")
            return None
        return value

    def _read_reference_file(self, raw: str, document: Document, where: KeyPath) -> str | None:
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
            self.problems.fail(
                document,
                where,
                f"${{file:{raw}}}: environment variable {missing[0]} is not set{hint}",
            )
            return None
        if not expanded:
            self.problems.fail(document, where, "${file:} needs a path")
            return None
        content, problem = _read_reference(self.base_dir / expanded)
        if problem is not None:
            self.problems.fail(document, where, problem)
            return None
        return content


def _read_reference(path: Path) -> tuple[str, str | None]:
    """The text of a `${file:}` file (one final newline dropped), or why there is none."""
    try:
        content = read_bounded(path, MAX_REFERENCE_BYTES, "a file read by ${file:}").decode("utf-8")
    except OSError as exc:
        return "", f"cannot read {path}: {exc.strerror}"
    except LimitExceeded as exc:
        return "", f"{path} is {exc.problem}"
    except UnicodeDecodeError:
        return "", f"{path} is not UTF-8 text"
    content = content.removesuffix("\n")
    return content, f"{path} is empty" if content == "" else None


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


__all__ = ["Expander"]
