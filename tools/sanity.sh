#!/usr/bin/env bash
# ansible-test sanity of the collection agentmon.stack, here: no containers, this venv's Python
# 3.11 (ansible-test's default per-test virtual environments, their pinned requirements from PyPI).
#   tools/sanity.sh [ansible-test sanity options...]
# ansible-test runs only inside ansible_collections/<namespace>/<name>, so it tests the files the
# artifact ships (ansible-galaxy collection build, then unpacked into build/ansible-test/...).
# Its pip bootstrap script comes from a host this machine cannot reach; the stand-in below does
# the same job (install pip and the given packages into the new venv) from the pip wheel on PyPI.
# Skipped: pslint (PowerShell, no such plugins), shellcheck (no shell plugins; the binary is not a
# host tool), changelog (no changelogs/ fragments: CHANGELOG.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
WORK=build/ansible-test
DEST=$WORK/ansible_collections/agentmon/stack
rm -rf "$WORK/ansible_collections" "$WORK/artifact"
mkdir -p "$DEST" "$WORK/artifact"
"$BIN/ansible-galaxy" collection build --force --output-path "$WORK/artifact" . >/dev/null
tar -xzf "$WORK"/artifact/agentmon-stack-*.tar.gz -C "$DEST"

# The pip version ansible-test bootstraps into its venvs (its get_venv_packages()).
pip_version=$("$BIN/python" - <<'PY'
import pathlib, re, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache=${HOME}/.ansible/test/cache
shim=$cache/get_pip_${pip_version//./_}.py
if [ ! -s "$shim" ]; then
  mkdir -p "$cache"
  "$BIN/pip" download --quiet --no-deps --dest "$cache" "pip==$pip_version"
  wheel=$(ls "$cache"/pip-"$pip_version"-*.whl)
  tmp=$(mktemp "$cache/.get_pip.XXXXXX")
  cat >"$tmp" <<PY
# Stand-in for get-pip.py $pip_version (written by agentmon's tools/sanity.sh): pip from its wheel
# installs pip $pip_version and the packages ansible-test asks for into this virtual environment.
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *args]))
PY
  mv "$tmp" "$shim"
fi

cd "$DEST"
# Its own git repository: ansible-test lists the files to test with git, and the checkout's git
# ignores build/.
git init --quiet && git add --all && git -c user.name=sanity -c user.email=sanity@localhost \
  commit --quiet --message "agentmon.stack as built"
exec "$OLDPWD/$BIN/ansible-test" sanity --python 3.11 --color no \
  --skip-test pslint --skip-test shellcheck --skip-test changelog "$@"
