"""What each format tells the push listener: the 200 body its sender expects, and the content
types a push of it may arrive in."""

from __future__ import annotations

import json

import pytest

from consumer.formats import FORMAT_NAMES, get_format


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_answers_a_json_body(name: str) -> None:
    # Given a format of the registry
    fmt = get_format(name)
    # When its answer is read, Then it is a JSON object
    assert isinstance(json.loads(fmt.answer), dict)


def test_each_provider_gets_the_answer_its_documents_ask_for() -> None:
    # Given the formats of three providers, When their answers are read
    # Then Huawei's carries resultcode "0", Aliyun's code 0, 7moor's is empty
    assert json.loads(get_format("huawei.voice_call").answer)["resultcode"] == "0"
    assert json.loads(get_format("aliyun.outbound_bot").answer)["code"] == 0
    assert json.loads(get_format("moor7.event").answer) == {}


@pytest.mark.parametrize(
    ("name", "content_type", "accepted"),
    [
        ("huawei.voice_call", "application/json", True),
        ("huawei.voice_call", "application/vnd.huawei+json", True),
        ("huawei.voice_call", "application/x-www-form-urlencoded", False),
        ("moor7.event", "application/x-www-form-urlencoded", True),
        ("moor7.event", "text/plain", False),
    ],
)
def test_only_a_form_pushing_provider_accepts_a_form(
    name: str, content_type: str, accepted: bool
) -> None:
    # Given a format and a request's content type
    # When the format is asked, Then JSON always passes and a form only where the provider sends one
    assert get_format(name).accepts(content_type) is accepted
