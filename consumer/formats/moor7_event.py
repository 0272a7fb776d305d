"""`moor7.event`: 7moor (容联七陌) v7 event push, every `pushType` (docs/formats.md F4).

The vendor's samples are uneven: some lack `pushType`, one is wrapped in `content`, one names the
call `superUniqueId`, and two different events share one `eventUniqueId`. So the kind falls back
to `callEvent`, the wrapper is opened, and the event id keeps `pushType` and `callEvent` with the
provider's id.
"""

from __future__ import annotations

import re
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import Format
from consumer.formats import _decode as d
from consumer.formats._common import each_record
from consumer.formats.moor7_record import FORMAT_NAME, parse_record
from consumer.model import Normalized, Provider

_FORM_FIELD = re.compile(r"[A-Za-z0-9_.~*%+\[\]-]+=")


def parse(body: bytes) -> list[Normalized]:
    """One push (or an array of them) into one event each."""
    return each_record(_load(body), parse_record)


FORMAT = Format(name=FORMAT_NAME, provider=Provider.MOOR7, parse=parse, accepts_form=True)


def _load(body: bytes) -> Any:
    """JSON (or base64 of JSON), else a form body whose single field holds JSON (F4.1)."""
    try:
        return d.load_mns_json(body)
    except InvalidMessage:
        form = _form_text(body)
        if form is None:
            raise
    return _load_form(form)


def _form_text(body: bytes) -> str | None:
    """The body as text if it looks like `application/x-www-form-urlencoded`, else None."""
    stripped = body.strip()
    if not stripped or stripped[:1] in b'{["':
        return None
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _FORM_FIELD.match(text) or text[:3].upper() in ("%7B", "%5B"):
        return text
    return None


def _load_form(text: str) -> Any:
    try:
        if "=" in text:
            count, pairs = d.form_fields(text)
        else:  # `%7B...%7D` alone: the JSON itself, urlencoded, with no field name
            count, pairs = 1, [("", d.unquote_plus(text))]
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(  # parse_qsl's error quotes the whole field
            Reason.NOT_JSON, f"body is neither JSON nor a form: {clip(str(exc), quote=False)}"
        ) from None
    if count != 1:
        names = ", ".join(clip(name) for name, _ in pairs)
        raise InvalidMessage(
            Reason.BAD_FORM, f"form body has {count} fields ({names}); expected one holding JSON"
        )
    name, raw = pairs[0]
    try:
        return d.load_json(raw.encode("utf-8", "surrogatepass"))
    except InvalidMessage as exc:
        raise InvalidMessage(exc.reason, f"form field {clip(name)}: {exc.detail}") from None
