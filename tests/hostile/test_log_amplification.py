"""Untrusted input reaches a log line or `dead_letters.error` only cut short, with its size.

A 1 MB form-encoded body on a 7moor queue once put its whole field name into the error: 1 MB in
one log line and in the database. Every quote now goes through `consumer.errors.clip`, and the
log chain cuts any value left too long (docs/security.md, "Decoding limits").
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from consumer.config.model import LogConfig, SinkConfig
from consumer.errors import DETAIL_LIMIT, InvalidMessage, clip
from consumer.formats import get_format, parse
from consumer.logs import LOG_VALUE_LIMIT, configure_logging, get_logger
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.results import Disposition
from consumer.sinks import open_sink
from consumer.sources.base import Message
from tests.sources.test_http import Reply, every_queue, run, serving, status

MEGABYTE = 1_048_576
# A line holds a dozen short keys besides the capped values.
LINE_LIMIT = 4 * LOG_VALUE_LIMIT


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=buffer)
    yield buffer
    structlog.contextvars.clear_contextvars()
    configure_logging()


def test_a_megabyte_form_field_name_is_cut_in_the_log_and_the_dead_letter(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    # Given a 7moor queue on a real SQLite sink, and a form body whose one field name is 1 MB
    sink = open_sink(SinkConfig(url=f"sqlite:///{tmp_path / 'events.db'}"))
    sink.migrate()
    pipeline = Pipeline(queue="moor", format=get_format("moor7.event"), sink=sink)
    body = b"a" * MEGABYTE + b"=%7B"
    # When the pipeline handles it
    (result,) = pipeline.handle([Message("m-1", body, 1, "h-1")])
    # Then it is dead-lettered with its bytes whole and an error that quotes 64 characters
    assert result.disposition is Disposition.DEAD_LETTERED
    (letter,) = sink.dead_letters()
    assert letter.payload == body
    assert letter.reason == "not_json"
    assert letter.error.startswith("form field '" + "a" * 64 + "…' (1048576 bytes): ")
    assert len(letter.error) < 200
    # And no log line comes near the body's size; the quarantine line carries the same error
    lines = log_lines.getvalue().splitlines()
    assert max(len(line) for line in lines) < LINE_LIMIT
    quarantined = [json.loads(line) for line in lines if "quarantined" in line]
    assert [line["error"] for line in quarantined] == [letter.error]
    sink.close()


def test_many_long_form_field_names_are_each_cut() -> None:
    # Given a form body of three fields, each named by half a megabyte
    names = [letter * (MEGABYTE // 2) for letter in "abc"]
    body = "&".join(f"{name}=1" for name in names).encode()
    # When it is parsed
    with pytest.raises(InvalidMessage) as caught:
        parse("moor7.event", body)
    # Then the error names each field cut short, with its size
    error = caught.value
    assert error.reason == "bad_form"
    assert error.detail.count(f"…' ({MEGABYTE // 2} bytes)") == 3
    assert len(error.detail) < 400


def test_a_megabyte_unknown_event_type_is_cut_in_the_error() -> None:
    # Given a 7moor push whose pushType is a megabyte long
    body = json.dumps({"pushType": "x" * MEGABYTE, "callUniqueId": "c-1"}).encode()
    # When it is parsed, Then the error quotes 64 characters and the size
    with pytest.raises(InvalidMessage) as caught:
        parse("moor7.event", body)
    assert caught.value.reason == "unknown_event_type"
    assert f"'{'x' * 64}…' ({MEGABYTE} bytes)" in caught.value.detail
    assert len(caught.value.detail) < DETAIL_LIMIT


def test_an_error_detail_is_capped_whoever_builds_it() -> None:
    # Given a detail of a megabyte that quotes input without clip (a future mistake)
    error = InvalidMessage("bad_field", "value " + "v" * MEGABYTE)
    # Then the detail, and so the dead letter, keeps DETAIL_LIMIT characters and says the size
    assert error.detail == clip("value " + "v" * MEGABYTE, DETAIL_LIMIT, quote=False)
    assert error.detail.endswith(f"… ({MEGABYTE + 6} bytes)")
    assert str(error) == f"bad_field: {error.detail}"


def test_the_log_chain_cuts_every_long_value(log_lines: io.StringIO) -> None:
    # Given log values a megabyte long: a string, a nested one, bytes, and a traceback's text
    log = get_logger("consumer.test")
    nested: dict[str, Any] = {"field": ["y" * MEGABYTE]}
    # When they are logged
    log.warning("long values", text="x" * MEGABYTE, nested=nested, raw=b"z" * MEGABYTE)
    # Then each is cut to the limit and says its size, and the line stays short
    (line,) = log_lines.getvalue().splitlines()
    assert len(line) < LINE_LIMIT
    fields = json.loads(line)
    assert fields["text"] == "x" * LOG_VALUE_LIMIT + f"… ({MEGABYTE} bytes)"
    assert fields["nested"]["field"][0] == "y" * LOG_VALUE_LIMIT + f"… ({MEGABYTE} bytes)"
    assert fields["raw"].endswith(f"…' ({MEGABYTE} bytes)")


def test_a_long_phone_number_value_is_masked_before_it_is_cut(log_lines: io.StringIO) -> None:
    # Given a value with a mobile number that straddles the cut
    text = "x" * (LOG_VALUE_LIMIT - 6) + " 13812345678"
    # When it is logged, Then no more than the number's masked form shows
    get_logger("consumer.test").warning("long", text=text)
    shown = json.loads(log_lines.getvalue())["text"]
    assert "12345" not in shown
    assert shown.startswith("x" * (LOG_VALUE_LIMIT - 6) + " 138**")


def test_a_long_content_type_is_quoted_short_in_the_415(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    # Given a listener, and a push whose content type is 8,000 characters (under aiohttp's
    # header limit)
    content_type = "text/" + "x" * 7995

    async def scenario() -> Reply:
        async with serving(tmp_path, every_queue()) as rig:
            return await rig.post("/push/huawei/voice", status("c@h"), content_type=content_type)

    # When it is posted
    reply = run(scenario)
    # Then it is refused 415, quoting 64 characters of the type and its size
    assert reply.status == 415
    assert f"…' ({len(content_type)} bytes)" in reply.json()["error"]
    assert len(reply.body) < 300
    # And no log line comes near the header's size
    assert all(len(line) < LINE_LIMIT for line in log_lines.getvalue().splitlines())
