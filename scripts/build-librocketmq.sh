#!/usr/bin/env bash
# Builds librocketmq.so (apache/rocketmq-client-cpp, the native half of rocketmq-client-python
# 2.0.0) from an upstream source tarball against Debian's packages, applies the project's patches
# in scripts/librocketmq/, and caches the result by the tarball's sha256 so a machine builds it
# once: /var/cache/consumer/librocketmq/<sha256>/librocketmq.so (CONSUMER_LIBROCKETMQ_CACHE
# overrides the root). Upstream's build.sh downloads its dependencies; this one does not.
# Prints the path of the .so on stdout; everything else goes to stderr.
# Usage: scripts/build-librocketmq.sh rocketmq-client-cpp-<rev>.tar.gz
set -euo pipefail
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 SRC_TARBALL (apache/rocketmq-client-cpp source .tar.gz)" >&2
  exit 64
fi
src=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
sha=$(sha256sum "$src" | cut -d' ' -f1)
root=${CONSUMER_LIBROCKETMQ_CACHE:-/var/cache/consumer/librocketmq}
out="$root/$sha"
so="$out/librocketmq.so"
if [ -s "$so" ]; then
  echo "$so"
  exit 0
fi
mkdir -p "$root"
# One build per machine: a second caller waits for the first and then finds the cache.
exec 9>"$root/.lock"
flock 9
if [ -s "$so" ]; then
  echo "$so"
  exit 0
fi

debs="cmake g++ make patch libevent-dev libjsoncpp-dev zlib1g-dev libssl-dev"
for c in atomic thread system chrono date-time log regex serialization filesystem locale iostreams; do
  debs="$debs libboost-$c""1.74-dev"
done
missing=""
for d in $debs; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $d"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "build-librocketmq: installing$missing" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  else
    echo "build-librocketmq: missing Debian packages:$missing (install them as root)" >&2
    exit 69
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$src" -C "$work"
top=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
for p in "$here"/librocketmq/*.patch; do
  echo "build-librocketmq: applying $(basename "$p")" >&2
  patch -d "$top" -p1 --forward --quiet <"$p" >&2
done
mkdir -p "$top/cmake-build"
(
  cd "$top/cmake-build"
  cmake .. -DCMAKE_BUILD_TYPE=Release -DBUILD_ROCKETMQ_STATIC=OFF -DBUILD_ROCKETMQ_SHARED=ON \
    -DCMAKE_VERBOSE_MAKEFILE=OFF >&2
  make -j"$(nproc)" rocketmq_shared >&2
)
built=$(find "$top/bin" -maxdepth 1 -name 'librocketmq.so*' -type f | head -n 1)
[ -n "$built" ] || { echo "build-librocketmq: no librocketmq.so produced" >&2; exit 70; }
strip --strip-unneeded "$built"
mkdir -p "$out"
cp "$built" "$out/.librocketmq.so.tmp"
mv "$out/.librocketmq.so.tmp" "$so"
echo "$so"
