#!/usr/bin/env bash
# Build the offline wheelhouse the Ansible roles install from: the agentmon wheel plus binary
# wheels of its dependencies for the TARGET hosts (not necessarily this machine), so hosts
# install with pip --no-index and never reach PyPI.
#   tools/build_wheelhouse.sh [OUT]   (default roles/_release/files/wheelhouse: shipped in the
#                                      collection, the roles' default agentmon_release_wheelhouse)
# Target: TARGET_PYTHON (default 3.11, Debian 12), TARGET_ARCH (x86_64), TARGET_GLIBC (2.36).
# SOURCE: the package folder to build (default ./exporter).
#
# Builds add to OUT and never delete: the wheels of earlier versions stay, so an older release
# can be deployed again. Each build writes, for its agentmon version V:
#   agentmon-V.requirements.txt  every wheel pinned with its sha256 (pip --require-hashes)
#   agentmon-V.json              {"version", "target": {"python", "arch", "glibc"}, "wheels"}
# A rebuild of the same version replaces that version's wheel and files (the hosts' release
# folders keep the copy they were installed from).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-roles/_release/files/wheelhouse}
PIP=${PIP:-.venv/bin/pip}
PYTHON=${PYTHON:-$(dirname "$PIP")/python}
SOURCE=${SOURCE:-./exporter}
TARGET_PYTHON=${TARGET_PYTHON:-3.11}
TARGET_ARCH=${TARGET_ARCH:-x86_64}
TARGET_GLIBC=${TARGET_GLIBC:-2.36}

# Every manylinux tag the target's glibc accepts, newest first (pip does not expand them).
platforms=()
for ((minor = ${TARGET_GLIBC#2.}; minor >= 17; minor--)); do
  platforms+=(--platform "manylinux_2_${minor}_${TARGET_ARCH}")
done
platforms+=(--platform "manylinux2014_${TARGET_ARCH}" --platform any)

mkdir -p "$OUT"
# One build at a time per wheelhouse: a wheel and its lock file must come from the same build.
exec 9>"$OUT/.build.lock"
flock 9
tmp=$(mktemp -d "$(dirname "$OUT")/.wheelhouse.XXXXXX")
log=$tmp/.log
trap 'rm -rf "$tmp"' EXIT
# pip and setuptools are chatty; show their output only when something fails.
if ! { "$PIP" wheel --quiet --no-deps --wheel-dir "$tmp" "$SOURCE" &&
       "$PIP" download --quiet --only-binary=:all: --implementation cp \
         --python-version "$TARGET_PYTHON" "${platforms[@]}" --dest "$tmp" "$tmp"/agentmon-*.whl
     } >"$log" 2>&1; then
  cat "$log" >&2
  echo "build_wheelhouse.sh: failed (output above)" >&2
  exit 1
fi
rm -f "$log"

# The lock files name exactly the wheels of this build, with their hashes.
"$PYTHON" - "$tmp" "$TARGET_PYTHON" "$TARGET_ARCH" "$TARGET_GLIBC" <<'PY'
import hashlib, json, pathlib, sys

folder, python, arch, glibc = pathlib.Path(sys.argv[1]), *sys.argv[2:]
wheels = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in sorted(folder.glob("*.whl"))}
version = next(n.split("-")[1] for n in wheels if n.startswith("agentmon-"))
lines = [f"{n.split('-')[0]}=={n.split('-')[1]} --hash=sha256:{h}" for n, h in wheels.items()]
(folder / f"agentmon-{version}.requirements.txt").write_text("\n".join(lines) + "\n")
manifest = {"version": version, "target": {"python": python, "arch": arch, "glibc": glibc},
            "wheels": wheels}
(folder / f"agentmon-{version}.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(f"agentmon {version} for python {python} {arch} glibc {glibc}: {len(wheels)} wheels")
PY

chmod 0755 "$OUT"
for f in "$tmp"/*; do
  chmod 0644 "$f"
  mv -f "$f" "$OUT/"
done
