"""The `reconcile:` section: defaults, key paths of errors, secrets masked by `consumer check`."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config.load import ConfigErrors, load_config
from consumer.config.model import VMS_PROD_IDS

QUEUE = """\
queues:
  - name: huawei
    source: http
    format: huawei.voice_call
    http: {path: /push/huawei}
"""


def write(tmp_path: Path, reconcile: str) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(QUEUE + textwrap.dedent(reconcile), encoding="utf-8")
    return path


def test_defaults_are_the_documented_deadlines(tmp_path: Path) -> None:
    # Given a reconcile section with only the VMS credentials
    path = write(
        tmp_path,
        """\
        reconcile:
          aliyun_vms: {access_key_id: LTAIkey, access_key_secret: "${SECRET}"}
        """,
    )
    # When loaded
    settings = load_config(path, env={"SECRET": "s3cret"}).reconcile
    # Then every default is the documented one
    assert settings is not None
    assert (settings.every, settings.give_up_after) == (timedelta(minutes=1), timedelta(hours=72))
    deadlines = settings.deadlines
    assert (deadlines.aliyun_vms, deadlines.aliyun_outbound_bot) == (
        timedelta(minutes=15),
        timedelta(minutes=30),
    )
    assert (deadlines.huawei_voice, deadlines.huawei_privacy, deadlines.moor7) == (
        timedelta(hours=7),
        timedelta(hours=11),
        timedelta(minutes=30),
    )
    assert settings.aliyun_vms is not None
    assert settings.aliyun_vms.endpoint == "https://dyvmsapi.aliyuncs.com"
    assert settings.aliyun_vms.prod_ids == list(VMS_PROD_IDS)
    assert settings.aliyun_outbound_bot is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("reconcile: {every: often}\n", "reconcile.every: not a duration"),
        ("reconcile: {deadlines: {huawei: 1h}}\n", "reconcile.deadlines.huawei: unknown key"),
        (
            "reconcile: {give_up_after: 2h}\n",
            "reconcile: give_up_after (2:00:00) must be longer than every deadline",
        ),
        (
            "reconcile: {aliyun_vms: {access_key_id: k, access_key_secret: s, prod_ids: []}}\n",
            "reconcile.aliyun_vms.prod_ids:",
        ),
        (
            "reconcile: {aliyun_outbound_bot: {access_key_id: k}}\n",
            "reconcile.aliyun_outbound_bot.access_key_secret:",
        ),
        (
            "reconcile: {aliyun_vms: {access_key_id: k, access_key_secret: s,"
            " endpoint: ftp://x}}\n",
            "reconcile.aliyun_vms.endpoint:",
        ),
    ],
)
def test_errors_name_their_key_path(tmp_path: Path, section: str, expected: str) -> None:
    # Given a wrong reconcile section, When loaded, Then the error names the key path
    path = write(tmp_path, section)
    with pytest.raises(ConfigErrors) as caught:
        load_config(path, env={})
    found = [f"{error.location}: {error.problem}" for error in caught.value.errors]
    assert any(line.startswith(f"{path}: {expected}") for line in found), found


def test_check_prints_the_section_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given both query APIs configured with secrets
    path = write(
        tmp_path,
        """\
        reconcile:
          every: 30s
          deadlines: {aliyun_vms: 5m}
          aliyun_vms: {access_key_id: LTAIvms, access_key_secret: vms-secret-1}
          aliyun_outbound_bot:
            access_key_id: LTAIbot
            access_key_secret: bot-secret-1
            region: cn-hangzhou
        """,
    )
    # When checked
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    # Then the resolved section is printed, secrets masked
    assert "vms-secret-1" not in out
    assert "bot-secret-1" not in out
    assert "access_key_secret: '***'" in out
    assert "every: 30s" in out
    assert "aliyun_vms: 300s" in out
    assert "access_key_id: LTAIbot" in out


def test_check_leaves_out_an_absent_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(write(tmp_path, ""))]) == 0
    assert "reconcile" not in capsys.readouterr().out


def test_a_conf_d_layout_holds_the_section_in_its_shared_file(tmp_path: Path) -> None:
    # Given a conf.d directory whose consumer.yaml has the reconcile section
    (tmp_path / "queues.d").mkdir()
    (tmp_path / "queues.d" / "huawei.yaml").write_text(
        "name: huawei\nsource: http\nformat: huawei.voice_call\nhttp: {path: /h}\n",
        encoding="utf-8",
    )
    (tmp_path / "consumer.yaml").write_text(
        "reconcile: {every: 2m, deadlines: {moor7: 1h}}\n", encoding="utf-8"
    )
    # When loaded, Then the section is read with its defaults filled in
    settings = load_config(tmp_path, env={}).reconcile
    assert settings is not None
    assert (settings.every, settings.deadlines.moor7) == (timedelta(minutes=2), timedelta(hours=1))
    assert settings.deadlines.aliyun_vms == timedelta(minutes=15)
    # And an error in it names the shared file and the key path
    (tmp_path / "consumer.yaml").write_text("reconcile: {every: soon}\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_config(tmp_path, env={})
    [error] = caught.value.errors
    assert error.location.startswith(f"{tmp_path / 'consumer.yaml'}: reconcile.every")
