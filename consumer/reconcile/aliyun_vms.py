"""Aliyun VMS: `QueryCallDetailByCallId` (Dyvmsapi 2017-05-25) through the official SDK.

The service files a call under its product (`ProdId`) and looks in the 24 hours after
`QueryDate` (epoch ms): the query goes out with midnight Asia/Shanghai of the call's earliest
known time, once per configured product id in order, until one answers with `Data`. An answer
without `Data` means "not there yet", not an error. The detail's fields are those of a
VoiceReport under other names; they are renamed and normalized by the `aliyun.voice_report`
format, so the event equals (same `event_id`) the VoiceReport push of the same record.
"""

from __future__ import annotations

import json
from typing import Any

from consumer.config.model import AliyunVmsQuery
from consumer.errors import InvalidMessage
from consumer.extras import require
from consumer.formats import aliyun_voice_report
from consumer.model import Normalized, Provider
from consumer.reconcile.query import (
    QueryError,
    classify,
    classify_code,
    limiter_for,
    sdk_client,
    tagged,
)
from consumer.reconcile.rules import epoch_millis, shanghai_day_start
from consumer.sinks.reconcile import OwedCall

# QueryCallDetailByCallId's Data keys → VoiceReport's.
_RENAMED = {
    "caller": "caller",
    "callee": "callee",
    "gmtCreate": "originate_time",
    "endDate": "end_time",
    "state": "status_code",
    "stateDesc": "status_msg",
    "duration": "duration",
    "hangupDirection": "hangup_direction",
    "outId": "out_id",
}


def voice_report_record(call_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The VoiceReport record a call detail stands for; unnamed keys are kept as they are."""
    record: dict[str, Any] = {"call_id": call_id}
    for key, value in data.items():
        if key in _RENAMED:
            record[_RENAMED[key]] = value
        elif key not in ("startDate", "callId"):
            record[key] = value
    ring = data.get("bRingTime") or data.get("aRingTime")
    if ring:
        record["ring_time"] = ring
    # startDate is the answer time of a connected call (duration > 0), VoiceReport's start_time.
    if data.get("startDate") and str(data.get("duration") or "0") not in ("0", ""):
        record["start_time"] = data["startDate"]
    return record


class VmsCallDetail:
    provider = Provider.ALIYUN_VMS

    def __init__(
        self, config: AliyunVmsQuery, *, connect_timeout: float = 5.0, read_timeout: float = 10.0
    ) -> None:
        # The SDK (with its credentials stack) loads only where a query is configured.
        require("reconcile", "reconcile.aliyun_vms")
        from alibabacloud_dyvmsapi20170525.client import Client  # noqa: PLC0415

        self.config = config
        self._client, self._runtime = sdk_client(
            Client, config, config.endpoint, "cn-hangzhou", (connect_timeout, read_timeout)
        )
        self._limiter = limiter_for("dyvmsapi", config.access_key_id, config.max_qps)

    def fetch(self, call: OwedCall) -> Normalized | None:
        query_date = epoch_millis(shanghai_day_start(call.earliest))
        for prod_id in self.config.prod_ids:
            data = self._ask(call.call_id, prod_id, query_date)
            if data is not None:
                return self._normalize(call, prod_id, data)
        return None

    def _ask(self, call_id: str, prod_id: int, query_date: int) -> dict[str, Any] | None:
        from alibabacloud_dyvmsapi20170525 import models  # noqa: PLC0415

        request = models.QueryCallDetailByCallIdRequest(
            call_id=call_id, prod_id=prod_id, query_date=query_date
        )
        self._limiter.wait()
        try:
            response = self._client.query_call_detail_by_call_id_with_options(
                request, self._runtime
            )
        except Exception as exc:  # the SDK's exception classes differ between releases
            raise classify(exc) from exc
        body = response.body
        code = str(getattr(body, "code", "") or "")
        if code != "OK":
            message = str(getattr(body, "message", "") or "")[:300]
            raise classify_code(code, response.status_code, f"{code}: {message}")
        raw = getattr(body, "data", None)
        if raw in (None, "", "{}", "null"):
            return None
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            reason = f"Data is not JSON: {str(raw)[:100]!r}"
            raise QueryError("error", reason, retry=False) from None
        if not isinstance(data, dict):
            raise QueryError("error", f"Data is not an object: {str(raw)[:100]!r}", retry=False)
        return data or None

    def _normalize(self, call: OwedCall, prod_id: int, data: dict[str, Any]) -> Normalized:
        record = voice_report_record(call.call_id, data)
        try:
            event = aliyun_voice_report.normalize(record)
        except InvalidMessage as exc:
            reason = f"the call detail is not usable: {exc}"
            raise QueryError("error", reason, retry=False) from None
        return Normalized(tagged(event, prod_id=prod_id), {"QueryCallDetailByCallId": data})


__all__ = ["VmsCallDetail", "voice_report_record"]
