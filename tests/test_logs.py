"""Logging: JSON lines, redaction of configured secrets, phone-number masking, message context."""

from __future__ import annotations

import importlib
import io
import json
import logging
import multiprocessing
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.config.load import load_config
from consumer.config.model import LogConfig
from consumer.logs import (
    configure_from,
    configure_logging,
    get_logger,
    mask_phone_numbers,
    message_context,
    writes,
)

SECRET = 'Sup3r"Secret\\密钥-value'


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    configure_logging()  # back to the defaults on stderr for whoever runs next


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def configured(
    secrets: tuple[str, ...] = (), **log: Any
) -> tuple[io.StringIO, structlog.typing.FilteringBoundLogger]:
    buffer = io.StringIO()
    configure_logging(LogConfig(**{"format": "json", **log}), secrets=secrets, stream=buffer)
    return buffer, get_logger("consumer.test")


# -- redaction -------------------------------------------------------------------------------


class Holder:
    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Holder({self.value!r})"


def test_a_configured_secret_never_reaches_the_output(tmp_path: Path) -> None:
    # Given a configuration whose push token and MNS secret come from the environment,
    # and a logger configured from it
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        """\
queues:
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:9000
      queue: q
      auth: {mode: access_key, access_key_id: id, access_key_secret: "${MNS_SECRET}"}
  - name: push
    source: http
    format: moor7.event
    http:
      path: /push
      auth: {mode: token, token: "${PUSH_TOKEN}"}
""",
        encoding="utf-8",
    )
    token = "push-token-0123456789abcdef"
    config = load_config(config_path, env={"MNS_SECRET": SECRET, "PUSH_TOKEN": token})
    buffer = io.StringIO()
    configure_logging(config.log, secrets=config.secrets, stream=buffer)
    log = get_logger("consumer.test")
    # When the secrets are logged deliberately, in every way we can think of
    log.info(f"message text {SECRET} and {token}")
    log.info("as a value", secret=SECRET, token=token)
    log.info("nested", payload={"auth": {"key": [SECRET, {"deep": token}]}})
    log.info("inside a tuple and a set", items=(SECRET,), unique={token})
    log.info("an object's repr", holder=Holder(SECRET))
    log.info("as a key", **{SECRET: "value"})
    log.info("in bytes", raw=SECRET.encode())
    try:
        raise RuntimeError(f"connect failed with {SECRET}")
    except RuntimeError:
        log.exception("with a traceback")
    logging.getLogger("some.sdk").warning("stdlib logger says %s / %s", SECRET, token)
    with message_context(queue="vms", message_id=SECRET):
        log.info("in the bound context")
    # Then no line holds either secret in any spelling, and each line says where one was
    output = buffer.getvalue()
    spellings = {SECRET, json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]}
    spellings |= {repr(SECRET)[1:-1], token, "密钥-value"}
    for spelling in spellings:
        assert spelling not in output
    events = [json.loads(line)["event"] for line in output.splitlines()]
    assert len(events) == 10
    assert "stdlib logger says *** / ***" in events
    assert all("***" in line for line in output.splitlines())


def test_a_secret_that_is_a_number_is_redacted_in_numbers_too() -> None:
    # Given a numeric secret
    buffer, log = configured(secrets=("987654321",))
    # When it is logged as an int
    log.info("pin", pin=987654321)
    # Then the line shows *** instead
    assert lines(buffer)[0]["pin"] == "***"


def test_configure_from_uses_the_configuration_secrets(tmp_path: Path) -> None:
    # Given a configuration with a password in its sink URL
    path = tmp_path / "c.yaml"
    path.write_text(
        "sink: {url: 'postgresql://u:pg-pass-77@127.0.0.1/db'}\n"
        "queues: [{name: h, source: http, format: moor7.event, http: {path: /h}}]\n",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    configure_from(config)
    buffer = io.StringIO()
    configure_logging(config.log, secrets=config.secrets, stream=buffer)
    # When the URL is logged
    get_logger().info("connecting", url=config.sink.url)
    # Then the password is redacted
    assert lines(buffer)[0]["url"] == "postgresql://u:***@127.0.0.1/db"


# -- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "phone_field", "expected"),
    [
        ("13812345678", False, "138****5678"),
        ("call from 13812345678 to 19912345678.", False, "call from 138****5678 to 199****5678."),
        ("+8613812345678", False, "+86138****5678"),
        ("+86 13812345678", False, "+86 138****5678"),
        ("008613812345678", False, "0086138****5678"),
        ("手机13812345678号", False, "手机138****5678号"),
        ("05711111234", True, "057****1234"),
        ("0571-88886666", True, "0571-****6666"),
        ("05711111234", False, "05711111234"),
        ("12345", True, "12345"),
        ("403344537650466816", False, "403344537650466816"),
        ("100001616500^100001871490", False, "100001616500^100001871490"),
        ("a13812345678b", False, "a13812345678b"),
        ("1620455977000", False, "1620455977000"),
        ("138123456789", False, "138123456789"),
    ],
    ids=[
        "mobile",
        "in-text",
        "plus86",
        "plus86-space",
        "0086",
        "chinese-text",
        "landline-in-phone-field",
        "landline-with-dash",
        "landline-elsewhere-kept",
        "short-extension",
        "moor7-call-id",
        "aliyun-call-id",
        "inside-an-id",
        "epoch-millis",
        "twelve-digits",
    ],
)
def test_mask_phone_numbers(text: str, phone_field: bool, expected: str) -> None:
    assert mask_phone_numbers(text, phone_field=phone_field) == expected


