#!/usr/bin/env bash
# Build the local Debian 12 test host image (systemd as PID 1) for Molecule, unless an image
# built from this exact recipe exists. The tag is a hash of the recipe (this script and the
# mirror), so editing the recipe builds a new image. No registry is needed: debootstrap uses
# the machine's Debian mirror and podman imports the root filesystem.
#   molecule/image/build.sh          build if missing, print the image reference
#   molecule/image/build.sh --ref    only print the reference the recipe would produce
set -euo pipefail

NAME=localhost/agentmon-testhost
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,procps,sudo,ca-certificates,openssh-server

mirror() {
  local sources=/etc/apt/sources.list.d/debian.sources
  if [ -r "$sources" ]; then
    awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$sources"
  else
    echo http://deb.debian.org/debian
  fi
}
MIRROR=${AGENTMON_IMAGE_MIRROR:-$(mirror)}

TAG=$( { cat "$0"; echo "$SUITE $PACKAGES $MIRROR"; } | sha256sum | cut -c1-12)
REF="$NAME:$TAG"

if [ "${1:-}" = "--ref" ]; then
  echo "$REF"
  exit 0
fi

if podman image exists "$REF"; then
  echo "$REF"
  exit 0
fi

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (run .ci/run or apt-get install podman runc debootstrap)" >&2; exit 1; }
done

ROOTFS=$(mktemp -d /var/tmp/agentmon-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "building $REF from $MIRROR (about a minute)" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2
# Keep the image small, and make apt refresh its (now empty) lists on first use: an empty
# lists folder with a fresh mtime would look valid to apt's cache_valid_time.
rm -f "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin
rm -rf "$ROOTFS"/var/lib/apt/lists/*
touch -d 2000-01-01 "$ROOTFS/var/lib/apt/lists"
# sshd is there for tools/molecule_ssh.sh, which starts it per connection through podman exec:
# nothing listens on port 22 unless a scenario enables the service itself.
rm -f "$ROOTFS"/etc/systemd/system/multi-user.target.wants/ssh.service \
  "$ROOTFS"/etc/systemd/system/sshd.service
# Each container gets its own machine id from systemd at boot.
: > "$ROOTFS/etc/machine-id"

tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/lib/systemd/systemd"]' - "$REF" >&2
podman tag "$REF" "$NAME:latest"
echo "$REF"
