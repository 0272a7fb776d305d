"""Credential checks for HTTP push queues, done on the headers and path alone.

Nothing here reads the body or touches the sink: a request that fails these checks is answered
401 before anything is stored (docs/http-push.md, "Authentication").

- `token`: a shared secret as the last path segment (Huawei push URLs cannot carry a query
  string) or in the `X-Consumer-Token` header, compared in constant time.
- `huawei_aksk`: Huawei's `X-AKSK` / `X-WSSE` UsernameToken headers. The documents disagree on the
  digest and on the clock of `Created`, so every documented variant is accepted (docs/security.md):
  HMAC-SHA256(secret, Nonce + Created) and HMAC-SHA256(secret, url "\\n" Nonce "\\n" Created)
  under `X-AKSK`, SHA-256(Nonce + Created + secret) under `X-WSSE`. `Created` must lie within
  `max_skew` of the instant it denotes: with an offset (`+08:00`) that instant; without a zone,
  UTC (Huawei's zone-less times are UTC); with `Z`, UTC or Beijing time mislabelled `Z` (one
  Huawei page says so), the request's nonce then remembered until both readings have passed.
  The signature covers the nonce and time, never the body: what stops a replay with a forged
  body is the nonce, remembered here per process and, with the request's events, in the
  database (`push_nonces`, see `consumer.sinks.sql.SqlSink.store_claimed`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from consumer.config.model import HuaweiAkskAuth, NoAuth, PushAuth, TokenAuth
from consumer.sinks.base import NonceClaim

TOKEN_HEADER = "X-Consumer-Token"
BEIJING_OFFSET = timedelta(hours=8)
# A name starts only where a word does: unanchored, `\w+` rescanned the tail of a long word
# from each of its letters, and an 8 KB header of letters cost a second of the event loop.
_PARAM = re.compile(r'(?<!\w)(\w+)\s*=\s*"([^"]*)"')
_MAX_NONCE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request was refused: `reason` is a short stable code for logs, never a secret."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Nonce:
    """An accepted request's nonce: to be remembered under `key` until `until` (epoch seconds),
    the last moment its `Created` could pass again."""

    key: str
    until: float

    def claim(self, message_id: str, queue: str) -> NonceClaim:
        return NonceClaim(message_id, queue, self.key, self.until)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents: its headers, the path segment after the queue's path (if any),
    and the URLs under which the sender may have signed it (Huawei Voice signs its push URL)."""

    headers: Mapping[str, str]
    path_token: str | None
    urls: Sequence[str] = ()


class Authenticator:
    """Checks one queue's credentials; `check` returns None when the request may proceed."""

    signs_urls = False
    """Whether `Credentials.urls` matter (else the listener does not spell them out)."""

    def accepts_path_token(self) -> bool:
        """Whether a secret may follow the queue's path as one more segment."""
        return False

    def check(self, credentials: Credentials) -> Denied | None:
        verdict = self.verify(credentials)
        return verdict if isinstance(verdict, Denied) else None

    def verify(self, credentials: Credentials) -> Denied | Nonce | None:
        """Denied, or admitted: with the nonce to remember durably, or None (nothing to)."""
        raise NotImplementedError

    def release(self, credentials: Credentials) -> None:
        """Forget a request whose delivery failed (503), so the sender's retry is not a replay."""


class AllowAll(Authenticator):
    def verify(self, credentials: Credentials) -> Denied | Nonce | None:
        if credentials.path_token is not None:
            return Denied("unexpected_token", "this queue takes no token")
        return None


class SharedToken(Authenticator):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty push token would let anybody in")
        self._token = token.encode("utf-8")

    def accepts_path_token(self) -> bool:
        return True

    def verify(self, credentials: Credentials) -> Denied | Nonce | None:
        presented = credentials.path_token
        where = "path segment"
        if presented is None:
            presented = credentials.headers.get(TOKEN_HEADER)
            where = f"{TOKEN_HEADER} header"
        if not presented:
            return Denied("missing_token", f"no token in the path or the {TOKEN_HEADER} header")
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), self._token):
            return Denied("bad_token", f"wrong token in the {where}")
        return None