def test_phone_fields_are_masked_and_ids_are_kept_in_log_lines() -> None:
    # Given the default configuration (masking on)
    buffer, log = configured()
    # When a call with its numbers and ids is logged
    log.info(
        "call 13812345678 ended",
        caller="05711111234",
        callee=13912345678,
        calledNum="+8613700001111",
        payload={"displayNbr": "02112345678", "callId": "100001616500^100001871490"},
        call_id="403344537650466816",
        duration=13812345678,
    )
    # Then numbers are masked in phone fields and in text, ids and counts are untouched
    line = lines(buffer)[0]
    assert line["event"] == "call 138****5678 ended"
    assert line["caller"] == "057****1234"
    assert line["callee"] == "139****5678"
    assert line["calledNum"] == "+86137****1111"
    assert line["payload"] == {"displayNbr": "021****5678", "callId": "100001616500^100001871490"}
    assert line["call_id"] == "403344537650466816"
    assert line["duration"] == 13812345678


def test_masking_can_be_switched_off() -> None:
    # Given mask_phone_numbers: false
    buffer, log = configured(mask_phone_numbers=False)
    # When a number is logged
    log.info("call", caller="13812345678")
    # Then it is shown as it is
    assert lines(buffer)[0]["caller"] == "13812345678"


# -- lines and context -----------------------------------------------------------------------


def test_json_lines_carry_level_utc_timestamp_logger_and_bound_message_context() -> None:
    # Given a message context around the handling of one message, and one event inside it
    buffer, log = configured()
    with message_context(queue="vms", provider="aliyun_vms", message_id="m-1"):
        log.info("received")
        with message_context(kind="call.record", call_id="c-1", event_id="e-1"):
            log.info("stored")
        log.info("acknowledged")
    log.info("idle")
    # Then every line about the message carries its keys, and none leaks past the context
    received, stored, acknowledged, idle = lines(buffer)
    message = {"queue": "vms", "provider": "aliyun_vms", "message_id": "m-1"}
    assert received.items() >= message.items()
    assert stored.items() >= {**message, "kind": "call.record", "call_id": "c-1"}.items()
    assert stored["event_id"] == "e-1"
    assert acknowledged.items() >= message.items()
    assert "kind" not in acknowledged
    assert not {"queue", "message_id"} & idle.keys()
    assert list(received)[:4] == ["timestamp", "level", "logger", "event"]
    assert received["level"] == "info"
    assert received["logger"] == "consumer.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", received["timestamp"])


def test_level_filter_and_exception_text() -> None:
    # Given level warning
    buffer, log = configured(level="warning")
    # When lines of several levels and an exception are logged
    log.debug("no")
    log.info("no")
    log.warning("yes")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("failed")
    # Then only warning and above appear, the exception as text
    found = lines(buffer)
    assert [line["event"] for line in found] == ["yes", "failed"]
    assert found[1]["level"] == "error"
    assert "ZeroDivisionError: division by zero" in found[1]["exception"]


def test_writes_says_whether_the_configured_level_lets_a_line_through() -> None:
    # Given level info
    configured(level="info")
    # Then a debug line would not be written, an info or warning line would
    assert (writes(logging.DEBUG), writes(logging.INFO), writes(logging.WARNING)) == (
        False,
        True,
        True,
    )
    # And at level debug, or while a test captures the lines, a debug line would be
    configured(level="debug")
    assert writes(logging.DEBUG)
    configured(level="info")
    with structlog.testing.capture_logs():
        assert writes(logging.DEBUG)


def test_reconfiguring_reaches_loggers_already_in_use() -> None:
    # Given a logger used under a first configuration
    first, log = configured()
    log.info("one")
    # When the process configures logging again (a worker after start), with a new secret
    second = io.StringIO()
    configure_logging(LogConfig(format="json", level="debug"), secrets=("late",), stream=second)
    log.debug("two late")
    # Then the same logger object follows the new settings
    assert [line["event"] for line in lines(first)] == ["one"]
    assert [line["event"] for line in lines(second)] == ["two ***"]


