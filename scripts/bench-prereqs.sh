#!/usr/bin/env bash
# What the benchmarks use besides Python packages: wrk (Debian package wrk), the C load
# generator of bench/bench_http.py. Its CPU per request is a tenth of the Python client's, so on a
# small machine the receiver, not the load, is what the HTTP push figures measure. Installed where
# this machine allows it (root with apt); otherwise bench_http says so and runs the Python client
# only.
set -uo pipefail
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
  else
    echo "bench-prereqs: wrk is missing (Debian package: wrk)" >&2
  fi
fi
exit 0
