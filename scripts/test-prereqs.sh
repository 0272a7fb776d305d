#!/usr/bin/env bash
# What the test suite talks to besides Python packages: PostgreSQL on 127.0.0.1:5432 (database
# `test`, trust auth), systemd-analyze (the unit's verify and security tests), chattr and mount
# (tests/hostile make SQLite files immutable and fill a small tmpfs, as root) and Prometheus with
# promtool (the monitoring kit's rule tests and real-server test). Installs or
# starts them where this machine allows it (root with apt and a local cluster); says what is
# missing otherwise, and the tests that need it then fail rather than skip.
set -uo pipefail
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null
  else
    echo "test-prereqs: systemd-analyze is missing (Debian package: systemd)" >&2
  fi
fi
if ! command -v chattr >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends e2fsprogs >/dev/null
  else
    echo "test-prereqs: chattr is missing (Debian package: e2fsprogs)" >&2
  fi
fi
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # Debian's package starts a server on :9090 at install; the tests start their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1; fi
  else
    echo "test-prereqs: prometheus and promtool are missing (Debian package: prometheus)" >&2
  fi
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  else
    echo "test-prereqs: no PostgreSQL on 127.0.0.1:5432" >&2
  fi
fi
exit 0
