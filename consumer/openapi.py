"""Settings for Aliyun's tea-openapi SDK clients (Dybaseapi, Dyvmsapi, OutboundBot).

Every client here is built the same way: credentials and the endpoint in its `Config`, the
time-outs in milliseconds, and no SDK-side retries (`autoretry=False`: retries are ours, with
tenacity, where a retry may help). The SDKs' classes differ between generations
(`alibabacloud_tea_util` or `darabonba` `RuntimeOptions`), so these are keyword arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def sdk_endpoint(url: str) -> tuple[str, str]:
    """`https://host[:port]` → (protocol, host[:port]), as tea-openapi's Config wants them."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def client_options(
    access_key_id: str,
    access_key_secret: str,
    url: str,
    *,
    region: str,
    connect_timeout: float,
    read_timeout: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of the client's `Config` and of its `RuntimeOptions`."""
    protocol, endpoint = sdk_endpoint(url)
    timeouts = {
        "connect_timeout": int(connect_timeout * 1000),
        "read_timeout": int(read_timeout * 1000),
    }
    config = {
        "access_key_id": access_key_id,
        "access_key_secret": access_key_secret,
        "endpoint": endpoint,
        "protocol": protocol,
        "region_id": region,
        **timeouts,
    }
    return config, {"autoretry": False, **timeouts}


__all__ = ["client_options", "sdk_endpoint"]
