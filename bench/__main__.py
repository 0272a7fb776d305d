"""Run every bench/bench_*.py in name order (`python -m bench`).

Each module has `main(argv)`, called with no arguments (its defaults); a non-zero return or an
exception marks that bench failed, and the others still run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    names = sorted(path.stem for path in Path(__file__).parent.glob("bench_*.py"))
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            status = module.main([])
        except Exception as exc:
            status = 1
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if status:
            failed += 1
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
