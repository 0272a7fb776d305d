"""Loading configuration files and conf.d directories: references, secrets and every error path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from consumer.config.load import ConfigErrors, format_key_path, load_config
from consumer.config.model import AccessKeyAuth, AlicomTokenAuth, Config

REPO = Path(__file__).resolve().parents[2]

EXAMPLE_ENV = {
    "PG_PASSWORD": "pg-password-1",
    "WEBHOOK_SECRET": "webhook-secret-1",
    "ALIYUN_ACCESS_KEY_ID": "LTAI5tExampleKeyId",
    "ALIYUN_ACCESS_KEY_SECRET": "aliyun-secret-1",
    "RMQ_USER": "rmq-user",
    "HUAWEI_PUSH_TOKEN": "huawei-push-token-0123456789",
    "HUAWEI_APP_KEY": "huawei-app-key",
    "HUAWEI_APP_SECRET": "huawei-app-secret-1",
    "MOOR7_PUSH_TOKEN": "moor7-push-token-0123456789",
}
RMQ_PASSWORD = "rmq-password-from-credential"

MNS_QUEUE = """\
queues:
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:9000
      queue: Alicom-Queue-1-VoiceReport
      auth:
        message_type: VoiceReport
        access_key_id: ${KEY_ID}
        access_key_secret: ${KEY_SECRET}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path, env=env or {})
    return [f"{error.location}: {error.problem}" for error in caught.value.errors]


@pytest.fixture
def example_env(tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "rmq-password").write_text(RMQ_PASSWORD + "\n", encoding="utf-8")
    return {**EXAMPLE_ENV, "CREDENTIALS_DIRECTORY": str(credentials)}


# -- the shipped configurations --------------------------------------------------------------


def test_local_config_needs_no_environment() -> None:
    # Given the embedded default and an empty environment
    # When it is loaded
    config = load_config(REPO / "config/local.yaml", env={})
    # Then it has only HTTP push queues, SQLite under ./var, and one queue per format
    assert {queue.source for queue in config.queues} == {"http"}
    assert config.sink.url == "sqlite:///var/events.db"
    assert config.http.listen.startswith("127.0.0.1:")
    assert len({queue.format for queue in config.queues}) == 8


def test_example_config_covers_every_source_and_format(example_env: dict[str, str]) -> None:
    # Given the example and its environment variables and systemd credential
    # When it is loaded
    config = load_config(REPO / "config/example.yaml", env=example_env)
    # Then every source, format, auth mode and forwarder appears, secrets resolved
    assert {queue.source for queue in config.queues} == {"mns", "rocketmq", "http"}
    assert len({queue.format for queue in config.queues}) == 8
    assert {forward.kind for forward in config.sink.forward} == {"webhook", "python", "jsonl"}
    rocketmq = config.queue("outbound-bot").rocketmq
    assert rocketmq is not None
    assert rocketmq.credentials is not None
    assert rocketmq.credentials.password.get_secret_value() == RMQ_PASSWORD


def test_conf_d_example_equals_the_single_file_example(example_env: dict[str, str]) -> None:
    # Given the same configuration in both layouts
    # When both are loaded
    single = load_config(REPO / "config/example.yaml", env=example_env)
    conf_d = load_config(REPO / "config/conf.d", env=example_env)
    # Then they are the same configuration, queues in file-name order
    assert conf_d == single
    assert conf_d.secrets == single.secrets


# -- references ------------------------------------------------------------------------------


def test_environment_references_resolve_inside_text(tmp_path: Path) -> None:
    # Given references alone and inside longer text, and an escaped one
    path = write(
        tmp_path / "c.yaml",
        MNS_QUEUE.replace("endpoint: http://127.0.0.1:9000", "endpoint: http://${HOST}:9000")
        + "sink:\n  forward:\n    - jsonl:\n        path: /tmp/$${NOT_A_REF}/x.jsonl\n",
    )
    # When it is loaded
    config = load_config(path, env={"HOST": "127.0.0.2", "KEY_ID": "id", "KEY_SECRET": "sec"})
    # Then each reference took its variable's value and $${ stayed a literal ${
    mns = config.queues[0].mns
    assert mns is not None
    assert mns.endpoint == "http://127.0.0.2:9000"
    assert mns.auth.access_key_id == "id"
    jsonl = config.sink.forward[0].jsonl
    assert jsonl is not None
    assert jsonl.path == "/tmp/${NOT_A_REF}/x.jsonl"


