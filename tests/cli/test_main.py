"""The `consumer` command line: check, normalize, --version."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from consumer import __version__
from consumer.cli import main
from consumer.formats import FORMAT_NAMES, parse
from consumer.model import CallEvent

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests/formats/samples"
VALID_SAMPLES = sorted(path for path in SAMPLES.glob("*.json") if ".invalid." not in path.name)
INVALID_SAMPLES = sorted(SAMPLES.glob("*.invalid.*"))

EXAMPLE_SECRETS = {
    "PG_PASSWORD": "pg-password-1",
    "WEBHOOK_SECRET": "webhook-secret-1",
    "ALIYUN_ACCESS_KEY_SECRET": "aliyun-secret-1",
    "HUAWEI_PUSH_TOKEN": "huawei-push-token-0123456789",
    "HUAWEI_APP_SECRET": "huawei-app-secret-1",
    "MOOR7_PUSH_TOKEN": "moor7-push-token-0123456789",
}
RMQ_PASSWORD = "rmq-password-from-credential"


@pytest.fixture
def example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "rmq-password").write_text(RMQ_PASSWORD + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "LTAI5tExampleKeyId")
    monkeypatch.setenv("RMQ_USER", "rmq-user")
    monkeypatch.setenv("HUAWEI_APP_KEY", "huawei-app-key")
    for name, value in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(name, value)


# -- check -----------------------------------------------------------------------------------


def test_check_local_config_prints_resolved_settings(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the embedded default configuration
    # When it is checked
    status = main(["check", "-c", str(REPO / "config/local.yaml")])
    # Then it is valid and the output is YAML holding every queue with its defaults filled in
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"# {REPO / 'config/local.yaml'}: valid, 8 queues\n")
    printed = yaml.safe_load(out)
    assert set(FORMAT_NAMES) == {queue["format"] for queue in printed["queues"]}
    assert printed["queues"][0]["retry"] == {
        "attempts": 5,
        "initial": "1s",
        "max": "30s",
        "total": "60s",
    }
    assert "mns" not in printed["queues"][0]
    # And the log format left unset is the one `run` would pick here (stderr is no terminal)
    assert printed["log"]["format"] == "json"


def test_check_prints_the_log_format_that_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a configuration that asks for the console layout
    config = tmp_path / "c.yaml"
    config.write_text(
        "log: {format: console}\nqueues:\n"
        "  - {name: a, source: http, format: moor7.event, http: {path: /a}}\n",
        encoding="utf-8",
    )
    # When it is checked, then that is what is printed
    assert main(["check", "-c", str(config)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["log"]["format"] == "console"


@pytest.mark.usefixtures("example_env")
@pytest.mark.parametrize("layout", ["config/example.yaml", "config/conf.d"])
def test_check_example_masks_every_secret(capsys: pytest.CaptureFixture[str], layout: str) -> None:
    # Given the example configuration in either layout, with its variables set
    # When it is checked
    status = main(["check", "-c", str(REPO / layout)])
    # Then it is valid, and no secret value appears: each shows as ***
    out = capsys.readouterr().out
    assert status == 0
    for secret in [*EXAMPLE_SECRETS.values(), RMQ_PASSWORD]:
        assert secret not in out
    printed = yaml.safe_load(out)
    assert printed["sink"]["url"] == "postgresql://consumer:***@127.0.0.1:5432/calls"
    assert printed["sink"]["forward"][0] == {
        "webhook": {
            "url": "https://example.internal/call-events",
            "secret": "***",
            "timeout": "10s",
        }
    }
    by_name = {queue["name"]: queue for queue in printed["queues"]}
    assert by_name["outbound-bot"]["rocketmq"]["credentials"] == {
        "username": "rmq-user",
        "password": "***",
    }
    assert by_name["huawei-privacy"]["http"]["auth"]["app_secret"] == "***"
    assert by_name["vms-voice-report"]["mns"]["auth"]["access_key_id"] == "LTAI5tExampleKeyId"


def test_check_example_without_its_variables_names_each_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the example with none of its variables set
    for name in [*EXAMPLE_SECRETS, "CREDENTIALS_DIRECTORY"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("RMQ_USER", "u")
    monkeypatch.setenv("HUAWEI_APP_KEY", "k")
    monkeypatch.chdir(REPO)
    # When it is checked
    status = main(["check", "-c", "config/example.yaml"])
    # Then it fails, one line per unresolved reference, at its key path
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert err[0] == (
        "config/example.yaml: sink.url: environment variable PG_PASSWORD is not set (line 14)"
    )
    assert (
        "config/example.yaml: queues[4].rocketmq.credentials.password: "
        "${file:$CREDENTIALS_DIRECTORY/rmq-password}: environment variable CREDENTIALS_DIRECTORY "
        "is not set (systemd sets it for units with LoadCredential=) (line 98)"
    ) in err
    assert len(err) == 10


BASE = """\
queues:
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:9000
      queue: q
      auth:
        mode: access_key
        access_key_id: i
        access_key_secret: ${SECRET}
