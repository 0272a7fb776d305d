"""The batch delete writes the request the SDK's own encoder writes, and deletes as the SDK does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.mns_xml_handler import ReceiptHandlesEncoder

from consumer.sources.mns_delete import batch_delete, encode_handles
from consumer.testing.fake_mns import FakeMnsServer
from tests.sources.test_mns_receive import AK, QUEUE, SK


@settings(max_examples=200, deadline=None)
@given(handles=st.lists(st.text(st.characters(blacklist_categories=["Cs"])), max_size=16))
def test_the_request_body_is_the_sdks(handles: list[str]) -> None:
    # Given any receipt handles (markup characters and non-ASCII included)
    # When both encoders write the request, Then the bytes are the same
    assert encode_handles(handles) == ReceiptHandlesEncoder.encode(handles)


def test_a_batch_is_deleted_and_a_stale_handle_is_the_sdks_error() -> None:
    with FakeMnsServer(seed=7) as mns:
        mns.create_queue(QUEUE, visibility_timeout=30)
        mns.add_credentials(AK, SK)
        _delete_twice(mns)


def _delete_twice(mns: FakeMnsServer) -> None:
    # Given three received messages
    for n in range(3):
        mns.put_message(QUEUE, f"body-{n}")
    account = Account(mns.endpoint, AK, SK)
    queue = account.get_queue(QUEUE)
    queue.set_encoding(False)
    handles = [message.receipt_handle for message in queue.batch_receive_message(16, 1)]
    assert len(handles) == 3
    # When two are deleted in a batch, Then they are gone and the third is still held
    batch_delete(queue, handles[:2])
    assert mns.stats(QUEUE).total == 1
    # And deleting them again fails per handle, as the SDK reports it
    with pytest.raises(MNSServerException) as raised:
        batch_delete(queue, handles[:2])
    with pytest.raises(MNSServerException) as by_sdk:
        queue.batch_delete_message(handles[:2])
    assert raised.value.type == by_sdk.value.type
    assert raised.value.sub_errors == by_sdk.value.sub_errors
    assert len(raised.value.sub_errors) == 2
    account.mns_client.close_connection()