class NonceCache:
    """Nonces seen, each kept until its `Created` can no longer be accepted.

    Bounded: when full (after dropping the expired ones) the nonce closest to expiry goes first,
    which is the one least likely to be replayed. Thread-safe.
    """

    def __init__(self, max_entries: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, nonce: str, until: float) -> bool:
        """Remember `nonce` until `until` (epoch seconds); False if it is already remembered."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            known = self._expiry.get(nonce)
            if known is not None and known >= now:
                return False
            while len(self._expiry) >= self.max_entries and self._heap:
                _, oldest = heapq.heappop(self._heap)
                self._expiry.pop(oldest, None)
            self._expiry[nonce] = until
            heapq.heappush(self._heap, (until, nonce))
            return True

    def discard(self, nonce: str) -> None:
        with self._lock:
            self._expiry.pop(nonce, None)  # its heap entry goes when it expires

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            until, nonce = heapq.heappop(self._heap)
            if self._expiry.get(nonce) == until:
                del self._expiry[nonce]


class HuaweiAksk(Authenticator):
    signs_urls = True

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        max_skew: timedelta,
        *,
        nonces: NonceCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_key = app_key
        self._secret = app_secret.encode("utf-8")
        self.max_skew = max_skew.total_seconds()
        self.clock = clock
        self.nonces = nonces if nonces is not None else NonceCache(clock=clock)

    def verify(self, credentials: Credentials) -> Denied | Nonce | None:
        token = _read_token(credentials)
        if isinstance(token, Denied):
            return token
        family, fields = token
        username, nonce, created_text = fields["Username"], fields["Nonce"], fields["Created"]
        if not hmac.compare_digest(username.encode("utf-8", "replace"), self.app_key.encode()):
            return Denied("unknown_app_key", f"{family} Username is not the configured app_key")
        try:
            presented = base64.b64decode(fields["PasswordDigest"], validate=True)
        except (binascii.Error, ValueError):
            return Denied("bad_signature", f"{family} PasswordDigest is not base64")
        expected = self._digests(family, nonce, created_text, credentials.urls)
        if not any(hmac.compare_digest(presented, digest) for digest in expected):
            return Denied("bad_digest", f"{family} PasswordDigest does not verify")
        parsed = _parse_created(created_text)
        if parsed is None:
            return Denied("bad_signature", f"{family} Created is not an ISO-8601 time")
        until = self._fresh_until(*parsed)
        if until is None:
            return Denied(
                "stale", f"{family} Created {created_text[:40]} is outside the allowed skew"
            )
        key = _nonce_key(username, nonce)
        if not self.nonces.add(key, until):
            return Denied("replayed", f"{family} Nonce was used before")
        return Nonce(key, until)

    def release(self, credentials: Credentials) -> None:
        for family in ("X-AKSK", "X-WSSE"):
            value = credentials.headers.get(family)
            if value:
                fields = _username_token(value)
                if fields.get("Nonce"):
                    self.nonces.discard(_nonce_key(fields.get("Username", ""), fields["Nonce"]))
                return

    def _digests(self, family: str, nonce: str, created: str, urls: Sequence[str]) -> list[bytes]:
        if family == "X-WSSE":
            return [hashlib.sha256(f"{nonce}{created}".encode() + self._secret).digest()]
        messages = [f"{nonce}{created}"] + [f"{url}\n{nonce}\n{created}" for url in urls]
        return [hmac.new(self._secret, m.encode(), hashlib.sha256).digest() for m in messages]

    def _fresh_until(self, created: datetime, zone: str) -> float | None:
        """The last moment this `Created` is accepted, or None if it is not accepted now.

        It is fresh within ±max_skew of the instant it denotes. A `Z` stamp may also be Beijing
        time mislabelled `Z` (one Huawei page says so), whose instant is 8 hours earlier: then
        either reading passes, and the nonce is held until the later window ends, so the same
        headers are not accepted again 8 hours on under the other reading.
        """
        now = self.clock()
        stamp = created.timestamp()
        readings = (stamp, stamp - BEIJING_OFFSET.total_seconds()) if zone == "Z" else (stamp,)
        if any(abs(now - instant) <= self.max_skew for instant in readings):
            return stamp + self.max_skew
        return None


def _read_token(credentials: Credentials) -> Denied | tuple[str, dict[str, str]]:
    """The signature header's family and its fields, all present, before any crypto is done."""
    if credentials.path_token is not None:
        return Denied("unexpected_token", "this queue takes no path token")
    headers = credentials.headers
    family = "X-AKSK" if headers.get("X-AKSK") else "X-WSSE" if headers.get("X-WSSE") else None
    if family is None:
        return Denied("missing_signature", "neither an X-AKSK nor an X-WSSE header")
    fields = _username_token(headers[family])
    missing = [k for k in ("Username", "PasswordDigest", "Nonce", "Created") if not fields.get(k)]
    if missing:
        return Denied("bad_signature", f"{family} lacks {', '.join(missing)}")
    if len(fields["Nonce"]) > _MAX_NONCE_LENGTH:
        return Denied("bad_signature", f"{family} Nonce longer than {_MAX_NONCE_LENGTH}")
    return family, fields