def test_resolved_values_are_not_expanded_again(tmp_path: Path) -> None:
    # Given a variable whose value itself looks like a reference
    path = write(tmp_path / "c.yaml", MNS_QUEUE)
    # When it is loaded
    config = load_config(path, env={"KEY_ID": "${OTHER}", "KEY_SECRET": "s"})
    # Then the value is taken as it is
    assert config.queues[0].mns is not None
    assert config.queues[0].mns.auth.access_key_id == "${OTHER}"


def test_file_references_read_files_and_strip_one_newline(tmp_path: Path) -> None:
    # Given secrets in files: absolute, relative to the config, and under $CREDENTIALS_DIRECTORY
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "secret").write_text("two-newlines\n\n", encoding="utf-8")
    (tmp_path / "id.txt").write_text("key-id\n", encoding="utf-8")
    text = MNS_QUEUE.replace("${KEY_ID}", "${file:id.txt}").replace(
        "${KEY_SECRET}", "${file:$CREDENTIALS_DIRECTORY/secret}"
    )
    path = write(tmp_path / "c.yaml", text)
    # When it is loaded
    config = load_config(path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    # Then each file's content is used, less exactly one trailing newline
    auth = config.queues[0].mns.auth if config.queues[0].mns else None
    assert isinstance(auth, AlicomTokenAuth)
    assert auth.access_key_id == "key-id"
    assert auth.access_key_secret.get_secret_value() == "two-newlines\n"


def test_file_reference_with_braced_variable(tmp_path: Path) -> None:
    # Given ${file:${CREDENTIALS_DIRECTORY}/x}
    (tmp_path / "x").write_text("from-credential", encoding="utf-8")
    text = MNS_QUEUE.replace("${KEY_SECRET}", "${file:${CREDENTIALS_DIRECTORY}/x}")
    path = write(tmp_path / "c.yaml", text)
    # When it is loaded
    config = load_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path), "KEY_ID": "i"})
    # Then the braced variable is expanded in the path
    assert config.queues[0].mns is not None
    assert isinstance(config.queues[0].mns.auth, AlicomTokenAuth)
    assert config.queues[0].mns.auth.access_key_secret.get_secret_value() == "from-credential"


