"""Alicom token cache and MNS credentials providers, against the fake Alicom and fake MNS.

The real dybaseapi client fetches tokens and the real MNS SDK uses them, over real sockets.
A shared `ManualClock` ages tokens for the cache and both fakes without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Queue
from pydantic import SecretStr

from consumer.config.model import AccessKeyAuth, AlicomTokenAuth, StsAuth
from consumer.sources.alicom_token import (
    AlicomCredentialsProvider,
    AlicomTokenCache,
    AlicomTokenError,
    StaticProvider,
    call_with_auth_retry,
    credentials_provider,
    is_auth_error,
    parse_alicom_time,
    shared_token_cache,
)
from consumer.testing.fake_alicom import FakeAlicomServer
from consumer.testing.fake_mns import FakeMnsServer, ManualClock

QUEUE = "Alicom-Queue-1234567890-VoiceReport"
CUSTOMER_AK, CUSTOMER_SK = "LTAIcustomer", "customer-secret"


@dataclass
class Peers:
    clock: ManualClock
    mns: FakeMnsServer
    alicom: FakeAlicomServer

    def auth(self, key_id: str = CUSTOMER_AK) -> AlicomTokenAuth:
        return AlicomTokenAuth(
            message_type="VoiceReport",
            access_key_id=key_id,
            access_key_secret=SecretStr(CUSTOMER_SK),
            token_endpoint=self.alicom.endpoint,
        )

    def cache(self, key_id: str = CUSTOMER_AK) -> AlicomTokenCache:
        return AlicomTokenCache(self.auth(key_id), QUEUE, clock=self.clock, read_timeout=2.0)

    def queue(self, provider: object) -> Queue:
        account = Account(self.mns.endpoint, credentials_provider=provider)
        queue = account.get_queue(QUEUE)
        queue.set_encoding(False)
        return queue


@pytest.fixture
def peers() -> Iterator[Peers]:
    clock = ManualClock()
    with (
        FakeMnsServer(clock=clock) as mns,
        FakeAlicomServer(mns, accounts={CUSTOMER_AK: CUSTOMER_SK}, clock=clock) as alicom,
    ):
        mns.create_queue(QUEUE)
        yield Peers(clock, mns, alicom)


def test_expire_time_is_read_as_shanghai_wall_time() -> None:
    expected = datetime(2024, 5, 1, 3, 0, tzinfo=UTC).timestamp()
    assert parse_alicom_time("2024-05-01 11:00:00") == expected
    with pytest.raises(ValueError, match="yyyy-MM-dd HH:mm:ss"):
        parse_alicom_time("2024-05-01T11:00:00Z")


def test_token_from_dybaseapi_reads_the_alicom_queue(peers: Peers) -> None:
    # Given a provider backed by the token cache, and a message in the queue
    peers.mns.put_message(QUEUE, '{"call_id":"1"}')
    provider = AlicomCredentialsProvider(peers.cache())
    # When the SDK receives through it
    message = peers.queue(provider).receive_message(0)
    # Then the message arrives, under the STS key the token endpoint issued for this queue
    assert message.message_body == '{"call_id":"1"}'
    [issued] = peers.alicom.issued
    [request] = peers.mns.requests
    assert (request.access_key_id, request.security_token) == (
        issued.access_key_id,
        issued.security_token,
    )
    [asked] = peers.alicom.requests
    assert (asked.access_key_id, asked.message_type, asked.queue_name) == (
        CUSTOMER_AK,
        "VoiceReport",
        QUEUE,
    )


def test_token_is_cached_between_requests(peers: Peers) -> None:
    cache = peers.cache()
    provider = AlicomCredentialsProvider(cache)
    queue = peers.queue(provider)
    for _ in range(3):
        with pytest.raises(MNSServerException, match="MessageNotExist"):
            queue.receive_message(0)
    assert cache.fetches == 1
    assert len({r.access_key_id for r in peers.mns.requests}) == 1


def test_refresh_happens_when_less_than_two_minutes_remain(peers: Peers) -> None:
    # Given a token valid for 10 minutes
    peers.alicom.set_token_ttl(600)
    cache = peers.cache()
    queue = peers.queue(AlicomCredentialsProvider(cache))
    for _ in range(3):
        peers.mns.put_message(QUEUE, "x")
    queue.receive_message(0)
    # When 7:59 pass, the token is kept; at 8:01 (1:59 left) a new one is fetched first
    peers.clock.advance(479)
    queue.receive_message(0)
    assert cache.fetches == 1
    peers.clock.advance(2)
    queue.receive_message(0)
    # Then no request failed, and the last one used the new key
    assert cache.fetches == 2
    assert [r.status for r in peers.mns.requests] == [200, 200, 200]
    assert peers.mns.requests[-1].access_key_id == peers.alicom.issued[-1].access_key_id


def test_no_request_leaves_with_an_expired_token(peers: Peers) -> None:
    # Given a token, then the clock jumps past its expiry (a suspended laptop, a stalled VM)
    cache = peers.cache()
    queue = peers.queue(AlicomCredentialsProvider(cache))
    peers.mns.put_message(QUEUE, "x")
    peers.mns.put_message(QUEUE, "y")
    queue.receive_message(0)
    peers.clock.advance(3600 + 5)
    # When the next request goes out
    queue.receive_message(0)
    # Then it carried a fresh token, and MNS refused nothing
    assert cache.fetches == 2
    assert all(r.status == 200 for r in peers.mns.requests)


def test_auth_error_refreshes_at_once_and_the_retry_succeeds(peers: Peers) -> None:
    # Given a token that MNS stops accepting before its expiry
    cache = peers.cache()
    provider = AlicomCredentialsProvider(cache)
    queue = peers.queue(provider)
    peers.mns.put_message(QUEUE, "x")
    peers.mns.put_message(QUEUE, "y")
    assert queue.receive_message(0).message_body == "x"
    peers.mns.revoke_credentials(peers.alicom.issued[0].access_key_id)
    # When the source receives through call_with_auth_retry
    message = call_with_auth_retry(provider, lambda: queue.receive_message(0))
    # Then the caller sees no failure: one refusal, one new token, one successful retry
    assert message.message_body == "y"
    assert cache.fetches == 2
    assert [r.code for r in peers.mns.requests] == [None, "InvalidAccessKeyId", None]


def test_expired_token_refusal_counts_as_auth_error(peers: Peers) -> None:
    # Given a provider whose margin is zero, so it sends a token right up to its expiry
    cache = AlicomTokenCache(peers.auth(), QUEUE, clock=peers.clock, refresh_margin=0)
    provider = AlicomCredentialsProvider(cache)
    queue = peers.queue(provider)
    provider.get_credentials()
    # When MNS's clock says the token has expired (MNS and host clocks disagree)
    peers.mns.add_credentials(
        peers.alicom.issued[0].access_key_id,
        peers.alicom.issued[0].access_key_secret,
        peers.alicom.issued[0].security_token,
        expires_at=0,
    )
    with pytest.raises(MNSServerException) as caught:
        queue.receive_message(0)
    # Then the refusal is recognised, and a refresh cures it
    assert is_auth_error(caught.value)
    peers.mns.put_message(QUEUE, "x")
    assert call_with_auth_retry(provider, lambda: queue.receive_message(0)).message_body == "x"


def test_auth_error_that_persists_is_raised_after_one_retry(peers: Peers) -> None:
    cache = peers.cache()
    provider = AlicomCredentialsProvider(cache)
    queue = peers.queue(provider)
    peers.mns.deny_next(2)
    with pytest.raises(MNSServerException, match="AccessDenied"):
        call_with_auth_retry(provider, lambda: queue.receive_message(0))
    assert cache.fetches == 2  # one refresh, not a loop against Dybaseapi


def test_other_errors_are_not_retried(peers: Peers) -> None:
    provider = AlicomCredentialsProvider(peers.cache())
    queue = peers.queue(provider)
    with pytest.raises(MNSServerException, match="MessageNotExist"):
        call_with_auth_retry(provider, lambda: queue.receive_message(0))
    assert len(peers.mns.requests) == 1


def test_code_not_ok_is_a_clear_error_and_nothing_reaches_mns(peers: Peers) -> None:
    # Given Dybaseapi answering HTTP 200 with a Code other than OK
    peers.alicom.answer_next(200, "isv.BUSINESS_LIMIT_CONTROL", "too many requests")
    queue = peers.queue(AlicomCredentialsProvider(peers.cache()))
    # When the SDK asks for credentials
    with pytest.raises(AlicomTokenError) as caught:
        queue.receive_message(0)
    # Then the error names the code and the message, and no MNS request was sent
    assert caught.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert caught.value.transient is False
    assert "too many requests" in str(caught.value)
    assert "isv.BUSINESS_LIMIT_CONTROL" in str(caught.value)
    assert peers.mns.requests == []


def test_unknown_access_key_is_a_permanent_error(peers: Peers) -> None:
    cache = peers.cache(key_id="LTAIunknown")
    with pytest.raises(AlicomTokenError) as caught:
        cache.get()
    assert (caught.value.code, caught.value.status) == ("InvalidAccessKeyId.NotFound", 403)
    assert caught.value.transient is False
    assert caught.value.request_id


def test_server_error_and_unreachable_endpoint_are_transient(peers: Peers) -> None:
    peers.alicom.answer_next(503, "ServiceUnavailable")
    with pytest.raises(AlicomTokenError) as caught:
        peers.cache().get()
    assert (caught.value.status, caught.value.transient) == (503, True)
    auth = AlicomTokenAuth(
        message_type="VoiceReport",
        access_key_id=CUSTOMER_AK,
        access_key_secret=SecretStr(CUSTOMER_SK),
        token_endpoint="http://127.0.0.1:9",
    )
    with pytest.raises(AlicomTokenError, match="cannot reach") as unreachable:
        AlicomTokenCache(auth, QUEUE, connect_timeout=1).get()
    assert unreachable.value.transient is True


def test_short_lived_tokens_refresh_at_half_life_not_on_every_request(peers: Peers) -> None:
    # Given tokens that live 60 s, shorter than the two-minute margin
    peers.alicom.set_token_ttl(60)
    cache = peers.cache()
    # When used at 0 s and 29 s, then at 31 s
    cache.get()
    peers.clock.advance(29)
    cache.get()
    assert cache.fetches == 1
    peers.clock.advance(2)
    cache.get()
    # Then the second token was fetched only past half its life
    assert cache.fetches == 2


def test_concurrent_callers_share_one_fetch(peers: Peers) -> None:
    cache = peers.cache()
    barrier = threading.Barrier(8)
    keys: list[str] = []

    def use() -> None:
        barrier.wait()
        keys.append(cache.get().access_key_id)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert cache.fetches == 1


def test_invalidate_only_drops_the_token_that_failed(peers: Peers) -> None:
    cache = peers.cache()
    old = cache.get()
    cache.invalidate(old)
    new = cache.get()
    cache.invalidate(old)  # a late report about the old token
    assert cache.get() is new
    assert cache.fetches == 2


def test_static_access_key_sends_no_security_token(peers: Peers) -> None:
    peers.mns.add_credentials("LTAIown", "own-secret")
    auth = AccessKeyAuth(
        mode="access_key", access_key_id="LTAIown", access_key_secret=SecretStr("own-secret")
    )
    provider = credentials_provider(auth, QUEUE)
    assert isinstance(provider, StaticProvider)
    with pytest.raises(MNSServerException, match="MessageNotExist"):
        peers.queue(provider).receive_message(0)
    assert peers.mns.requests[-1].security_token is None
    assert provider.on_auth_error() is False


def test_static_sts_sends_its_token(peers: Peers) -> None:
    peers.mns.add_credentials("STS.own", "sts-secret", "CAIS-own")
    auth = StsAuth(
        mode="sts",
        access_key_id="STS.own",
        access_key_secret=SecretStr("sts-secret"),
        security_token=SecretStr("CAIS-own"),
    )
    with pytest.raises(MNSServerException, match="MessageNotExist"):
        peers.queue(credentials_provider(auth, QUEUE)).receive_message(0)
    assert peers.mns.requests[-1].security_token == "CAIS-own"


def test_alicom_mode_shares_one_cache_per_key_and_queue(peers: Peers) -> None:
    first = credentials_provider(peers.auth(), QUEUE)
    second = credentials_provider(peers.auth(), QUEUE)
    assert isinstance(first, AlicomCredentialsProvider)
    assert isinstance(second, AlicomCredentialsProvider)
    assert first.cache is second.cache
    assert shared_token_cache(peers.auth(), "Alicom-Queue-1-VoiceCallReport") is not first.cache


def test_bad_token_endpoint_is_named(peers: Peers) -> None:
    auth = peers.auth().model_copy(update={"token_endpoint": "dybaseapi.aliyuncs.com"})
    with pytest.raises(ValueError, match="token_endpoint"):
        AlicomTokenCache(auth, QUEUE)


def test_token_repr_hides_secrets(peers: Peers) -> None:
    token = peers.cache().get()
    assert token.security_token not in repr(token)
    assert token.access_key_secret not in repr(token)


def test_refreshes_and_the_expiry_are_exported_as_metrics(peers: Peers) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"mns_queue": QUEUE, **labels}) or 0.0

    ok = sample("consumer_alicom_token_refreshes_total", result="ok")
    failed = sample("consumer_alicom_token_refreshes_total", result="failed")
    # Given a token endpoint that fails once, then answers
    peers.alicom.answer_next(503, "ServiceUnavailable")
    cache = peers.cache()
    # When the cache asks twice
    with pytest.raises(AlicomTokenError):
        cache.get()
    token = cache.get()
    # Then one failed and one good refresh are counted, and the expiry is the token's
    assert sample("consumer_alicom_token_refreshes_total", result="failed") == failed + 1
    assert sample("consumer_alicom_token_refreshes_total", result="ok") == ok + 1
    assert sample("consumer_alicom_token_expiry_timestamp_seconds") == token.expires_at