"""


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET", "s")
    monkeypatch.delenv("UNSET_SECRET", raising=False)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("      queue: q\n", "      queue: q\n      wait: 3\n", "queues[0].mns.wait: unknown key"),
        ("      queue: q\n", "", "queues[0].mns.queue: required key is missing"),
        ("        mode: access_key\n", "        mode: key\n", "queues[0].mns.auth.mode: bad value"),
        ("source: mns", "source: kafka", "queues[0].source: bad value 'kafka'; allowed: mns,"),
        ("${SECRET}", "${UNSET_SECRET}", "queues[0].mns.auth.access_key_secret: environment"),
        ("queue: q", "queue: q_1", "queues[0].mns.queue: bad value 'q_1': must be a queue name"),
        ("format: aliyun.voice_report", "format: 7", "queues[0].format: wrong type"),
        (
            "    source: mns\n",
            "    source: mns\n    workers: 0\n",
            "queues[0].workers: bad value 0",
        ),
        ("queues:\n", "sink: {url: 'x'}\nqueues:\n", "sink.url: must start with sqlite:///"),
        ("      queue: q\n", "      queue: q\n      queue: q\n", "queues[0].mns.queue: duplicate"),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "bad-auth-mode",
        "bad-source",
        "unset-variable",
        "bad-queue-name",
        "wrong-type",
        "out-of-range",
        "bad-sink-url",
        "duplicate-key",
    ],
)
@pytest.mark.usefixtures("secret_env")
def test_check_rejects_bad_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: str
) -> None:
    # Given a configuration with one thing wrong
    assert old in BASE
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace(old, new, 1), encoding="utf-8")
    # When it is checked
    status = main(["check", "-c", str(path)])
    # Then it exits 1 and stderr names the file and the key path, stdout stays empty
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.startswith(f"{path}: {expected}"), captured.err


def test_check_conf_d_error_names_the_queue_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a conf.d directory with a broken second queue file
    root = tmp_path / "conf.d"
    (root / "queues.d").mkdir(parents=True)
    (root / "consumer.yaml").write_text("log: {level: info}\n", encoding="utf-8")
    (root / "queues.d/10-a.yaml").write_text(
        "name: a\nsource: http\nformat: moor7.event\nhttp: {path: /a}\n", encoding="utf-8"
    )
    (root / "queues.d/20-b.yaml").write_text(
        textwrap.dedent(
            """\
            name: b
            source: rocketmq
            format: aliyun.outbound_bot
            rocketmq:
              endpoints: 127.0.0.1:8081
              topic: T
            """
        ),
        encoding="utf-8",
    )
    # When it is checked
    status = main(["check", "-c", str(root)])
    # Then the error names that file and the key path inside it
    assert status == 1
    assert capsys.readouterr().err == (
        f"{root}/queues.d/20-b.yaml: rocketmq.group: required key is missing (line 4)\n"
    )


def test_check_requires_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    # Given no -c
    # When check runs
    status = main(["check"])
    # Then it is a usage error that says what is missing
    assert status == 2
    assert "-c/--config" in capsys.readouterr().err


# -- normalize -------------------------------------------------------------------------------


def _format_of(sample: Path) -> str:
    return next(name for name in FORMAT_NAMES if sample.name.startswith(name + "."))


def test_there_are_samples_for_every_format() -> None:
    assert {_format_of(sample) for sample in VALID_SAMPLES} == set(FORMAT_NAMES)


@pytest.mark.parametrize("sample", VALID_SAMPLES, ids=lambda path: path.name)
def test_normalize_prints_one_json_event_per_line(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a provider sample message
    fmt = _format_of(sample)
    # When it is normalized from the file
    status = main(["normalize", "--format", fmt, str(sample)])
    # Then each line is one event, exactly as the format module produced it
    out = capsys.readouterr().out.splitlines()
    expected = [item.event.model_dump_json() for item in parse(fmt, sample.read_bytes())]
    assert status == 0
    assert out == expected
    for line in out:
        CallEvent.model_validate(json.loads(line))


def test_normalize_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sample body on stdin
    sample = next(path for path in VALID_SAMPLES if path.name.startswith("moor7.event."))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(sample.read_bytes())))
    # When normalize runs without FILE
    status = main(["normalize", "--format", "moor7.event"])
    # Then it prints the same events as from the file
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        item.event.model_dump_json() for item in parse("moor7.event", sample.read_bytes())
    ]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_normalize_rejects_a_bad_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    # Given a body that is not JSON at all
    body = tmp_path / "bad.txt"
    body.write_bytes(b"\x00not json{")
    # When it is normalized
    status = main(["normalize", "--format", fmt, str(body)])
    # Then it exits 1 with the reason on stderr and nothing on stdout
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.startswith(f"{body}: not a valid {fmt} message: ")


@pytest.mark.parametrize("sample", INVALID_SAMPLES, ids=lambda path: path.name)
def test_normalize_rejects_the_invalid_samples(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["normalize", "--format", _format_of(sample), str(sample)])
    assert status == 1
    assert "not a valid" in capsys.readouterr().err


def test_normalize_unknown_format_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a format name that does not exist
    # When normalize runs
    status = main(["normalize", "--format", "aliyun.voice", "x.json"])
    # Then it is a usage error naming the bad format and the valid ones
    err = capsys.readouterr().err
    assert status == 2
    assert "invalid choice: 'aliyun.voice'" in err
    assert "moor7.event" in err


def test_normalize_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["normalize", "--format", "moor7.event", str(tmp_path / "none.json")])
    assert status == 1
    assert (
        capsys.readouterr().err
        == f"{tmp_path / 'none.json'}: cannot read: No such file or directory\n"
    )


# -- the rest --------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"consumer {__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "check" in err
    assert "normalize" in err


def test_python_dash_m_consumer() -> None:
    # Given the package run as a module
    # When asked for its version
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Then it answers like the console script
    assert done.returncode == 0
    assert done.stdout == f"consumer {__version__}\n"