@pytest.mark.parametrize(
    ("value", "env", "problem"),
    [
        ("${KEY_SECRET}", {}, "environment variable KEY_SECRET is not set"),
        ("${KEY_SECRET}", {"KEY_SECRET": ""}, "environment variable KEY_SECRET is empty"),
        ("${file:/nonexistent/secret}", {}, "cannot read /nonexistent/secret: No such file"),
        (
            "${file:$CREDENTIALS_DIRECTORY/x}",
            {},
            "${file:$CREDENTIALS_DIRECTORY/x}: environment variable CREDENTIALS_DIRECTORY is not "
            "set (systemd sets it for units with LoadCredential=)",
        ),
        ("${KEY SECRET}", {}, "bad reference ${KEY SECRET}"),
        ("abc${KEY_SECRET", {}, "unclosed ${"),
    ],
    ids=["unset", "empty", "missing-file", "no-credentials-dir", "bad-name", "unclosed"],
)
def test_unresolvable_references_are_errors_at_their_key(
    tmp_path: Path, value: str, env: dict[str, str], problem: str
) -> None:
    # Given a secret whose reference cannot be resolved
    path = write(tmp_path / "c.yaml", MNS_QUEUE.replace("${KEY_SECRET}", f'"{value}"'))
    # When it is loaded
    found = problems(path, {"KEY_ID": "id", **env})
    # Then the one error names the file and the key path, never an empty value
    assert len(found) == 1
    assert found[0].startswith(f"{path}: queues[0].mns.auth.access_key_secret: {problem}")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\n", "is empty"), (b"caf\xe9", "is not UTF-8 text")],
    ids=["empty", "latin1"],
)
def test_a_referenced_file_without_text_is_an_error_at_its_key(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    # Given a secret read from a file that holds no UTF-8 text
    (tmp_path / "secret").write_bytes(content)
    path = write(tmp_path / "c.yaml", MNS_QUEUE.replace("${KEY_SECRET}", "${file:secret}"))
    # When it is loaded
    found = problems(path, {"KEY_ID": "id"})
    # Then the one error names the key path and the file
    where = f"{path}: queues[0].mns.auth.access_key_secret"
    assert found == [f"{where}: {tmp_path}/secret {problem} (line 11)"]


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_collects_secret_fields_reference_pieces_and_url_password(tmp_path: Path) -> None:
    # Given a secret glued from two references, a password in the sink URL, a plain key id
    text = MNS_QUEUE.replace("${KEY_SECRET}", "${PART1}${PART2}")
    text += "sink:\n  url: postgresql://u:${PGPASS}@127.0.0.1/db\n"
    path = write(tmp_path / "c.yaml", text)
    env = {"KEY_ID": "plain-id", "PART1": "first-half", "PART2": "second-half", "PGPASS": "pgpw"}
    # When it is loaded
    config = load_config(path, env=env)
    # Then secrets holds the whole secret, each piece and the password, but not the key id
    assert config.secrets == {"first-halfsecond-half", "first-half", "second-half", "pgpw"}


# -- YAML details ----------------------------------------------------------------------------


def test_merge_keys_share_settings_without_duplicate_errors(tmp_path: Path) -> None:
    # Given two queues sharing auth through an anchor, one overriding a merged key
    path = write(
        tmp_path / "c.yaml",
        """\
        queues:
          - name: a
            source: mns
            format: aliyun.voice_report
            mns: &mns
              endpoint: http://127.0.0.1:9000
              queue: qa
              auth: {mode: access_key, access_key_id: i, access_key_secret: s}
          - name: b
            source: mns
            format: aliyun.voice_call_report
            mns:
              <<: *mns
              queue: qb
        """,
    )
    # When it is loaded
    config = load_config(path, env={})
    # Then the second queue has the merged auth and its own queue name
    second = config.queues[1].mns
    assert second is not None
    assert second.queue == "qb"
    assert isinstance(second.auth, AccessKeyAuth)


def test_durations_and_defaults(tmp_path: Path) -> None:
    # Given a queue with a retry section in several duration spellings
    path = write(
        tmp_path / "c.yaml",
        """\
        queues:
          - name: h
            source: http
            format: moor7.event
            http: {path: /h}
            retry: {initial: 500ms, max: 2m, total: 1h}
        """,
    )
    # When it is loaded
    config = load_config(path, env={})
    # Then the durations are parsed and every omitted key has its documented default
    retry = config.queues[0].retry
    assert (retry.initial, retry.max, retry.total) == (
        timedelta(milliseconds=500),
        timedelta(minutes=2),
        timedelta(hours=1),
    )
    assert config.log.level == "info"
    assert config.log.mask_phone_numbers is True
    assert config.sink.url == "sqlite:///var/events.db"
    assert config.http.listen == "127.0.0.1:8080"
    assert config.queues[0].workers == 1
    assert config.queues[0].max_deliveries == 10


# -- errors, single file ---------------------------------------------------------------------

BASE = """\
log:
  level: info
queues:
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:9000
      queue: q
      auth: {mode: access_key, access_key_id: i, access_key_secret: s}
  - name: push
    source: http
    format: moor7.event
    http:
      path: /push
  - name: bot
    source: rocketmq
    format: aliyun.outbound_bot
    rocketmq:
      endpoints: rmq.example:8080
      topic: T
      group: G
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      queue: q\n",
            "      queue: q\n      batchsize: 3\n",
            "queues[0].mns.batchsize: unknown key; did you mean batch_size? (allowed here: "
            "endpoint, queue, auth, batch_size, wait_seconds) (line 10)",
        ),
        ("      queue: q\n", "", "queues[0].mns.queue: required key is missing (line 7)"),
        (
            "    format: moor7.event\n",
            "    format: moor7.event\n    workers: many\n",
            "queues[1].workers: wrong type: expected a whole number, got text 'many' (line 14)",
        ),
        (
            "  level: info",
            "  level: loud",
            "log.level: bad value 'loud'; allowed: debug, info, warning, error (line 2)",
        ),
        (
            "mode: access_key,",
            "mode: acess_key,",
            "queues[0].mns.auth.mode: bad value 'acess_key'; allowed: alicom_token, "
            "access_key, sts (line 10)",
        ),
        (
            "  - name: vms",
            "  - name: VMS queue",
            "queues[0].name: bad value 'VMS queue': must be 1 to 64 of a-z, 0-9, _ . -, "
            "starting with a letter or digit (line 4)",
        ),
        (
            "format: aliyun.voice_report",
            "format: aliyun.voicereport",
            "queues[0].format: unknown format 'aliyun.voicereport'; known: ",
        ),
        (
            "      queue: q\n",
            "      queue: q\n      batch_size: 17\n",
            "queues[0].mns.batch_size: bad value 17: must be at most 16 (line 10)",
        ),
        (
            "  - name: push",
            "  - name: vms",
            "queues[1].name: queue name 'vms' is already used by queues[0] (line 11)",
        ),
        (
            "      queue: q\n",
            "      queue: q\n      queue: r\n",
            "queues[0].mns.queue: duplicate key (also at line 9); YAML would keep only one "
            "(line 10)",
        ),
        (
            "    source: http",
            "    source: mns",
            "queues[1]: source mns needs a `mns:` section (line 11)",
        ),
        (
            "      path: /push",
            "      path: push",
            "queues[1].http.path: bad value 'push': must be a URL path starting with /",
        ),
        (
            "    http:\n      path: /push\n",
            "    http:\n      path: /push\n      allow_from: [10.0.0.0/33]\n",
            "queues[1].http.allow_from: not an IP address or CIDR block: '10.0.0.0/33'",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nsink:\n  url: mysql://db/x\n",
            "sink.url: must start with sqlite:/// or postgresql:// (line 4)",
        ),
        (
            "      path: /push\n",
            "      path: /push\n      auth: {token: abc}\n",
            "queues[1].http.auth.mode: required key is missing; one of: none, token, huawei_aksk",
        ),
        (
            "      queue: q\n",
            "      queue: 0123\n",
            "queues[0].mns.queue: wrong type: expected text, got a number (83) "
            '(put it in quotes: "...")',
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nhttp:\n  listen: 127.0.0.1:70000\n",
            "http.listen: port must be 1 to 65535: '127.0.0.1:70000' (line 4)",
        ),
        (
            "    format: moor7.event\n",
            "    format: moor7.event\n    retry: {initial: 1m, max: 10s}\n",
            "queues[1].retry: initial must not be longer than max (line 14)",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nlogging: {}\n",
            "logging: unknown key; did you mean log? (allowed here: log, sink, http, queues, "
            "recordings, reconcile)",
        ),
        (
            "      path: /push",
            "      path: /metrics",
            "queues[1].http.path: /metrics is the listener's own; /healthz, /readyz, /metrics "
            "are reserved (line 15)",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nsink:\n  forward:\n    - webhook:\n"
            "        url: https://u:pw@example.internal/x\n",
            "sink.forward[0].webhook.url: credentials in the URL are not supported; use secret "
            "(line 6)",
        ),
        (
            "mode: access_key, access_key_id: i, access_key_secret: s}",
            "message_type: VoiceReport, access_key_id: i, access_key_secret: s,"
            " token_endpoint: 'https://dybaseapi.aliyuncs.com/api'}",
            "queues[0].mns.auth.token_endpoint: bad value 'https://dybaseapi.aliyuncs.com/api': "
            "must be a URL http(s)://host[:port] without a path",
        ),
        (
            "rmq.example:8080",
            "rmq.example:8080;rmq2.example:99999",
            "queues[2].rocketmq.endpoints: port must be 1 to 65535: 'rmq2.example:99999'",
        ),
        (
            "      group: G\n",
            "      group: G\n      tag: 'a || b'\n",
            "queues[2].rocketmq.tag: bad value 'a || b': must be * or tags separated by || "
            "without spaces",
        ),
        (
            "      group: G\n",
            "      group: G\n      namespace: 'MQ_INST x'\n",
            "queues[2].rocketmq.namespace: bad value 'MQ_INST x': must be an instance id",
        ),
        (
            "    source: rocketmq\n",
            "    source: rocketmq\n    max_deliveries: 17\n",
            "queues[2]: max_deliveries must be at most 16 for a rocketmq queue",
        ),
        (
            "      path: /push\n",
            "      path: /push\n      auth: {mode: huawei_aksk, app_key: k, app_secret: s,"
            " max_skew: 8h}\n",
            "queues[1].http.auth.max_skew: must be 1s to 15m, not 28800s (line 16)",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nrecordings:\n  store: /var/rec\n",
            "recordings.store: must start with file:/// or s3://: '/var/rec' (line 4)",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nrecordings:\n  store: file:///r\n"
            "  allow_hosts: ['http://x.example']\n",
            "recordings.allow_hosts: not a host name, *.domain pattern or IP address: "
            "'http://x.example' (line 5)",
        ),
        (
            "log:\n  level: info\n",
            "log:\n  level: info\nrecordings:\n  store: file:///r\n"
            "  huawei_privacy: {app_key: k}\n",
            "recordings.huawei_privacy.app_secret: required key is missing (line 5)",
        ),
        (
            "      group: G\n",
            "      group: G\n      protocol: remoting\n      tls: true\n",
            "queues[2].rocketmq.tls: applies to protocol grpc only (this queue uses remoting)",
        ),
        (
            "      group: G\n",
            "      group: G\n      protocol: remoting\n      invisible_duration: 30s\n",
            "queues[2].rocketmq.invisible_duration: applies to protocol grpc only",
        ),
        (
            "rmq.example:8080",
            "http://MQ_INST_1_x.cn-hangzhou.mq.aliyuncs.com:80",
            "queues[2].rocketmq.endpoints: an http:// name server address needs protocol: remoting",
        ),
        (
            "      group: G\n",
            "      group: G\n      protocol: amqp\n",
            "queues[2].rocketmq.protocol:",
        ),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "wrong-type",
        "bad-literal",
        "bad-auth-mode",
        "bad-name",
        "unknown-format",
        "out-of-range",
        "duplicate-queue-name",
        "duplicate-yaml-key",
        "missing-source-section",
        "bad-http-path",
        "bad-cidr",
        "bad-sink-url",
        "missing-discriminator",
        "yaml-octal-number",
        "bad-port",
        "retry-order",
        "unknown-top-level-key",
        "reserved-http-path",
        "webhook-url-credentials",
        "token-endpoint-with-path",
        "rocketmq-endpoint-port",
        "rocketmq-tag-spaces",
        "rocketmq-namespace",
        "rocketmq-max-deliveries-over-broker-dlq",
        "push-skew-out-of-range",
        "recordings-store-scheme",
        "recordings-allow-hosts-not-a-host",
        "recordings-huawei-secret-missing",
        "grpc-only-tls-on-remoting",
        "grpc-only-invisible-duration-on-remoting",
        "remoting-name-server-url-on-grpc",
        "unknown-rocketmq-protocol",
    ],
)
def test_bad_configuration_names_file_and_key_path(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    # Given a valid configuration with one thing broken
    assert old in BASE
    path = write(tmp_path / "bad.yaml", BASE.replace(old, new, 1))
    # When it is loaded
    found = problems(path)
    # Then the first error is that one, at its file and exact key path
    assert found[0].startswith(f"{path}: {expected}"), found


def test_secret_values_are_never_echoed_in_errors(tmp_path: Path) -> None:
    # Given a push token that breaks the token rules, and a secret of the wrong type
    text = BASE.replace(
        "      path: /push\n", "      path: /push\n      auth: {mode: token, token: hunter2}\n"
    ).replace("access_key_secret: s}", "access_key_secret: 987654321}")
    path = write(tmp_path / "bad.yaml", text)
    # When it is loaded
    found = problems(path)
    # Then both errors are reported, and neither shows the secret
    assert found == [
        f"{path}: queues[0].mns.auth.access_key_secret: wrong type: expected text, got "
        'something else (not shown: secret) (put it in quotes: "...") (line 10)',
        f"{path}: queues[1].http.auth.token: must be 16 to 128 characters of A-Z, a-z, 0-9 "
        "and - (line 16)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queues: [\n", "node content"),
        ("a: {user: ${RMQ_USER}}\n", 'put ${...} references in quotes: "${NAME}"'),
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- 1\n", "the top level must be a mapping (log, sink, http, queues) (line 1)"),
        ("queues: []\n", "queues: no queues: add at least one (line 1)"),
        ("log: {}\n", "queues: required key is missing (line 1)"),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: but found another document"),
        ("a: &x [*x]\n", "a: nested too deeply or too large (a recursive alias?)"),
        ("1: x\nqueues: []\n", "1: keys must be text, not 1 (line 1)"),
    ],
    ids=[
        "syntax",
        "unquoted-flow-ref",
        "empty",
        "comment-only",
        "not-mapping",
        "no-queues",
        "queues-missing",
        "two-documents",
        "recursive-alias",
        "non-text-key",
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    # Given a file that is not a usable YAML mapping
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    # When it is loaded
    found = problems(path)
    # Then the error names the file and what is wrong with it
    assert found[0].startswith(f"{path}: ")
    assert expected in found[0]


def test_missing_path_and_non_utf8(tmp_path: Path) -> None:
    # Given a path that does not exist and a file that is not UTF-8
    (tmp_path / "latin1.yaml").write_bytes(b"log: {level: \xe9}\n")
    # When each is loaded
    # Then each error names the path
    assert problems(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: no such file or directory"
    ]
    assert problems(tmp_path / "latin1.yaml") == [
        f"{tmp_path / 'latin1.yaml'}: not UTF-8 text (byte 13)"
    ]


# -- errors, conf.d --------------------------------------------------------------------------


def conf_d(tmp_path: Path, main: str, queues: dict[str, str]) -> Path:
    root = tmp_path / "conf.d"
    write(root / "consumer.yaml", main)
    for name, text in queues.items():
        write(root / "queues.d" / name, text)
    return root


QUEUE_A = """\
name: a
source: http
format: moor7.event
http: {path: /a}
"""
QUEUE_B = """\
name: b
source: mns
format: aliyun.voice_report
mns:
  endpoint: http://127.0.0.1:9000
  queue: qb
  auth: {mode: access_key, access_key_id: i, access_key_secret: "${B_SECRET}"}
"""


def test_conf_d_reads_queues_in_file_name_order(tmp_path: Path) -> None:
    # Given two queue files whose names sort opposite to their queue names
    root = conf_d(tmp_path, "log: {level: debug}\n", {"20-a.yaml": QUEUE_A, "10-b.yaml": QUEUE_B})
    # When the directory is loaded
    config = load_config(root, env={"B_SECRET": "bs"})
    # Then the shared sections come from consumer.yaml and queues follow the file names
    assert isinstance(config, Config)
    assert config.log.level == "debug"
    assert [queue.name for queue in config.queues] == ["b", "a"]
    assert config.secrets == {"bs"}


@pytest.mark.parametrize(
    ("main", "queues", "env", "expected"),
    [
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-b.yaml": QUEUE_B.replace("  queue: qb\n", "")},
            {"B_SECRET": "x"},
            "queues.d/20-b.yaml: mns.queue: required key is missing (line 4)",
        ),
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-b.yaml": QUEUE_B},
            {},
            "queues.d/20-b.yaml: mns.auth.access_key_secret: environment variable B_SECRET "
            "is not set (line 7)",
        ),
        (
            "log: {level: info, colour: red}\n",
            {"10-a.yaml": QUEUE_A},
            {},
            "consumer.yaml: log.colour: unknown key (allowed here: level, format, "
            "mask_phone_numbers) (line 1)",
        ),
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-a.yaml": QUEUE_A.replace("/a", "/a2")},
            {},
            "queues.d/20-a.yaml: name: queue name 'a' is already used by ",
        ),
        (
            "log: {level: info}\nqueues: []\n",
            {"10-a.yaml": QUEUE_A},
            {},
            "consumer.yaml: queues: queues belong in queues.d/*.yaml, one file per queue (line 2)",
        ),
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-b.yaml": "- name: b\n"},
            {},
            "queues.d/20-b.yaml: a queue file holds one mapping (name, source, ...) (line 1)",
        ),
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-b.yml": QUEUE_B},
            {},
            "queues.d/20-b.yml: queue files must end in .yaml",
        ),
        (
            "log: {level: info}\n",
            {"10-a.yaml": QUEUE_A, "20-b.yaml": ""},
            {},
            "queues.d/20-b.yaml: the file is empty",
        ),
    ],
    ids=[
        "missing-key",
        "unset-variable",
        "unknown-key-in-main",
        "duplicate-name-across-files",
        "queues-in-main",
        "queue-file-not-mapping",
        "yml-suffix",
        "empty-queue-file",
    ],
)
def test_conf_d_errors_name_the_queue_file_and_its_key_path(
    tmp_path: Path, main: str, queues: dict[str, str], env: dict[str, str], expected: str
) -> None:
    # Given a conf.d directory with one thing broken
    root = conf_d(tmp_path, main, queues)
    # When it is loaded
    found = problems(root, env)
    # Then the error names the file it is in and the key path inside that file
    assert found[0].startswith(f"{root}/{expected}"), found


def test_conf_d_queues_in_main_file_does_not_hide_queue_file_errors(tmp_path: Path) -> None:
    # Given a stray queues: in consumer.yaml and a broken queue file
    root = conf_d(
        tmp_path,
        "queues: []\n",
        {"10-a.yaml": QUEUE_A.replace("format: moor7.event", "format: moor8.event")},
    )
    # When it is loaded
    found = problems(root)
    # Then both are reported, each in its own file
    assert found[0] == (
        f"{root}/consumer.yaml: queues: queues belong in queues.d/*.yaml, one file per queue "
        "(line 1)"
    )
    assert found[1].startswith(f"{root}/queues.d/10-a.yaml: format: unknown format 'moor8.event'")


def test_conf_d_duplicate_name_names_the_other_file(tmp_path: Path) -> None:
    # Given two queue files with the same queue name
    root = conf_d(
        tmp_path,
        "log: {level: info}\n",
        {"10-a.yaml": QUEUE_A, "20-a.yaml": QUEUE_A.replace("/a", "/a2")},
    )
    # When it is loaded
    found = problems(root)
    # Then the error at the second file points at the first
    assert found == [
        f"{root}/queues.d/20-a.yaml: name: queue name 'a' is already used by "
        f"{root}/queues.d/10-a.yaml (line 1)"
    ]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("no-main", "consumer.yaml: missing: a conf.d directory needs consumer.yaml"),
        ("no-queues-dir", "queues.d: missing: a conf.d directory needs this directory"),
        ("empty-queues-dir", "queues.d: no queue files: add at least one NAME.yaml"),
    ],
)
def test_conf_d_layout_problems(tmp_path: Path, layout: str, expected: str) -> None:
    # Given a directory that is not a complete conf.d layout
    root = tmp_path / "conf.d"
    root.mkdir()
    if layout != "no-main":
        (root / "consumer.yaml").write_text("log: {level: info}\n", encoding="utf-8")
    if layout == "empty-queues-dir":
        (root / "queues.d").mkdir()
    # When it is loaded
    found = problems(root)
    # Then the error names the missing piece
    assert found == [f"{root}/{expected}"]


def test_format_key_path() -> None:
    assert format_key_path(("queues", 1, "mns", "queue")) == "queues[1].mns.queue"
    assert format_key_path(("sink", "forward", 0, "webhook")) == "sink.forward[0].webhook"
    assert format_key_path(()) == ""
