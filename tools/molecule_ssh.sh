#!/usr/bin/env bash
# Ansible and Testinfra reach the Molecule test hosts over SSH, tunnelled through `podman exec`:
# each connection starts sshd in inetd mode (-i) inside the container, so no port is opened on
# any network, and one multiplexed SSH session carries every task of a run. Measured against
# Ansible's podman connection (one `podman exec` per module call): about a quarter of the
# controller's CPU time per task (docs/molecule.md).
#   tools/molecule_ssh.sh setup DIR   key pair and ssh_config in DIR (kept when present)
#   tools/molecule_ssh.sh proxy HOST PUBKEY   the ProxyCommand the ssh_config names
set -euo pipefail

case "${1:-}" in
  setup)
    dir=$(realpath -m "${2:?usage: molecule_ssh.sh setup DIR}")
    [ -f "$dir/config" ] && exit 0
    mkdir -p "$(dirname "$dir")"
    # Built aside and renamed into place: scenarios started side by side may race here.
    work=$(mktemp -d "$dir.XXXXXX")
    ssh-keygen -q -t ed25519 -N '' -C agentmon-molecule -f "$work/id_ed25519"
    cat > "$work/config" <<CONFIG
# Written by tools/molecule_ssh.sh: the test hosts are containers, reached through podman exec.
Host *
  User root
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  ProxyCommand $(realpath "$0") proxy %h $dir/id_ed25519.pub
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ControlMaster auto
  ControlPath $dir/cm-%C
  ControlPersist 120s
CONFIG
    mv -T "$work" "$dir" 2>/dev/null || rm -rf "$work"
    ;;
  proxy)
    host=${2:?usage: molecule_ssh.sh proxy HOST PUBKEY}
    key=$(cat "${3:?usage: molecule_ssh.sh proxy HOST PUBKEY}")
    # shellcheck disable=SC2016  # expanded inside the container
    exec podman exec -i "$host" /bin/sh -c '
      mkdir -p -m 0755 /run/sshd &&
      (umask 077 && printf "%s\n" "$1" > /run/molecule-ssh.pub) &&
      umask 022 && exec /usr/sbin/sshd -i -o AuthorizedKeysFile=/run/molecule-ssh.pub -o PermitRootLogin=prohibit-password' \
      sh "$key"
    ;;
  *)
    echo "usage: tools/molecule_ssh.sh setup DIR | proxy HOST PUBKEY" >&2
    exit 2
    ;;
esac
