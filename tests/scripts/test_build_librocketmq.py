"""scripts/build-librocketmq.sh: the cache keyed by the source tarball's sha256, and its usage
errors. (The build itself is what `make test` runs; it takes minutes, once per machine.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-librocketmq.sh"


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={"PATH": "/usr/bin:/bin", "CONSUMER_LIBROCKETMQ_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_built_source_is_not_built_again(tmp_path: Path) -> None:
    # Given a source tarball whose library the cache already holds
    tarball = tmp_path / "rocketmq-client-cpp.tar.gz"
    tarball.write_bytes(b"any source")
    built = tmp_path / "cache" / hashlib.sha256(b"any source").hexdigest() / "librocketmq.so"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"\x7fELF built before")
    # When the script runs on it
    done = run(str(tarball), cache=tmp_path / "cache")
    # Then it prints the cached library's path, and only that, without building
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{built}\n"
    assert built.read_bytes() == b"\x7fELF built before"


@pytest.mark.parametrize("args", [(), ("/nonexistent.tar.gz",), ("a", "b")])
def test_without_one_existing_tarball_it_says_how_to_call_it(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    # When the script gets no tarball, a missing one, or two
    done = run(*args, cache=tmp_path / "cache")
    # Then it exits 64 with its usage, and creates nothing
    assert done.returncode == 64
    assert "usage:" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "cache").exists()


def test_the_patches_apply_to_the_vendored_source(tmp_path: Path) -> None:
    # Given the upstream source the project builds from (LIBROCKETMQ_SRC, as `make test` sets
    # it, or next to the repository, as in CI)
    default = SCRIPT.parents[2] / "shared" / "vendor" / "rocketmq-client-cpp-7c8b7f8.tar.gz"
    tarball = Path(os.environ.get("LIBROCKETMQ_SRC") or default)
    if not tarball.is_file():
        pytest.fail(f"no librocketmq source at {tarball}: set LIBROCKETMQ_SRC")
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(tmp_path)], check=True)
    (top,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    # When every patch is applied in order
    for patch in sorted((SCRIPT.parent / "librocketmq").glob("*.patch")):
        done = subprocess.run(
            ["patch", "-d", str(top), "-p1", "--forward", "--dry-run", "-i", str(patch)],
            capture_output=True,
            text=True,
            check=False,
        )
        # Then it applies cleanly
        assert done.returncode == 0, done.stdout + done.stderr
