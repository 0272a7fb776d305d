"""The fake Dybaseapi token endpoint, driven by the real alibabacloud-dybaseapi20170525 client."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alibabacloud_dybaseapi20170525 import models
from alibabacloud_dybaseapi20170525.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from alibabacloud_tea_openapi.models import Config
from mns.account import Account

from consumer.testing.fake_alicom import FakeAlicomServer, shanghai_wall_time
from consumer.testing.fake_mns import FakeMnsServer, ManualClock

QUEUE = "Alicom-Queue-1234567890-VoiceReport"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def servers(clock: ManualClock) -> Iterator[tuple[FakeAlicomServer, FakeMnsServer]]:
    with (
        FakeMnsServer(clock=clock) as mns,
        FakeAlicomServer(mns, accounts={"LTAIcustomer": "secret"}, clock=clock) as alicom,
    ):
        mns.create_queue(QUEUE)
        yield alicom, mns


def client(alicom: FakeAlicomServer, key_id: str = "LTAIcustomer") -> Client:
    return Client(
        Config(
            access_key_id=key_id,
            access_key_secret="secret",
            endpoint=alicom.endpoint.removeprefix("http://"),
            protocol="http",
            connect_timeout=2000,
            read_timeout=2000,
        )
    )


def query(
    alicom: FakeAlicomServer, key_id: str = "LTAIcustomer"
) -> models.QueryTokenForMnsQueueResponse:
    request = models.QueryTokenForMnsQueueRequest(message_type="VoiceReport", queue_name=QUEUE)
    return client(alicom, key_id).query_token_for_mns_queue(request)


def test_issued_token_opens_the_queue_on_the_fake_mns(
    servers: tuple[FakeAlicomServer, FakeMnsServer], clock: ManualClock
) -> None:
    alicom, mns = servers
    mns.put_message(QUEUE, "x")
    # When the real SDK asks for a token
    response = query(alicom)
    # Then it gets an STS triple that expires in an hour, in Shanghai wall time
    assert response.status_code == 200
    assert response.body.code == "OK"
    dto = response.body.message_token_dto
    assert dto.access_key_id.startswith("STS.")
    assert dto.expire_time == shanghai_wall_time(int(clock()) + 3600)
    # And the triple works on MNS
    account = Account(mns.endpoint, dto.access_key_id, dto.access_key_secret, dto.security_token)
    queue = account.get_queue(QUEUE)
    queue.set_encoding(False)
    assert queue.receive_message(0).message_body == "x"
    assert mns.requests[-1].status == 200
    # And the request was the new SDK's ACS3 form
    [seen] = alicom.requests
    assert (seen.form, seen.action, seen.access_key_id) == (
        "acs3",
        "QueryTokenForMnsQueue",
        "LTAIcustomer",
    )
    assert (seen.message_type, seen.queue_name) == ("VoiceReport", QUEUE)


def test_shanghai_wall_time_is_utc_plus_8() -> None:
    epoch = datetime(2024, 5, 1, 2, 0, tzinfo=UTC).timestamp()
    assert shanghai_wall_time(epoch) == "2024-05-01 10:00:00"


def _rpc_url(endpoint: str, secret: str) -> str:
    """A classic RPC request signed as Aliyun documents it (HMAC-SHA1, `secret&` as key)."""
    params = {
        "Action": "QueryTokenForMnsQueue",
        "Version": "2017-05-25",
        "Format": "JSON",
        "AccessKeyId": "LTAIcustomer",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "5f0c3a7e",
        "Timestamp": "2026-01-02T03:04:05Z",
        "MessageType": "VoiceReport",
    }
    encode = functools.partial(urllib.parse.quote, safe="~")
    canonical = "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"POST&{encode('/')}&{encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    params["Signature"] = base64.b64encode(digest).decode()
    return f"{endpoint}/?{urllib.parse.urlencode(params)}"


def test_classic_rpc_query_form_is_accepted(
    servers: tuple[FakeAlicomServer, FakeMnsServer],
) -> None:
    alicom, _ = servers
    url = _rpc_url(alicom.endpoint, "secret")
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as answer:
        body = json.load(answer)
    assert body["Code"] == "OK"
    assert set(body["MessageTokenDTO"]) == {
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "CreateTime",
        "ExpireTime",
    }
    assert alicom.requests[-1].form == "rpc"


def test_a_classic_request_signed_with_another_secret_is_refused(
    servers: tuple[FakeAlicomServer, FakeMnsServer],
) -> None:
    # Given a classic RPC request signed with a secret that is not the account's
    alicom, _ = servers
    url = _rpc_url(alicom.endpoint, "not-the-secret")
    # When it is sent, Then the peer refuses it as Aliyun does
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5)
    assert refused.value.code == 400
    assert json.load(refused.value)["Code"] == "SignatureDoesNotMatch"
    assert alicom.issued == []


def test_the_sdk_with_a_wrong_secret_is_refused(
    servers: tuple[FakeAlicomServer, FakeMnsServer],
) -> None:
    # Given the real SDK configured with a wrong secret
    alicom, _ = servers
    wrong = Client(
        Config(
            access_key_id="LTAIcustomer",
            access_key_secret="wrong",
            endpoint=alicom.endpoint.removeprefix("http://"),
            protocol="http",
        )
    )
    request = models.QueryTokenForMnsQueueRequest(message_type="VoiceReport", queue_name=QUEUE)
    # When it asks for a token, Then its ACS3 signature does not match and it raises
    with pytest.raises(ClientException) as refused:
        wrong.query_token_for_mns_queue(request)
    assert refused.value.code == "SignatureDoesNotMatch"
    assert alicom.issued == []


def test_code_not_ok_comes_with_http_200(servers: tuple[FakeAlicomServer, FakeMnsServer]) -> None:
    alicom, _ = servers
    alicom.answer_next(200, "isv.SYSTEM_ERROR", "system busy")
    response = query(alicom)
    assert (response.status_code, response.body.code) == (200, "isv.SYSTEM_ERROR")
    assert response.body.message_token_dto is None


def test_unknown_access_key_is_403(servers: tuple[FakeAlicomServer, FakeMnsServer]) -> None:
    alicom, _ = servers
    with pytest.raises(ClientException) as caught:
        query(alicom, key_id="LTAIunknown")
    assert (caught.value.code, caught.value.status_code) == ("InvalidAccessKeyId.NotFound", 403)


def test_answer_next_can_be_a_server_error(servers: tuple[FakeAlicomServer, FakeMnsServer]) -> None:
    alicom, _ = servers
    alicom.answer_next(503, "ServiceUnavailable", count=2)
    for _ in range(2):
        with pytest.raises(ServerException):
            query(alicom)
    assert query(alicom).body.code == "OK"


def test_short_ttl_sets_expire_time(
    servers: tuple[FakeAlicomServer, FakeMnsServer], clock: ManualClock
) -> None:
    alicom, _ = servers
    alicom.set_token_ttl(130)
    dto = query(alicom).body.message_token_dto
    assert dto.expire_time == shanghai_wall_time(int(clock()) + 130)
    assert alicom.issued[-1].expires_at == int(clock()) + 130


def test_unknown_action_is_refused(servers: tuple[FakeAlicomServer, FakeMnsServer]) -> None:
    alicom, _ = servers
    request = urllib.request.Request(f"{alicom.endpoint}/?Action=Other", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400


def test_call_details_answer_only_inside_the_24_hours_after_query_date() -> None:
    from alibabacloud_dyvmsapi20170525 import models as vms_models
    from alibabacloud_dyvmsapi20170525.client import Client as VmsClient

    # Given a call detail created at 2024-05-01 10:00:00 in Shanghai (02:00 UTC)
    with FakeAlicomServer(accounts={"LTAIcustomer": "secret"}) as alicom:
        alicom.add_call_detail("c1", 11000000300006, {"gmtCreate": "2024-05-01 10:00:00"})
        vms = VmsClient(
            Config(
                access_key_id="LTAIcustomer",
                access_key_secret="secret",
                endpoint=alicom.endpoint.removeprefix("http://"),
                protocol="http",
            )
        )

        def data(prod_id: int, query_date: datetime) -> str | None:
            request = vms_models.QueryCallDetailByCallIdRequest(
                call_id="c1", prod_id=prod_id, query_date=int(query_date.timestamp() * 1000)
            )
            body = vms.query_call_detail_by_call_id(request).body
            assert body.code == "OK"
            return body.data

        # When the real SDK asks with QueryDate midnight of that day in Shanghai, Then Data comes
        midnight = datetime(2024, 4, 30, 16, tzinfo=UTC)
        assert json.loads(data(11000000300006, midnight) or "{}") == {
            "gmtCreate": "2024-05-01 10:00:00"
        }
        # And a QueryDate after the call, a day too early, or another product get no Data
        assert data(11000000300006, datetime(2024, 5, 1, 3, tzinfo=UTC)) is None
        assert data(11000000300006, datetime(2024, 4, 29, 16, tzinfo=UTC)) is None
        assert data(11010000138001, midnight) is None
