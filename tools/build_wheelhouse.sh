#!/usr/bin/env bash
# Build the offline wheelhouse the Ansible roles install from: the agentmon wheel plus binary
# wheels of its dependencies for the TARGET hosts (not necessarily this machine), so hosts
# install with pip --no-index and never reach PyPI.
#   tools/build_wheelhouse.sh [OUT]   (default build/wheelhouse)
# Target: TARGET_PYTHON (default 3.11, Debian 12), TARGET_ARCH (x86_64), TARGET_GLIBC (2.36).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-build/wheelhouse}
PIP=${PIP:-.venv/bin/pip}
TARGET_PYTHON=${TARGET_PYTHON:-3.11}
TARGET_ARCH=${TARGET_ARCH:-x86_64}
TARGET_GLIBC=${TARGET_GLIBC:-2.36}

# Every manylinux tag the target's glibc accepts, newest first (pip does not expand them).
platforms=()
for ((minor = ${TARGET_GLIBC#2.}; minor >= 17; minor--)); do
  platforms+=(--platform "manylinux_2_${minor}_${TARGET_ARCH}")
done
platforms+=(--platform "manylinux2014_${TARGET_ARCH}" --platform any)

mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d "$(dirname "$OUT")/.wheelhouse.XXXXXX")
log=$tmp/.log
trap 'rm -rf "$tmp"' EXIT
# pip and setuptools are chatty; show their output only when something fails.
if ! { "$PIP" wheel --quiet --no-deps --wheel-dir "$tmp" ./exporter &&
       "$PIP" download --quiet --only-binary=:all: --implementation cp \
         --python-version "$TARGET_PYTHON" "${platforms[@]}" --dest "$tmp" "$tmp"/agentmon-*.whl
     } >"$log" 2>&1; then
  cat "$log" >&2
  echo "build_wheelhouse.sh: failed (output above)" >&2
  exit 1
fi
rm -f "$log"
rm -rf "$OUT"
mv "$tmp" "$OUT"
chmod 0755 "$OUT"
trap - EXIT
ls "$OUT"
