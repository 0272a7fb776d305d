"""Push authentication: the checks on their own (with a settable clock), then through a real
listener, where every refusal must leave the database untouched."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumer.config.model import HuaweiAkskAuth, QueueConfig, TokenAuth
from consumer.sources.http_auth import (
    TOKEN_HEADER,
    Credentials,
    HuaweiAksk,
    Nonce,
    NonceCache,
    SharedToken,
    sign_huawei,
)
from tests.sources.test_http import Rig, fee, queue, run, serving, status

APP_KEY = "ka4kWmAYnEm2AbCd"
SECRET = "s3cr3t-app-secret"
TOKEN = "Tk-0123456789abcdef-XYZ"
NOW = datetime(2026, 1, 27, 8, 0, 0, tzinfo=UTC)
VOICE_URL = "https://push.example.com/push/huawei/voice"


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def aksk(clock: Clock, skew: timedelta = timedelta(minutes=5)) -> HuaweiAksk:
    return HuaweiAksk(APP_KEY, SECRET, skew, nonces=NonceCache(clock=clock), clock=clock)


def signed(
    family: str = "X-AKSK",
    *,
    nonce: str = "n-1",
    created: datetime = NOW,
    url: str | None = None,
    secret: str = SECRET,
    app_key: str = APP_KEY,
) -> Credentials:
    headers = sign_huawei(family, app_key, secret, nonce=nonce, created=stamp(created), url=url)
    return Credentials(headers, None, [VOICE_URL])


# -- Huawei AK/SK, unit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "url"),
    [("X-AKSK", None), ("X-AKSK", VOICE_URL), ("X-WSSE", None)],
    ids=["aksk-hmac-nonce-created", "aksk-voice-url-variant", "wsse-sha256"],
)
def test_every_documented_huawei_digest_variant_verifies(family: str, url: str | None) -> None:
    # Given a request signed the way one of Huawei's documents says
    credentials = signed(family, url=url)
    # When it is checked, then it passes
    assert aksk(Clock()).check(credentials) is None


def test_the_digest_families_are_not_interchangeable() -> None:
    # Given an X-WSSE-style plain SHA-256 digest sent under the X-AKSK header
    wsse = sign_huawei("X-WSSE", APP_KEY, SECRET, nonce="n", created=stamp(NOW))
    swapped = Credentials({"X-AKSK": wsse["X-WSSE"]}, None, [])
    # When it is checked, then it does not verify
    denied = aksk(Clock()).check(swapped)
    assert denied is not None
    assert denied.reason == "bad_digest"


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (Credentials({}, None, []), "missing_signature"),
        (signed(secret="not-the-secret"), "bad_digest"),
        (signed(url="https://elsewhere.example.com/x"), "bad_digest"),
        (signed(app_key="someone-else"), "unknown_app_key"),
        (Credentials({"X-AKSK": 'UsernameToken Username="k"'}, None, []), "bad_signature"),
        (
            Credentials(
                {
                    "X-AKSK": f'UsernameToken Username="{APP_KEY}",PasswordDigest="@@@",'
                    f'Nonce="n",Created="{stamp(NOW)}"'
                },
                None,
                [],
            ),
            "bad_signature",
        ),
        (Credentials(signed().headers, "a-path-token-123456", []), "unexpected_token"),
    ],
    ids=["none", "wrong-secret", "other-url", "wrong-app-key", "incomplete", "not-base64", "path"],
)
def test_wrong_or_missing_huawei_credentials_are_denied(
    credentials: Credentials, reason: str
) -> None:
    # When a request with bad credentials is checked, then it is denied with the reason
    denied = aksk(Clock()).check(credentials)
    assert denied is not None
    assert denied.reason == reason
    assert SECRET not in denied.detail


@pytest.mark.parametrize(
    ("age", "fresh"),
    [
        (timedelta(minutes=4), True),
        (timedelta(minutes=-4), True),
        (timedelta(minutes=6), False),
        (timedelta(minutes=-6), False),
        # Created written in Beijing time but labelled Z: 8 hours ahead of the true instant
        (timedelta(hours=-8), True),
        (timedelta(hours=-8, minutes=4), True),
        (timedelta(hours=-8, minutes=-6), False),
        (timedelta(hours=8), False),
        (timedelta(days=1), False),
    ],
)
def test_created_must_be_within_the_skew_read_as_utc_or_as_beijing_time(
    age: timedelta, fresh: bool
) -> None:
    # Given a request created `age` before now (per its label)
    credentials = signed(created=NOW - age)
    # When it is checked, then only a fresh Created passes
    denied = aksk(Clock()).check(credentials)
    assert (denied is None) == fresh
    if not fresh:
        assert denied is not None
        assert denied.reason == "stale"


BEIJING_ZONE = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("created", "fresh"),
    [
        (NOW.strftime("%Y-%m-%dT%H:%M:%S"), True),  # no zone: UTC, like every Huawei time
        ((NOW + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S"), False),  # Beijing, no zone
        (NOW.astimezone(BEIJING_ZONE).isoformat(), True),  # the same instant, at +08:00
        ((NOW + timedelta(hours=8)).astimezone(BEIJING_ZONE).isoformat(), False),  # 8 h off
        (stamp(NOW + timedelta(hours=8)), True),  # Beijing time mislabelled Z (one Huawei page)
    ],
)
def test_created_is_fresh_around_the_instant_its_zone_denotes(created: str, fresh: bool) -> None:
    # Given a request whose Created is written `created`
    headers = sign_huawei("X-AKSK", APP_KEY, SECRET, nonce="zone", created=created)
    # When it is verified, Then it passes only when fresh, with its nonce to remember
    verdict = aksk(Clock()).verify(Credentials(headers, None, []))
    assert isinstance(verdict, Nonce) == fresh, verdict
    if isinstance(verdict, Nonce):
        # until the later of the windows its Created may fall in has passed
        written = datetime.fromisoformat(created)
        latest = written if written.tzinfo else written.replace(tzinfo=UTC)
        assert verdict.until == latest.timestamp() + 300


def test_a_nonce_is_refused_while_its_created_could_still_pass() -> None:
    # Given a request that was accepted
    clock = Clock()
    checker = aksk(clock)
    first = signed(nonce="once")
    assert checker.check(first) is None

    # When the same headers come again, a minute later, then they are a replay
    clock.now += 60
    denied = checker.check(first)
    assert denied is not None
    assert denied.reason == "replayed"
    # and a new nonce with the same Created passes
    assert checker.check(signed(nonce="twice")) is None


def test_a_beijing_time_nonce_is_remembered_for_as_long_as_it_could_be_replayed() -> None:
    # Given a request whose Created is Beijing time (8 hours ahead), accepted now
    clock = Clock()
    checker = aksk(clock)
    headers = signed(nonce="bj", created=NOW + timedelta(hours=8))
    assert checker.check(headers) is None

    # When it is replayed 7 hours later, its Created now reads as fresh UTC-ish time minus 1 h
    clock.now += 7 * 3600
    # Then it is stale (outside both windows)...
    denied = checker.check(headers)
    assert denied is not None
    assert denied.reason == "stale"
    # ...and 8 hours later, when it would read as fresh UTC, the nonce still refuses it
    clock.now += 3600
    denied = checker.check(headers)
    assert denied is not None
    assert denied.reason == "replayed"


def test_a_released_nonce_may_be_used_again() -> None:
    # Given a request accepted, then answered 503 (nothing stored), so its nonce was released
    checker = aksk(Clock())
    credentials = signed(nonce="retry-me")
    assert checker.check(credentials) is None
    checker.release(credentials)
    # When the sender retries with the same headers, then they pass
    assert checker.check(credentials) is None


def test_the_nonce_cache_forgets_expired_nonces_and_stays_bounded() -> None:
    # Given a cache of at most 3 nonces
    clock = Clock()
    cache = NonceCache(max_entries=3, clock=clock)
    # When nonces are added past their expiry and past the bound
    assert cache.add("a", clock.now + 10)
    assert not cache.add("a", clock.now + 10)
    clock.now += 11
    assert cache.add("a", clock.now + 10)  # expired, so new again
    for nonce in ("b", "c", "d", "e"):
        cache.add(nonce, clock.now + 100)
    # Then it never holds more than its bound, and drops the soonest-expiring first
    assert len(cache) == 3
    assert not cache.add("e", clock.now + 100)


# -- token, unit ----------------------------------------------------------------------------------


def test_a_shared_token_is_taken_from_the_path_or_the_header() -> None:
    checker = SharedToken(TOKEN)
    # When the token is the path segment or the header, then it passes
    assert checker.check(Credentials({}, TOKEN, [])) is None
    assert checker.check(Credentials({TOKEN_HEADER: TOKEN}, None, [])) is None
    # When it is missing or wrong, then it is denied
    for credentials, reason in [
        (Credentials({}, None, []), "missing_token"),
        (Credentials({}, TOKEN + "x", []), "bad_token"),
        (Credentials({TOKEN_HEADER: TOKEN[:-1]}, None, []), "bad_token"),
        # a wrong path segment is not rescued by a right header
        (Credentials({TOKEN_HEADER: TOKEN}, "wrong-token-0000000", []), "bad_token"),
    ]:
        denied = checker.check(credentials)
        assert denied is not None
        assert denied.reason == reason


# -- through the listener: refusals store nothing --------------------------------------------


def count_rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT count(*) FROM call_events").fetchone()[0]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return int(events), int(letters)


def test_a_token_queue_takes_the_token_as_a_path_segment_or_a_header(tmp_path: Path) -> None:
    guarded = queue(
        "huawei-voice",
        "huawei.voice_call",
        "/push/huawei/voice",
        TokenAuth(mode="token", token=SecretStr(TOKEN)),
    )

    async def scenario() -> None:
        async with serving(tmp_path, [guarded]) as rig:
            # When Huawei pushes to the URL with the token as its last segment
            in_path = await rig.post(f"/push/huawei/voice/{TOKEN}", fee("tok-1@h"))
            # or another sender puts it in the header
            in_header = await rig.post(
                "/push/huawei/voice", status("tok-2@h"), headers={TOKEN_HEADER: TOKEN}
            )
            # Then both are stored
            assert (in_path.status, in_header.status) == (200, 200)
            assert count_rows(rig.db) == (2, 0)

    run(scenario)


async def auth_failures(rig: Rig, queue_name: str) -> float:
    """The counter as scraped from /metrics (0 before the queue's first failure)."""
    text = (await rig.get("/metrics")).body.decode()
    prefix = f'consumer_push_auth_failures_total{{queue="{queue_name}"}} '
    values = [float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def test_unauthenticated_and_wrong_token_pushes_get_401_and_store_nothing(tmp_path: Path) -> None:
    guarded = queue(
        "huawei-voice",
        "huawei.voice_call",
        "/push/huawei/voice",
        TokenAuth(mode="token", token=SecretStr(TOKEN)),
    )
    poison = b'{"not": "even valid'

    async def scenario() -> None:
        async with serving(tmp_path, [guarded]) as rig:
            before = await auth_failures(rig, "huawei-voice")
            # When pushes come without the token, with a wrong one, or with a malformed body
            replies = [
                await rig.post("/push/huawei/voice", fee("x@h")),
                await rig.post("/push/huawei/voice/wrong-token-000000", fee("x@h")),
                await rig.post("/push/huawei/voice", fee("x@h"), headers={TOKEN_HEADER: "nope"}),
                await rig.post("/push/huawei/voice/wrong-token-000000", poison),
                # the right token in the wrong place (a query string Huawei cannot send anyway)
                await rig.post(f"/push/huawei/voice?token={TOKEN}", fee("x@h")),
            ]
            # Then every one is 401 and nothing, not even a dead letter, is stored
            assert [r.status for r in replies] == [401] * 5
            assert all(r.json() == {"error": "unauthorized"} for r in replies)
            assert count_rows(rig.db) == (0, 0)
            # and the failures are counted for the queue, as /metrics shows
            assert await auth_failures(rig, "huawei-voice") == before + 5

    run(scenario)


def aksk_queue(skew: timedelta = timedelta(minutes=5)) -> QueueConfig:
    return queue(
        "huawei-privacy",
        "huawei.privacy_number",
        "/push/huawei/privacy",
        HuaweiAkskAuth(
            mode="huawei_aksk", app_key=APP_KEY, app_secret=SecretStr(SECRET), max_skew=skew
        ),
    )


def now_headers(
    family: str = "X-AKSK", *, nonce: str, shift: timedelta = timedelta()
) -> dict[str, str]:
    created = stamp(datetime.now(UTC) + shift)
    return sign_huawei(family, APP_KEY, SECRET, nonce=nonce, created=created)


def test_signed_huawei_pushes_are_stored_and_bad_stale_or_replayed_ones_refused(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, [aksk_queue()]) as rig:
            path = "/push/huawei/privacy"
            # When Huawei pushes with X-AKSK, and with the older X-WSSE
            aksk_ok = await rig.post(
                path, fee("aksk@h", service_type="003"), headers=now_headers(nonce="a1")
            )
            wsse_ok = await rig.post(
                path, fee("wsse@h", service_type="003"), headers=now_headers("X-WSSE", nonce="w1")
            )
            # and with Created in Beijing time labelled Z
            beijing = await rig.post(
                path,
                fee("bj@h", service_type="003"),
                headers=now_headers(nonce="b1", shift=timedelta(hours=8)),
            )
            # Then all three are stored
            assert (aksk_ok.status, wsse_ok.status, beijing.status) == (200, 200, 200)
            assert count_rows(rig.db) == (3, 0)

            # When a push is unsigned, mis-signed, stale, or replays a nonce with another body
            bad_digest = now_headers(nonce="d1")
            bad_digest["X-AKSK"] = bad_digest["X-AKSK"].replace(
                'PasswordDigest="', 'PasswordDigest="AA'
            )
            refused = [
                await rig.post(path, fee("none@h", service_type="003")),
                await rig.post(path, fee("bad@h", service_type="003"), headers=bad_digest),
                await rig.post(
                    path,
                    fee("stale@h", service_type="003"),
                    headers=now_headers(nonce="s1", shift=-timedelta(hours=1)),
                ),
                await rig.post(
                    path, fee("replay@h", service_type="003"), headers=now_headers(nonce="a1")
                ),
            ]
            # Then each is 401 and the database is as it was
            assert [r.status for r in refused] == [401] * 4
            assert count_rows(rig.db) == (3, 0)

    run(scenario)


def test_a_signed_push_refused_503_during_an_outage_may_be_retried_with_the_same_headers(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, [aksk_queue()]) as rig:
            headers = now_headers(nonce="outage")
            blocker = sqlite3.connect(rig.db, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                # Given a signed push answered 503 while the database was locked
                first = await rig.post(
                    "/push/huawei/privacy", fee("o@h", service_type="003"), headers=headers
                )
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert first.status == 503
            # When the sender retries with the very same headers
            second = await rig.post(
                "/push/huawei/privacy", fee("o@h", service_type="003"), headers=headers
            )
            # Then it is not taken for a replay: it is stored
            assert second.status == 200
            assert count_rows(rig.db) == (1, 0)

    run(scenario)


def test_credentials_are_refused_before_the_body_is_read(tmp_path: Path) -> None:
    guarded = queue(
        "huawei-voice",
        "huawei.voice_call",
        "/push/huawei/voice",
        TokenAuth(mode="token", token=SecretStr(TOKEN)),
    )

    async def scenario() -> None:
        async with serving(tmp_path, [guarded], body_timeout=30) as rig:
            # When a client with a wrong token announces a body and sends none of it
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            writer.write(
                b"POST /push/huawei/voice/wrong-token-000000 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            )
            await writer.drain()
            # Then it is answered 401 at once, without waiting for the body
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
            await writer.wait_closed()
            assert head.startswith(b"HTTP/1.1 401")
            assert count_rows(rig.db) == (0, 0)

    run(scenario)


def test_the_voice_url_variant_verifies_against_the_url_huawei_was_given(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, [aksk_queue()]) as rig:
            path = "/push/huawei/privacy"
            created = stamp(datetime.now(UTC))
            # When Huawei signs the URL it pushes to, straight to the listener
            direct = sign_huawei(
                "X-AKSK", APP_KEY, SECRET, nonce="u1", created=created, url=rig.server.url + path
            )
            # or the public https URL of a proxy that says so in X-Forwarded-* headers
            proxied = sign_huawei(
                "X-AKSK",
                APP_KEY,
                SECRET,
                nonce="u2",
                created=created,
                url=f"https://push.example.com{path}",
            )
            proxied |= {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "push.example.com"}
            # but not a URL the listener cannot see
            elsewhere = sign_huawei(
                "X-AKSK", APP_KEY, SECRET, nonce="u3", created=created, url="https://other/x"
            )
            replies = [
                await rig.post(path, fee("u1@h", service_type="003"), headers=direct),
                await rig.post(path, fee("u2@h", service_type="003"), headers=proxied),
                await rig.post(path, fee("u3@h", service_type="003"), headers=elsewhere),
            ]
            # Then the first two are stored and the third refused
            assert [r.status for r in replies] == [200, 200, 401]
            assert count_rows(rig.db) == (2, 0)

    run(scenario)
