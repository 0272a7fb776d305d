"""`consumer check -c PATH`: validate a configuration without connecting anywhere."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import yaml

from consumer.cli.common import EXIT_OK, add_command, plural
from consumer.config.load import load_config
from consumer.config.model import Config
from consumer.config.secrets import mask_secrets
from consumer.logs import effective_format

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers


def add_check(subparsers: Subparsers) -> None:
    add_command(
        subparsers,
        "check",
        "validate a configuration without connecting anywhere",
        "Validate PATH and print every queue's resolved settings, secrets masked.",
        check,
    )


def check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"# {args.config}: valid, {plural(len(config.queues), 'queue')}")
    print(yaml.safe_dump(masked(config), sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


def masked(config: Config) -> dict[str, Any]:
    """The resolved configuration as plain data, every secret shown as `***`."""
    data: dict[str, Any] = mask_secrets(config.model_dump(mode="python"))  # durations: "1s"
    data["sink"]["url"] = config.sink.redacted_url
    data["log"]["format"] = effective_format(config.log)  # not null: what `run` here would use
    data["sink"]["forward"] = [
        {kind: settings for kind, settings in entry.items() if settings is not None}
        for entry in data["sink"]["forward"]
    ]
    if data.get("recordings") is None:
        data.pop("recordings", None)  # an optional section left out stays out
    if data.get("reconcile") is None:
        data.pop("reconcile", None)  # optional section: shown only when configured
    for queue in data["queues"]:
        for section in [key for key in ("mns", "rocketmq", "http") if key in queue]:
            if queue[section] is None:
                del queue[section]  # only the queue's own source section is meaningful
    return data


__all__ = ["add_check", "check", "masked"]
