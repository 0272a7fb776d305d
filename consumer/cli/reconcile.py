"""`consumer calls overdue` and `consumer reconcile` (docs/reconcile.md)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from consumer.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_actions,
    add_command,
    add_json_argument,
    migrated_sink,
    plural,
    print_json_lines,
    text_table,
)
from consumer.config.load import load_config
from consumer.config.model import ReconcileConfig
from consumer.logs import configure_from
from consumer.model import Provider
from consumer.reconcile.rules import State
from consumer.reconcile.runner import LEASE, Answer, Reconciler, build_queries
from consumer.sinks.reconcile import CallStates, OwedCall

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers


def add_calls(subparsers: Subparsers) -> None:
    actions = add_actions(subparsers, "calls", "inspect calls", "Calls of the configured sink.")
    overdue = add_command(
        actions,
        "overdue",
        "list the calls still owed a final record past their deadline",
        "Calls without their final record past their provider's deadline "
        "(reconcile.deadlines), oldest last event first.",
        overdue_command,
    )
    add_json_argument(overdue)


def add_reconcile(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "reconcile",
        "ask the providers' query APIs now for the overdue calls' final records",
        "Ask the query API of each overdue call's provider (or of the named calls) "
        "for its final record and store what it returns.",
        reconcile_command,
    )
    parser.add_argument(
        "--call",
        dest="calls",
        action="append",
        default=[],
        metavar="ID",
        help="only this call id (repeatable); default: every overdue call",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be stored; store nothing"
    )


def owed_json(call: OwedCall, now: datetime) -> dict[str, Any]:
    return {
        "provider": call.provider,
        "call_id": call.call_id,
        "state": call.state,
        "last_event_kind": call.last_event_kind,
        "last_event_at": call.last_event_at.isoformat().replace("+00:00", "Z"),
        "started_at": call.started_at.isoformat().replace("+00:00", "Z")
        if call.started_at
        else None,
        "silent_seconds": int((now - call.last_event_at).total_seconds()),
        "refs": call.refs,
    }


def overdue_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = config.reconcile or ReconcileConfig()
    now = datetime.now(UTC)
    cutoffs = {p.value: now - getattr(settings.deadlines, p.value) for p in Provider}
    with migrated_sink(args.config, config.sink) as sink:
        calls = CallStates(sink).past_deadline(cutoffs)
    if args.json:
        print_json_lines(owed_json(call, now) for call in calls)
        return EXIT_OK
    header = ("PROVIDER", "CALL_ID", "STATE", "LAST_EVENT", "LAST_EVENT_AT", "SILENT")
    rows = [
        (
            call.provider,
            call.call_id[:64],
            call.state,
            call.last_event_kind,
            call.last_event_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            _age(now - call.last_event_at),
        )
        for call in calls
    ]
    print(text_table(header, rows))
    print(f"{plural(len(rows), 'call')} owed a final record")
    return EXIT_OK


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def reconcile_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_from(config)
    settings = config.reconcile or ReconcileConfig()
    with migrated_sink(args.config, config.sink) as sink:
        reconciler = Reconciler(settings, sink, build_queries(settings))
        return _reconcile(reconciler, args.calls, dry_run=args.dry_run)


def _reconcile(reconciler: Reconciler, call_ids: list[str], *, dry_run: bool) -> int:
    states = reconciler.states
    if not states.claim(LEASE, reconciler.owner, time.time(), reconciler.lease_seconds):
        print("a reconciler is running (it holds the lease): try again later", file=sys.stderr)
        return EXIT_FAILED
    failed = False
    try:
        if call_ids:
            calls = states.calls(call_ids)
            for missing in sorted(set(call_ids) - {call.call_id for call in calls}):
                print(f"{missing}: no such call", file=sys.stderr)
                failed = True
        else:
            calls = states.overdue()
        for call in calls:
            label = f"{call.provider} {call.call_id}"
            if call.state == State.FINAL:
                print(f"{label}: already final, not asked")
                continue
            query = reconciler.queries.get(Provider(call.provider))
            if query is None:
                print(f"{label}: no query API configured for {call.provider}, not asked")
                continue
            answer = reconciler.ask(query, call)
            failed |= _report(reconciler, answer, label, dry_run=dry_run)
    finally:
        states.release(LEASE, reconciler.owner, time.time())
    return EXIT_FAILED if failed else EXIT_OK


def _report(reconciler: Reconciler, answer: Answer, label: str, *, dry_run: bool) -> bool:
    """Print (and store) one answer; whether it is a failure."""
    if answer.record is None:
        if answer.result == "not_found":
            print(f"{label}: not there yet")
            return False
        print(f"{label}: query failed ({answer.result}): {answer.reason}", file=sys.stderr)
        return True
    event = answer.record.event
    if dry_run:
        print(f"{label}: would store {event.model_dump_json()}")
        return False
    reconciler.store(answer.record)
    print(f"{label}: stored the final record ({event.outcome or 'no outcome'})")
    return False


__all__ = ["add_calls", "add_reconcile", "overdue_command", "reconcile_command"]
