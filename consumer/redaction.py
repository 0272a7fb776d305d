"""Secret redaction and phone-number masking: the text rules the log chain applies.

Both are linear in the text. Redaction looks for every spelling a secret may take inside a line
(itself, a repr of str or bytes, JSON escaping); masking keeps the first three and last four
digits of a Chinese mobile number anywhere, and of any long number in a field named like a
phone number.
"""

from __future__ import annotations

import json
import re
from typing import Any

REDACTED = "***"

# A Chinese mobile number (1[3-9] + 9 digits), optionally with +86 / 0086 / 86, standing alone:
# not part of a longer run of digits or letters, so call ids and hashes stay intact.
_MOBILE = re.compile(
    r"(?<![0-9A-Za-z])(?P<cc>\+86[ -]?|0086[ -]?|86)?(?P<head>1[3-9]\d)\d{4}(?P<tail>\d{4})"
    r"(?![0-9A-Za-z])"
)
# In a field that holds a phone number, any run of 7 or more digits (landlines, foreign numbers).
_DIGIT_RUN = re.compile(r"\d{7,}")
SEVEN_DIGITS = re.compile(r"\d{7}")
_PHONE_KEY = re.compile(
    r"caller|callee|called|calling|phone|mobile|msisdn|telephone|^tel|tel$|number$|numbers$"
    r"|num$|nbr$|^callno$|^calledno$|^callerno$|^ani$|^dnis$"
)


def mask_phone_numbers(text: str, *, phone_field: bool = False) -> str:
    """Chinese mobile numbers anywhere; in a phone field, also landlines and other numbers."""
    if SEVEN_DIGITS.search(text) is None:
        return text  # both patterns need at least seven digits in a row: nothing to mask
    return mask_text(text, phone_field)


def mask_text(text: str, phone_field: bool) -> str:
    text = _MOBILE.sub(
        lambda m: f"{m.group('cc') or ''}{m.group('head')}****{m.group('tail')}", text
    )
    if phone_field:
        text = _DIGIT_RUN.sub(lambda m: _mask_digits(m.group()), text)
    return text


def _mask_digits(digits: str) -> str:
    # 13812345678 and 05711111234 keep 3 + 4 digits; shorter numbers keep less, so that at
    # least four digits are always hidden.
    head = 3 if len(digits) >= 11 else max(len(digits) - 8, 0)
    tail = 4 if len(digits) >= 8 else len(digits) - 4
    return f"{digits[:head]}****{digits[len(digits) - tail :]}"


_phone_keys: dict[str, bool] = {}  # memo of is_phone_key: keys repeat on every line
_PHONE_KEYS_MEMO = 4096  # payload keys come from providers: keep the memo bounded


def is_phone_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    known = _phone_keys.get(key)
    if known is None:
        known = bool(_PHONE_KEY.search(key.lower().replace("_", "").replace("-", "")))
        if len(_phone_keys) < _PHONE_KEYS_MEMO:
            _phone_keys[key] = known
    return known


def mask_value(value: Any, phone_field: bool) -> Any:
    if isinstance(value, str):
        return mask_phone_numbers(value, phone_field=phone_field)
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: mask_value(item, is_phone_key(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item, phone_field) for item in value]
    if phone_field and isinstance(value, int) and not isinstance(value, bool):
        return mask_phone_numbers(str(value), phone_field=True)
    return value


def scrub(text: str, pattern: re.Pattern[str]) -> str:
    # A replacement can complete a new match (secret "a*" in "aa*" gives "a***"): repeat, and
    # give up on the text entirely rather than let a secret through.
    for _ in range(8):
        scrubbed = pattern.sub(REDACTED, text)
        if scrubbed == text:
            return text
        text = scrubbed
    return REDACTED if pattern.search(text) else text


def redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return value if pattern.search(value) is None else scrub(value, pattern)
    if isinstance(value, dict):
        return {
            redact_value(key, pattern): redact_value(item, pattern) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, pattern) for item in value]
    if value is None or isinstance(value, bool):
        return value
    text = str(value) if isinstance(value, int | float) else repr(value)
    return scrub(text, pattern) if pattern.search(text) else value


def alternation(values: set[str]) -> re.Pattern[str] | None:
    ordered = sorted(values, key=len, reverse=True)  # the longest spelling wins
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def spellings(secret: str) -> set[str]:
    # How a secret may look inside a string: itself, or escaped by a repr (of str or bytes).
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], repr(secret.encode())[2:-1]}
    return {form for form in forms if form} | json_spellings(secret)


def json_spellings(text: str) -> set[str]:
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]} - {""}


__all__ = [
    "REDACTED",
    "SEVEN_DIGITS",
    "alternation",
    "is_phone_key",
    "json_spellings",
    "mask_phone_numbers",
    "mask_text",
    "mask_value",
    "redact_value",
    "scrub",
    "spellings",
]
