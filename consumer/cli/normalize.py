"""`consumer normalize --format FORMAT [FILE]`: one raw body's normalized events, as JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.cli.common import EXIT_FAILED, EXIT_OK, add_command
from consumer.errors import InvalidMessage
from consumer.formats import FORMAT_NAMES, get_format

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers


def add_normalize(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "normalize",
        "print the normalized events of one raw message body",
        "Read one raw message body (FILE, or stdin) and print each normalized "
        "event as one JSON object per line.",
        normalize,
        config=False,
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMAT_NAMES,
        metavar="FORMAT",
        help=f"one of: {', '.join(FORMAT_NAMES)}",
    )
    parser.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdin")


def normalize(args: argparse.Namespace) -> int:
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    try:
        fmt = get_format(args.format)
    except ImportError as exc:
        print(f"format {args.format} is not available: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        normalized = fmt.parse(body)
    except InvalidMessage as exc:
        source = "stdin" if args.file == "-" else args.file
        print(f"{source}: not a valid {args.format} message: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for item in normalized:
        print(item.event.model_dump_json())
    return EXIT_OK


__all__ = ["add_normalize", "normalize"]
