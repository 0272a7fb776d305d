"""Where the Remoting tests get librocketmq and the 2.0.0 binding: never skipped.

`make test` exports CONSUMER_LIBROCKETMQ (scripts/build-librocketmq.sh prints it). Without it,
the build script's cache for the vendored source (or its only entry) is used if it is there;
otherwise the tests fail and say how to build it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARBALL = "rocketmq-client-cpp-7c8b7f8.tar.gz"
CACHE = Path(os.environ.get("CONSUMER_LIBROCKETMQ_CACHE", "/var/cache/consumer/librocketmq"))


def librocketmq() -> str:
    """The path of librocketmq.so, exported as CONSUMER_LIBROCKETMQ for the sources."""
    path = os.environ.get("CONSUMER_LIBROCKETMQ", "")
    if not path:
        tarball = ROOT.parent / "shared" / "vendor" / TARBALL
        if tarball.is_file():
            cached = CACHE / hashlib.sha256(tarball.read_bytes()).hexdigest() / "librocketmq.so"
            path = str(cached) if cached.is_file() else ""
        else:  # a machine that built one source only
            built = sorted(CACHE.glob("*/librocketmq.so"))
            path = str(built[0]) if len(built) == 1 else ""
    if not path or not Path(path).is_file():
        pytest.fail(
            "librocketmq is missing: run `scripts/build-librocketmq.sh "
            f"../shared/vendor/{TARBALL}` and export CONSUMER_LIBROCKETMQ=<the path it prints> "
            "(make test does both)"
        )
    os.environ["CONSUMER_LIBROCKETMQ"] = path
    binding = Path(os.environ.get("CONSUMER_ROCKETMQ4_PATH") or Path(sys.prefix) / "rocketmq4")
    if not (binding / "rocketmq" / "client.py").is_file():
        pytest.fail(f"rocketmq-client-python 2.0.0 is missing from {binding}: run `make rocketmq4`")
    return path