def authenticator(auth: PushAuth, *, nonces: NonceCache | None = None) -> Authenticator:
    """The checker for a queue's `http.auth` section."""
    if isinstance(auth, NoAuth):
        return AllowAll()
    if isinstance(auth, TokenAuth):
        return SharedToken(auth.token.get_secret_value())
    if isinstance(auth, HuaweiAkskAuth):
        return HuaweiAksk(
            auth.app_key, auth.app_secret.get_secret_value(), auth.max_skew, nonces=nonces
        )
    raise TypeError(f"unknown push auth mode: {auth!r}")


def sign_huawei(
    family: str,
    app_key: str,
    app_secret: str,
    *,
    nonce: str,
    created: str,
    url: str | None = None,
) -> dict[str, str]:
    """The headers Huawei sends, for tests, benches and local peers (the digest variant follows
    `family` and whether `url` is given)."""
    secret = app_secret.encode()
    if family == "X-WSSE":
        digest = hashlib.sha256(f"{nonce}{created}".encode() + secret).digest()
        scheme = "WSSE"
    elif family == "X-AKSK":
        message = f"{nonce}{created}" if url is None else f"{url}\n{nonce}\n{created}"
        digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
        scheme = "AKSK"
    else:
        raise ValueError(f"family must be X-AKSK or X-WSSE, not {family!r}")
    token = base64.b64encode(digest).decode()
    return {
        "Authorization": f'{scheme} realm="SDP",profile="UsernameToken",type="Appkey"',
        family: (
            f'UsernameToken Username="{app_key}",PasswordDigest="{token}",'
            f'Nonce="{nonce}",Created="{created}"'
        ),
    }


def _username_token(value: str) -> dict[str, str]:
    text = value.strip()
    if text.lower().startswith("usernametoken"):
        text = text[len("usernametoken") :]
    return dict(_PARAM.findall(text))


def _parse_created(text: str) -> tuple[datetime, str] | None:
    """`Created` as an aware UTC datetime, and how its zone was given: `Z`, `offset` or `none`.

    `2018-02-12T15:30:20Z` (fractions and offsets tolerated); no zone means UTC, as in every
    zone-less time Huawei sends ("话单里的时间统一用的是UTC时间").
    """
    text = text.strip()
    if len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC), "none"
    zone = "Z" if text.upper().endswith("Z") else "offset"
    return parsed.astimezone(UTC), zone


def _nonce_key(username: str, nonce: str) -> str:
    """Fixed width whatever the sender put in the header (`push_nonces.nonce`)."""
    return hashlib.sha256(f"{username}\x1f{nonce}".encode("utf-8", "replace")).hexdigest()


__all__ = [
    "TOKEN_HEADER",
    "AllowAll",
    "Authenticator",
    "Credentials",
    "Denied",
    "HuaweiAksk",
    "Nonce",
    "NonceCache",
    "SharedToken",
    "authenticator",
    "sign_huawei",
]
