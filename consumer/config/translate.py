"""Pydantic's validation errors in an operator's words, at the key path as written in the file.

A discriminated union's tag is not a key in the file, so it is dropped from the path; a secret's
value is never shown; an unknown key gets the allowed keys and the closest one.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from consumer.config.model import Config
from consumer.config.problems import KeyPath

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


@dataclass(frozen=True)
class _Error:
    """One pydantic error with what its wording needs: where it is shown, the field, the value."""

    loc: KeyPath
    where: KeyPath
    owner: type[BaseModel] | None
    info: FieldInfo | None
    annotation: Any
    ctx: dict[str, Any]
    value: Any
    secret: bool
    msg: str

    @property
    def shown(self) -> str:
        return "(not shown: secret)" if self.secret else _short(self.value)


def translate(error: ErrorDetails) -> tuple[KeyPath, str]:
    loc = tuple(error["loc"])
    where, owner, info, annotation = _walk(loc)
    found = _Error(
        loc=loc,
        where=where,
        owner=owner,
        info=info,
        annotation=annotation,
        ctx=dict(error.get("ctx") or {}),
        value=error.get("input"),
        secret=info is not None and _mentions(info.annotation, SecretStr),
        msg=str(error["msg"]),
    )
    return _HANDLERS.get(error["type"], _message)(error["type"], found)


def _missing(kind: str, error: _Error) -> tuple[KeyPath, str]:
    return error.where, "required key is missing"


def _unknown_key(kind: str, error: _Error) -> tuple[KeyPath, str]:
    allowed = list(error.owner.model_fields) if error.owner is not None else []
    key = str(error.loc[-1]) if error.loc else ""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return error.where, f"unknown key{hint} (allowed here: {', '.join(allowed)})"


def _not_allowed(kind: str, error: _Error) -> tuple[KeyPath, str]:
    expected = str(error.ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
    return error.where, f"bad value {error.shown}; allowed: {expected}"


def _union_tag(kind: str, error: _Error) -> tuple[KeyPath, str]:
    discriminator = str(error.ctx.get("discriminator", "mode")).strip("'")
    tags = ", ".join(_tags(error.annotation, discriminator))
    where = (*error.where, discriminator)
    if kind == "union_tag_not_found":
        return where, f"required key is missing; one of: {tags}"
    return where, f"bad value {_short(error.ctx.get('tag'))}; allowed: {tags}"


def _wrong_type(kind: str, error: _Error) -> tuple[KeyPath, str]:
    quote = kind == "string_type" and _is_scalar(error.value)
    hint = ' (put it in quotes: "...")' if quote else ""
    got = "something else (not shown: secret)" if error.secret else _kind_of(error.value)
    return error.where, f"wrong type: expected {_EXPECTED[kind]}, got {got}{hint}"


def _pattern(kind: str, error: _Error) -> tuple[KeyPath, str]:
    description = error.info.description if error.info is not None else None
    if description:
        return error.where, f"bad value {error.shown}: must be {description}"
    return error.where, f"{error.shown}: must match {error.ctx.get('pattern')}"


_BOUNDS = {
    "greater_than_equal": "at least",
    "greater_than": "more than",
    "less_than_equal": "at most",
    "less_than": "less than",
}


def _bound(kind: str, error: _Error) -> tuple[KeyPath, str]:
    limit = next(iter(error.ctx.values()), "?")
    return error.where, f"bad value {error.shown}: must be {_BOUNDS[kind]} {limit}"


def _too_short(kind: str, error: _Error) -> tuple[KeyPath, str]:
    if error.loc == ("queues",):
        return error.where, "no queues: add at least one"
    return error.where, f"needs at least {error.ctx.get('min_length')} item(s)"


def _too_long(kind: str, error: _Error) -> tuple[KeyPath, str]:
    return error.where, f"allows at most {error.ctx.get('max_length')} item(s)"


def _message(kind: str, error: _Error) -> tuple[KeyPath, str]:
    """A validator's own message (ours, in an operator's words already), a secret taken out."""
    message = error.msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error.secret:
        message = message.replace(repr(error.value), "(secret)")
    return error.where, message


_Handler = Callable[[str, _Error], tuple[KeyPath, str]]
_HANDLERS: dict[str, _Handler] = {
    "missing": _missing,
    "extra_forbidden": _unknown_key,
    "literal_error": _not_allowed,
    "union_tag_invalid": _union_tag,
    "union_tag_not_found": _union_tag,
    **dict.fromkeys(_EXPECTED, _wrong_type),
    "string_pattern_mismatch": _pattern,
    **dict.fromkeys(_BOUNDS, _bound),
    "too_short": _too_short,
    "too_long": _too_long,
}
"""How each kind of pydantic error is worded; any other kind is the validator's own message."""


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
        for discriminator in ("mode", "source"):
            info = model.model_fields.get(discriminator)
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


__all__ = ["translate"]
