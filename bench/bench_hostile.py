"""Hostile bodies: the CPU one message may cost, and the visibility keepalive meanwhile.

    python -m bench.bench_hostile [--examples 60] [--rounds 5] [--slow 1.0]

1. Fuzz. For every format, hypothesis builds bodies up to the 4 MiB cap (`MAX_BODY_BYTES`) from
   runs of repeated tokens (newlines, spaces, base64 letters, brackets, digits, escapes, 小时,
   form separators ...), sent raw, as a field of a real sample, base64-encoded (MNS) or as a
   form field (7moor), and steers towards the costliest (`hypothesis.target`). The cost of a
   body is its CPU ms divided by its size in MiB, counting at least 1 MiB (a body below 1 MiB
   may cost 50 ms in all): target <= 50 ms per MiB. The worst body found is timed again
   (median of `--rounds`).
2. Adversarial bodies one by one: each body that once cost minutes (or might), at the cap, on
   every format; median and spread of CPU ms over interleaved rounds, against the plain loop
   `json.loads` of the same bytes (the least any JSON decoder does).
3. Keepalive. The worker's `KeepaliveThread` extends 32 in-flight messages every third of a
   visibility timeout while the worker thread normalizes: the worst adversarial 4 MiB bodies
   (one C call each), then a message spending `--slow` s of pure-Python CPU. Printed: the
   period, and the worst gap between two extension rounds (a memory source: scheduling only;
   the fake MNS over HTTP in this process: pessimistic, as the fake's threads share the GIL).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import strategies as st
from pydantic import SecretStr

from consumer.config.model import AccessKeyAuth, MnsConfig
from consumer.errors import InvalidMessage, clip
from consumer.formats import FORMAT_NAMES, parse
from consumer.formats._decode import MAX_BODY_BYTES
from consumer.pipeline.loop import KeepaliveThread
from consumer.sources.base import Message, Source
from consumer.sources.memory import MemoryQueue, MemorySource
from consumer.sources.mns import MnsSource
from consumer.testing.fake_mns import FakeMnsServer

MIB = 1 << 20
CAP = MAX_BODY_BYTES
TARGET_MS_PER_MIB = 50.0

TOKENS = [
    *(b"a", b"A", b"\n", b"\r\n", b" ", b"\t", b"=", b"==", b"!", b"+", b"/", b"QUJD"),
    *(b"{", b"}", b"[", b"]", b'"', b":", b",", b"{},", b"[]", b"1,", b'{"a":', b'"a":"'),
    *(b"0", b"1", b"9", b".", b"-", b"e", b"1.0", b"\\u00e9", b"\\ud800", b"\\", b"\\n"),
    *("小时".encode(), "分钟".encode(), "秒".encode(), "用户".encode(), b"\xe4", b"\xff"),
    *(b"%7B", b"%", b"&", b"a=", b"&b=", b"2020-05-01 ", b"10:00:00", b"ANSWER", b"null"),
]


def samples(fmt: str) -> list[dict[str, Any]]:
    """The format's shipped sample records (the first of an array)."""
    records = []
    for entry in files("consumer.testing").joinpath("samples").iterdir():
        if entry.name.startswith(fmt + ".") and entry.name.endswith(".json"):
            value = json.loads(entry.read_text(encoding="utf-8"))
            record = value[0] if isinstance(value, list) else value
            if isinstance(record, dict):
                records.append(record)
    return records


