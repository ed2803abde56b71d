#!/usr/bin/env bash
# Check that every host tool listed in .ci/host-tools is present; print one line per missing
# tool naming the Debian package that brings it, and exit 1 if any is missing.
#   tools/check_tools.sh [LIST]    (default: .ci/host-tools beside this repository's tools/)
set -euo pipefail
list=${1:-"$(dirname "$0")/../.ci/host-tools"}
python=${PYTHON:-python3}
missing=()
while read -r package probe purpose; do
  case "$package" in ''|'#'*) continue ;; esac
  case "$probe" in
    py:*) "$python" -c "import ${probe#py:}" >/dev/null 2>&1 && continue ;;
    /*) [ -e "$probe" ] && continue ;;
    *) command -v "$probe" >/dev/null 2>&1 && continue ;;
  esac
  echo "check-tools: missing ${probe} (${purpose}): apt-get install --no-install-recommends ${package}" >&2
  missing+=("$package")
done < "$list"
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-tools: ${#missing[@]} missing; \`bash .ci/run\` installs them all, or: apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "check-tools: all $(grep -cEv '^[[:space:]]*(#|$)' "$list") host tools present"
