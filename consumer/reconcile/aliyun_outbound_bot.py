"""Aliyun Outbound Bot: `DescribeJob` (OutboundBot 2019-12-26) through the official SDK.

The job and instance ids come from the call's own events (`refs.job_id`, `refs.instance_id`);
of the job's tasks, the one whose `CallId` is the call's is its record. A task still
`Executing` (or none with that call id) is "not there yet". The job is rewritten in the shape
of a `JobComplete` push holding only that task and normalized by the `aliyun.outbound_bot`
format, so the event equals (same `event_id`) the task record a late JobComplete push gives.
"""

from __future__ import annotations

import json
from typing import Any

from consumer.config.model import AliyunOutboundBotQuery
from consumer.errors import InvalidMessage
from consumer.extras import require
from consumer.formats import aliyun_outbound_bot
from consumer.model import Kind, Normalized, Provider
from consumer.reconcile.query import QueryError, classify, limiter_for, sdk_client, tagged
from consumer.sinks.reconcile import OwedCall

# DescribeJob's documented limit is far higher; this keeps one daemon polite.
_QPS = 20.0


def job_complete_message(job: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """A DescribeJob `Job` (PascalCase) and one of its `Tasks` as a JobComplete push record."""
    contacts = job.get("Contacts") or []
    contact = task.get("Contact") or (contacts[0] if contacts else {})
    end = task.get("EndTime") or task.get("ActualTime") or 0
    return {
        "eventType": "JobComplete",
        "eventTime": end or 1,
        "instanceId": job.get("InstanceId"),
        "groupId": job.get("JobGroupId"),
        "id": job.get("JobId"),
        "status": job.get("Status"),
        "failureReason": job.get("FailureReason"),
        "contacts": [
            {
                "id": contact.get("ContactId"),
                "honorific": contact.get("Honorific"),
                "name": contact.get("ContactName"),
                "phoneNumber": contact.get("PhoneNumber"),
                "referenceId": contact.get("ReferenceId") or job.get("ReferenceId"),
            }
        ]
        if contact
        else [],
        "tasks": [
            {
                "id": task.get("TaskId"),
                "callId": task.get("CallId"),
                "planedTime": task.get("PlanedTime"),
                "actualTime": task.get("ActualTime"),
                "endTime": task.get("EndTime"),
                "callingNumber": task.get("CallingNumber"),
                "calledNumber": task.get("CalledNumber"),
                "status": task.get("Status"),
            }
        ],
    }


class OutboundBotJob:
    provider = Provider.ALIYUN_OUTBOUND_BOT

    def __init__(
        self,
        config: AliyunOutboundBotQuery,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        require("reconcile", "reconcile.aliyun_outbound_bot")
        from alibabacloud_outboundbot20191226.client import Client  # noqa: PLC0415

        self.config = config
        self._client, self._runtime = sdk_client(
            Client, config, config.url, config.region, (connect_timeout, read_timeout)
        )
        self._limiter = limiter_for("outboundbot", config.access_key_id, _QPS)

    def fetch(self, call: OwedCall) -> Normalized | None:
        instance_id, job_id = call.refs.get("instance_id"), call.refs.get("job_id")
        if not instance_id or not job_id:
            raise QueryError(
                "error", "the call's events name no instance_id and job_id to ask", retry=False
            )
        job = self._describe(instance_id, job_id)
        if job is None:
            return None
        task = next(
            (t for t in job.get("Tasks") or [] if str(t.get("CallId") or "") == call.call_id),
            None,
        )
        if task is None or str(task.get("Status") or "Executing").casefold() == "executing":
            return None
        message = job_complete_message({"InstanceId": instance_id, **job}, task)
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        try:
            events = aliyun_outbound_bot.parse(body)
        except InvalidMessage as exc:
            raise QueryError("error", f"the job is not usable: {exc}", retry=False) from None
        for item in events:
            if item.event.kind is Kind.CALL_RECORD and item.event.call_id == call.call_id:
                event = item.event
                duration = task.get("Duration")
                if event.duration_seconds is None and isinstance(duration, int):
                    event = event.model_copy(update={"duration_seconds": duration})
                return Normalized(tagged(event), {"DescribeJob": {**job, "Tasks": [task]}})
        return None

    def _describe(self, instance_id: str, job_id: str) -> dict[str, Any] | None:
        from alibabacloud_outboundbot20191226 import models  # noqa: PLC0415

        request = models.DescribeJobRequest(instance_id=instance_id, job_id=job_id)
        self._limiter.wait()
        try:
            response = self._client.describe_job_with_options(request, self._runtime)
        except Exception as exc:
            error = classify(exc)
            code = str(getattr(exc, "code", "") or "")
            if error.result == "error" and ("NotExist" in code or "NotFound" in code):
                return None  # the job is unknown (yet): not found, not a failure
            raise error from exc
        body = response.body.to_map()
        if body.get("Success") is False or body.get("Code") not in (None, "OK"):
            code = str(body.get("Code") or "")
            raise classify(QueryError("error", f"{code}: {body.get('Message')}", retry=False))
        job = body.get("Job")
        return job if isinstance(job, dict) and job else None


__all__ = ["OutboundBotJob", "job_complete_message"]