def test_capture_logs_still_works_after_configuration() -> None:
    # Given a configured process whose logger has been used
    buffer, log = configured()
    log.info("before")
    # When a test captures logs with structlog's own helper
    with structlog.testing.capture_logs() as captured:
        log.info("captured", queue="q")
    # Then the line is captured, not written, because loggers are not cached
    assert captured == [{"event": "captured", "queue": "q", "log_level": "info"}]
    assert [line["event"] for line in lines(buffer)] == ["before"]


def test_console_format_is_readable_and_still_redacted() -> None:
    # Given the console format
    buffer = io.StringIO()
    configure_logging(LogConfig(format="console"), secrets=("topsecret",), stream=buffer)
    # When a line is logged
    get_logger("consumer.test").info("hello", token="topsecret", caller="13812345678")
    # Then it is one human line, not JSON, with the secret and number hidden
    output = buffer.getvalue()
    assert "hello" in output
    assert "topsecret" not in output
    assert "138****5678" in output
    assert not output.startswith("{")


def test_default_format_is_json_when_not_a_terminal() -> None:
    # Given no format in the configuration and a stream that is not a TTY
    buffer = io.StringIO()
    configure_logging(LogConfig(), stream=buffer)
    # When a line is logged
    get_logger().info("plain")
    # Then it is JSON
    assert lines(buffer)[0]["event"] == "plain"


def _child(path: str) -> None:
    # Runs in a forked worker: configure again, then log as the parent did.
    with open(path, "w", encoding="utf-8") as stream:
        configure_logging(LogConfig(format="json"), secrets=("child-secret",), stream=stream)
        get_logger("consumer.test").info("from the child child-secret")


def test_a_forked_worker_configures_its_own_logging(tmp_path: Path) -> None:
    # Given a parent whose logger is configured and in use
    buffer, log = configured()
    log.info("parent")
    # When a forked worker configures logging and logs
    target = tmp_path / "child.log"
    process = multiprocessing.get_context("fork").Process(target=_child, args=(str(target),))
    process.start()
    process.join(timeout=30)
    # Then the worker's line went to its own stream with its own redaction
    assert process.exitcode == 0
    child_lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [line["event"] for line in child_lines] == ["from the child ***"]
    assert [line["event"] for line in lines(buffer)] == ["parent"]


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=12).filter(lambda text: text.strip("*")),
    before=st.text(max_size=8),
    after=st.text(max_size=8),
)
def test_no_secret_survives_in_any_spelling(secret: str, before: str, after: str) -> None:
    # Given any secret, however odd its characters
    buffer = io.StringIO()
    configure_logging(LogConfig(format="json"), secrets=(secret,), stream=buffer)
    log = get_logger("consumer.test")
    # When it is logged inside text, as a value, in a list, as bytes and in a repr
    log.info(before + secret + after, value=f"{before}{secret}{after}", items=[secret])
    log.info("bytes", raw=secret.encode(), holder=Holder(secret))
    # Then the output holds none of its JSON spellings (the newline that ends each JSON line is
    # the format's, not a value's: JSON escapes a newline inside a value)
    output = buffer.getvalue().replace("\n", "")
    for spelling in {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }:
        assert spelling not in output


def test_a_library_logger_with_its_own_files_joins_the_json_lines(
    rmq: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the RocketMQ client's logging set up as its import does it (a rotating file under
    # $HOME/logs, cut off from the root), and logging configured with a secret afterwards
    monkeypatch.setenv("HOME", str(tmp_path))
    importlib.reload(importlib.import_module("rocketmq.v5.log.log_config"))
    library = logging.getLogger("rocketmq-python-client")
    assert library.handlers, "the client no longer installs its file handler"
    buffer = io.StringIO()
    configure_logging(LogConfig(format="json"), secrets=[SECRET], stream=buffer)
    # When the client logs a secret and a phone number
    library.info("client says %s to 13812345678", SECRET)
    # Then the line is ours: JSON, redacted, masked, named after the library's logger
    (line,) = lines(buffer)
    assert line["event"] == "client says *** to 138****5678"
    assert (line["logger"], line["level"]) == ("rocketmq-python-client", "info")
    assert "timestamp" in line
    # And nothing went to the library's own file
    assert library.handlers == []
    assert (tmp_path / "logs/rocketmq_python/rocketmq_client.log").read_text() == ""


def test_stdlib_records_are_rendered_by_the_same_chain() -> None:
    # Given logging configured for JSON lines
    buffer = io.StringIO()
    configure_logging(LogConfig(format="json", level="warning"), stream=buffer)
    # When a library logs below and at the level, with an exception
    logging.getLogger("some.sdk").info("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("some.sdk").exception("failed for 13812345678")
    # Then only the warning-or-above line is written, as JSON with the traceback and the mask
    (line,) = lines(buffer)
    assert (line["logger"], line["level"], line["event"]) == (
        "some.sdk",
        "error",
        "failed for 138****5678",
    )
    assert "ValueError: boom" in line["exception"]
