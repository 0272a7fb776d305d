"""The ElementTree decoding of batch-receive answers reads what the SDK's own decoder reads.

The reference is aliyun-mns-sdk's `BatchRecvMessageDecoder` (minidom), run on the same answers:
what the fake MNS serves over a socket, and answers in the documented shape of the
BatchReceiveMessage API (https://help.aliyun.com/zh/mns/developer-reference/batchreceivemessage)
with properties, a message group, and bodies that need XML escaping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.mns_xml_handler import BatchRecvMessageDecoder

from consumer.sources.mns_receive import batch_receive, decode_messages
from consumer.testing.fake_mns import FakeMnsServer

QUEUE = "Alicom-Queue-1234567890-VoiceReport"
AK, SK = "LTAIown", "own-secret"
XMLNS = "http://mns.aliyuncs.com/doc/v1/"


def _fields(entry: Any) -> dict[str, Any]:
    """An entry as plain data (the SDK's property values do not compare by content)."""
    fields = dict(vars(entry))
    for name in ("user_properties", "system_properties"):
        fields[name] = {key: vars(value) for key, value in fields[name].items()}
    return fields


def _sdk(xml: str) -> list[dict[str, Any]]:
    return [_fields(entry) for entry in BatchRecvMessageDecoder.decode(xml, False, "req")]


def _ours(xml: str) -> list[dict[str, Any]]:
    return [_fields(entry) for entry in decode_messages(xml, "req")]


def _answer(*messages: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Messages xmlns="{XMLNS}">'
        + "".join(messages)
        + "</Messages>"
    )


def _message(body: str, n: int = 1, extra: str = "") -> str:
    return (
        f"<Message><MessageId>5F290C926D472878-2-14D9529{n:05d}</MessageId>"
        f"<ReceiptHandle>1-ODU4OTkzNDU5My0xNDMyNzI3Mjg3LTItOA=={n}</ReceiptHandle>"
        f"<MessageBodyMD5>C5DD56A39F5F7BB8B3337C6D11B6D8C7</MessageBodyMD5>"
        f"<MessageBody>{escape(body)}</MessageBody>"
        f"<EnqueueTime>1250700979248</EnqueueTime><NextVisibleTime>1250700799348</NextVisibleTime>"
        f"<FirstDequeueTime>1250700779318</FirstDequeueTime><DequeueCount>{n}</DequeueCount>"
        f"<Priority>8</Priority>{extra}</Message>"
    )


@pytest.fixture
def mns() -> Iterator[FakeMnsServer]:
    with FakeMnsServer(seed=5) as server:
        server.create_queue(QUEUE, visibility_timeout=30)
        server.add_credentials(AK, SK)
        yield server


def test_a_received_batch_reads_as_the_sdk_reads_it(mns: FakeMnsServer) -> None:
    # Given a queue holding messages whose bodies need escaping in XML
    bodies = ['{"a": "<b> & \'c\'"}', "eyJjYWxsX2lkIjoiMSJ9", "中文 ]]> text"]
    for body in bodies:
        mns.put_message(QUEUE, body)
    account = Account(mns.endpoint, AK, SK)
    queue = account.get_queue(QUEUE)
    queue.set_encoding(False)
    # When they are received through the SDK's connection, decoded by ElementTree
    entries = batch_receive(queue, 16, 1)
    # Then each entry is the SDK's own type with the body exactly as sent
    assert sorted(entry.message_body for entry in entries) == sorted(bodies)
    assert all(isinstance(entry.next_visible_time, int) for entry in entries)
    # And the SDK accepts their receipt handles
    queue.batch_delete_message([entry.receipt_handle for entry in entries])
    assert mns.stats(QUEUE).total == 0
    account.mns_client.close_connection()


def test_an_empty_queue_is_the_sdks_message_not_exist(mns: FakeMnsServer) -> None:
    # Given an empty queue, When a batch is received, Then the SDK's server exception comes
    account = Account(mns.endpoint, AK, SK)
    queue = account.get_queue(QUEUE)
    with pytest.raises(MNSServerException) as raised:
        batch_receive(queue, 16, 0)
    assert raised.value.type == "MessageNotExist"
    account.mns_client.close_connection()


def test_properties_and_groups_decode_as_in_the_sdk() -> None:
    # Given an answer with user and system properties and a message group
    properties = (
        "<UserProperties><PropertyValue><Name>k</Name><Value>v</Value><Type>STRING</Type>"
        "</PropertyValue></UserProperties>"
        "<SystemProperties><SystemPropertyValue><Name>DLQ_SOURCE_ARN</Name><Value>acs:x</Value>"
        "<Type>STRING</Type></SystemPropertyValue></SystemProperties>"
        "<MessageGroupId>g1</MessageGroupId>"
    )
    xml = _answer(_message("plain", 1, properties), _message("two", 2))
    # When both decoders read it, Then every field of every entry agrees
    assert _ours(xml) == _sdk(xml)
    first = _ours(xml)[0]
    assert first["message_group_id"] == "g1"
    assert first["user_properties"]["k"]["string_value"] == "v"


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1)))
def test_any_bodies_decode_as_in_the_sdk(bodies: list[str]) -> None:
    # Given an answer with any printable bodies, When both decoders read it, Then they agree
    xml = _answer(*(_message(body, n) for n, body in enumerate(bodies)))
    assert _ours(xml) == _sdk(xml)


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml",
        _answer(_message("x").replace("<ReceiptHandle>", "<Other>").replace("</Receipt", "</Oth")),
        _answer(_message("x").replace("<DequeueCount>1", "<DequeueCount>one")),
        '<?xml version="1.0"?><Other/>',
    ],
    ids=["empty", "not-xml", "no-handle", "bad-count", "no-messages"],
)
def test_a_damaged_answer_is_the_sdks_resp_data_damaged(xml: str) -> None:
    # Given an answer the SDK calls damaged, When ours reads it, Then it says the same
    with pytest.raises(MNSClientNetworkException) as sdk:
        BatchRecvMessageDecoder.decode(xml, False, "req")
    with pytest.raises(MNSClientNetworkException) as ours:
        decode_messages(xml, "req")
    assert (ours.value.type, ours.value.req_id) == (sdk.value.type, "req")
