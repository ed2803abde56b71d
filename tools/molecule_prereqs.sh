#!/usr/bin/env bash
# Molecule's dependency step (shared .config/molecule/config.yml), so that a plain
# `molecule test --all` or `molecule test -s NAME` from the repository root works: builds the
# Debian 12 test host image and the wheelhouse when they are missing or stale, or stops at once
# with one line saying what to run. `make molecule` has built both already: then this is a
# no-op of about a second.
set -euo pipefail
cd "${MOLECULE_PROJECT_DIRECTORY:-$(dirname "$0")/..}"

fail() { echo "molecule prerequisites: $*" >&2; exit 1; }

command -v podman >/dev/null 2>&1 ||
  fail "podman is missing: run 'bash .ci/install-tools' as root (Debian 12), then 'make image wheelhouse'"

image=${AGENTMON_TEST_IMAGE:-localhost/agentmon-testhost:latest}
if [ -z "${AGENTMON_TEST_IMAGE:-}" ] || [ "$image" = "$(molecule/image/build.sh --ref)" ]; then
  # The recipe's image (build.sh also tags it :latest); built only when missing or stale.
  if ! podman image exists "$(molecule/image/build.sh --ref)"; then
    command -v debootstrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] ||
      fail "no test host image: run 'make image' as root (needs debootstrap: bash .ci/install-tools)"
    molecule/image/build.sh >/dev/null
  fi
else
  podman image exists "$image" || fail "AGENTMON_TEST_IMAGE=$image does not exist: unset it, or run 'make image'"
fi

stamp=roles/_release/files/wheelhouse/.built
if [ ! -f "$stamp" ] || [ -n "$(find exporter/src exporter/pyproject.toml tools/build_wheelhouse.sh \
    -newer "$stamp" -type f -not -name '*.pyc' -print -quit)" ]; then
  [ -x .venv/bin/pip ] || fail "no wheelhouse (roles/_release/files/wheelhouse): run 'make venv wheelhouse' first"
  echo "molecule prerequisites: building the wheelhouse (tools/build_wheelhouse.sh)" >&2
  tools/build_wheelhouse.sh roles/_release/files/wheelhouse >&2
  touch "$stamp"
fi

# The scenarios use the roles as agentmon.stack.<role>, from this checkout: the shared config's
# ANSIBLE_COLLECTIONS_PATH starts with build/collections, where this link is (make collection-path).
mkdir -p build/collections/ansible_collections/agentmon
ln -sfn ../../../.. build/collections/ansible_collections/agentmon/stack

# The SSH key and ssh_config the shared Molecule config connects with (tools/molecule_ssh.sh).
command -v ssh >/dev/null 2>&1 || fail "ssh is missing: run 'bash .ci/install-tools' as root"
tools/molecule_ssh.sh setup build/molecule-ssh
