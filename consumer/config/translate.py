"""Pydantic's validation errors in an operator's words, at the key path as written in the file.

A discriminated union's tag is not a key in the file, so it is dropped from the path; a secret's
value is never shown; an unknown key gets the allowed keys and the closest one.
"""

from __future__ import annotations

import difflib
import types
import typing
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


def translate(error: ErrorDetails) -> tuple[KeyPath, str]:
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