@st.composite
def hostile_body(draw: st.DrawFn, fmt: str) -> bytes:
    """A body up to the cap made of runs of 1 to 4 repeated units of tokens."""
    size = draw(st.sampled_from([64 * 1024, MIB, CAP]))
    units = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(TOKENS), min_size=1, max_size=3).map(b"".join),
                st.integers(1, 8),
            ),
            min_size=1,
            max_size=4,
        )
    )
    weights = sum(weight for _, weight in units)
    core = b"".join(unit * max(1, size * weight // weights // len(unit)) for unit, weight in units)
    head = b"".join(draw(st.lists(st.sampled_from(TOKENS), max_size=3)))
    tail = b"".join(draw(st.lists(st.sampled_from(TOKENS), max_size=3)))
    core = (head + core + tail)[:size]
    mode = draw(st.sampled_from(["raw", "field", "base64", "form"]))
    if mode == "field":
        record = dict(draw(st.sampled_from(samples(fmt))))
        key = draw(st.sampled_from(sorted(record)))
        record[key] = core.decode("utf-8", "replace")
        body = json.dumps(record, ensure_ascii=False).encode()
    elif mode == "base64":
        body = base64.b64encode(core[: CAP * 3 // 4])
    elif mode == "form":
        body = b"data=" + quote_from_bytes(core[: CAP // 3]).encode()
    else:
        body = core
    return body[:CAP]


def cpu_ms(fmt: str, body: bytes) -> float:
    """CPU ms of one parse; an `InvalidMessage` is an answer like any other."""
    started = time.process_time()
    with suppress(InvalidMessage):
        parse(fmt, body)
    return (time.process_time() - started) * 1000


def per_mib(ms: float, size: int) -> float:
    return ms / max(size / MIB, 1.0)


@dataclass
class Worst:
    cost: float = 0.0
    body: bytes = b""
    examples: int = 0


def fuzz(fmt: str, examples: int) -> Worst:
    worst = Worst()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.target],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_body(fmt))
    def run(body: bytes) -> None:
        cost = per_mib(cpu_ms(fmt, body), len(body))
        target(cost, label="CPU ms per MiB")
        worst.examples += 1
        if cost > worst.cost:
            worst.cost, worst.body = cost, body

    run()
    return worst


def median_ms(fmt: str, body: bytes, rounds: int) -> float:
    return statistics.median(cpu_ms(fmt, body) for _ in range(rounds))


# -- the known adversarial bodies --------------------------------------------------------------


def _field(value: str) -> bytes:
    record = samples("aliyun.voice_report")[0]
    room = CAP - len(json.dumps(record, ensure_ascii=False).encode()) - 64
    return json.dumps({**record, "duration": value[:room]}, ensure_ascii=False).encode()


def _array(item: bytes) -> bytes:
    """A JSON array of `item` up to the cap."""
    return b"[" + b",".join([item] * ((CAP - 2) // (len(item) + 1))) + b"]"


def adversarial() -> dict[str, bytes]:
    """Bodies at the cap that once cost minutes, or would cost most now."""
    encoded = base64.b64encode(json.dumps(samples("aliyun.voice_report")[0]).encode())
    return {
        "letter, newlines, !": b"a" + b"\n" * (CAP - 2) + b"!",
        "base64 cut by CRLF": encoded[:8] + b"\r\n" * ((CAP - len(encoded)) // 2) + encoded[8:],
        "1小时, spaces, x": _field("1小时" + " " * CAP + "x"),
        "digits and a letter": _field("1" * CAP + "x"),
        "one form word": b"a" * CAP,
        "form of 3 long names": b"&".join(c * (CAP // 3 - 3) + b"=1" for c in (b"a", b"b", b"c")),
        "array of {}": b"[" + b"{}," * (CAP // 3 - 1) + b"{}]",
        "array of 1": b"[" + b"1," * (CAP // 2 - 2) + b"1]",
        "array of [1]": _array(b"[1]"),
        "array of [[[[[]]]]]": _array(b"[[[[[]]]]]"),
        'array of ["["]': _array(b'["["]'),
        "nested [": b"[" * CAP,
        "one long string": b'"' + b"a" * (CAP - 2) + b'"',
        "lone surrogates": b'["' + b"\\ud800" * ((CAP - 4) // 6) + b'"]',
    }


def plain_loop_ms(body: bytes) -> float:
    started = time.process_time()
    with suppress(ValueError, RecursionError):
        json.loads(body)
    return (time.process_time() - started) * 1000


def time_adversarial(rounds: int) -> list[tuple[str, int, str, float, float, float]]:
    """(name, size, worst format, median ms, spread ms, plain loop ms) per body; interleaved."""
    bodies = adversarial()
    times: dict[tuple[str, str], list[float]] = {}
    plain: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, body in bodies.items():
            plain.setdefault(name, []).append(plain_loop_ms(body))
            for fmt in FORMAT_NAMES:
                times.setdefault((name, fmt), []).append(cpu_ms(fmt, body))
    rows = []
    for name, body in bodies.items():
        fmt = max(FORMAT_NAMES, key=lambda f: statistics.median(times[(name, f)]))
        samples_ms = times[(name, fmt)]
        spread = max(samples_ms) - min(samples_ms)
        rows.append(
            (
                name,
                len(body),
                fmt,
                statistics.median(samples_ms),
                spread,
                statistics.median(plain[name]),
            )
        )
    return rows


# -- the keepalive while a message normalizes --------------------------------------------------


@dataclass
class Extensions:
    """When each extension round started (recorded by the source itself)."""

    times: list[float] = field(default_factory=list)

    def worst_gap(self) -> float:
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)


class TimedMemorySource(MemorySource):
    def __init__(self, queue: MemoryQueue, seen: Extensions) -> None:
        super().__init__(queue)
        self.seen = seen

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self.seen.times.append(time.monotonic())
        super().extend(messages, seconds)


class TimedMnsSource(MnsSource):
    def __init__(self, config: MnsConfig, seen: Extensions) -> None:
        super().__init__(config)
        self.seen = seen

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self.seen.times.append(time.monotonic())
        super().extend(messages, seconds)


def spin(seconds: float) -> None:
    """A message whose normalization is slow but bounded: pure-Python CPU."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def keepalive_gap(source: Source, seen: Extensions, work: Callable[[], None]) -> float:
    """The worst gap between extension rounds of 32 in-flight messages while `work` runs."""
    keepalive = KeepaliveThread(source, "bench", threading.Lock())
    messages = source.receive(32, 0)
    keepalive.track(messages)
    period = source.visibility_timeout / 3
    time.sleep(period * 2.5)  # a few rounds at rest first
    seen.times.clear()
    work()
    time.sleep(period * 1.5)  # the round after the work, measured too
    keepalive.untrack(messages)
    keepalive.close()
    source.ack(messages)
    return seen.worst_gap()


@contextmanager
def memory_source(visibility: float) -> Iterator[tuple[Source, Extensions]]:
    queue = MemoryQueue(visibility_timeout=visibility)
    for n in range(32):
        queue.publish(f"m{n}".encode())
    seen = Extensions()
    yield TimedMemorySource(queue, seen), seen


@contextmanager
def mns_source(visibility: int) -> Iterator[tuple[Source, Extensions]]:
    with FakeMnsServer(seed=1) as mns:
        mns.add_credentials("bench", "bench-secret")
        mns.create_queue("bench", visibility_timeout=visibility)
        for n in range(32):
            mns.put_message("bench", f"m{n}")
        auth = AccessKeyAuth(
            mode="access_key", access_key_id="bench", access_key_secret=SecretStr("bench-secret")
        )
        config = MnsConfig(endpoint=mns.endpoint, queue="bench", auth=auth, wait_seconds=1)
        seen = Extensions()
        source = TimedMnsSource(config, seen)
        try:
            yield source, seen
        finally:
            source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="fuzzed bodies per format")
    parser.add_argument("--rounds", type=int, default=5, help="timings of each fixed body")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds of the slow message")
    args = parser.parse_args(argv)

    print(f"1. fuzz, bodies up to {CAP} bytes; cost = CPU ms / max(MiB, 1); target <= 50")
    print(f"   {'format':28} {'bodies':>6} {'worst ms/MiB':>13} {'size':>8}  body")
    missed = []
    for fmt in FORMAT_NAMES:
        worst = fuzz(fmt, args.examples)
        cost = per_mib(median_ms(fmt, worst.body, args.rounds), len(worst.body))
        if cost > TARGET_MS_PER_MIB:
            missed.append(fmt)
        shown = clip(worst.body, 24)
        print(f"   {fmt:28} {worst.examples:>6} {cost:>13.1f} {len(worst.body):>8}  {shown}")
    verdict = "met" if not missed else f"MISSED by {', '.join(missed)}"
    print(f"   target {TARGET_MS_PER_MIB:.0f} ms per MiB: {verdict}")

    print(f"\n2. adversarial bodies, CPU ms: median (spread) over {args.rounds} interleaved rounds")
    print(f"   {'body':24} {'bytes':>8} {'costliest format':26} {'ms':>8} {'spread':>7}", end="")
    print(f" {'ms/MiB':>7} {'json.loads':>10}")
    for name, size, fmt, ms, spread, plain in time_adversarial(args.rounds):
        print(
            f"   {name:24} {size:>8} {fmt:26} {ms:>8.1f} {spread:>7.1f}"
            f" {per_mib(ms, size):>7.1f} {plain:>10.1f}"
        )

    print("\n3. keepalive of 32 in-flight messages while the worker thread normalizes")
    bodies = adversarial()
    worst_c = ("array of 1", "lone surrogates", "1小时, spaces, x")  # the costliest now

    def c_calls() -> None:
        for name in worst_c:
            for fmt in ("aliyun.voice_report", "moor7.event"):
                cpu_ms(fmt, bodies[name])

    cases: list[tuple[str, Callable[[], Any], Callable[[], None]]] = [
        ("memory, 3 s visibility", lambda: memory_source(3.0), c_calls),
        ("memory, 3 s visibility", lambda: memory_source(3.0), lambda: spin(args.slow)),
        ("fake MNS, 3 s visibility", lambda: mns_source(3), c_calls),
        ("fake MNS, 3 s visibility", lambda: mns_source(3), lambda: spin(args.slow)),
    ]
    labels = ["6 adversarial 4 MiB bodies", f"{args.slow:g} s of Python CPU"] * 2
    print(f"   {'source':26} {'while':28} {'period s':>9} {'worst gap s':>12}")
    for (where, opened, work), label in zip(cases, labels, strict=True):
        with opened() as (source, seen):
            gap = keepalive_gap(source, seen, work)
            period = source.visibility_timeout / 3
        print(f"   {where:26} {label:28} {period:>9.3f} {gap:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
