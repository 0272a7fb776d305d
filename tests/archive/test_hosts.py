"""`allow_hosts`: exact hosts and `*.domain` patterns, nothing looser."""

from __future__ import annotations

import pytest

from consumer.archive.hosts import HostPolicy

POLICY = HostPolicy(["*.aliyuncs.com", "files.example.com", "127.0.0.1"])


@pytest.mark.parametrize(
    "url",
    [
        "https://vms.cn-hangzhou.aliyuncs.com/a.mp3",
        "https://a.b.aliyuncs.com/a.mp3?x=1",
        "http://FILES.example.com:8080/a",
        "http://127.0.0.1:9/a",
    ],
)
def test_allowed(url: str) -> None:
    # Given a link on an allowed host, Then it may be fetched
    assert POLICY.refusal(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://aliyuncs.com/a", "not in recordings.allow_hosts"),  # the domain itself
        ("https://evilaliyuncs.com/a", "not in recordings.allow_hosts"),
        ("https://aliyuncs.com.evil.example/a", "not in recordings.allow_hosts"),
        ("http://169.254.169.254/latest/meta-data", "not in recordings.allow_hosts"),
        ("http://localhost/a", "not in recordings.allow_hosts"),
        ("ftp://files.example.com/a", "scheme 'ftp'"),
        ("https://u:p@files.example.com/a", "credentials in the URL"),
        ("http:///nohost", "no host"),
    ],
)
def test_refused(url: str, why: str) -> None:
    # Given a link elsewhere, Then it is refused, saying why
    refusal = POLICY.refusal(url)
    assert refusal is not None
    assert why in refusal
