"""Wrong-password flood benchmark against a real monitoring host: nginx before and after.

The host is a converged Molecule `default` host (a podman container: nginx, the authentication
gate, Prometheus with its self-scrape). From ON the host (so that flooder and user share one
address, as behind NAT), `flood_client.py` runs 60 flooders, each sending a new wrong password
in every request, while a logged-in user queries Prometheus, for ``--seconds``; afterwards it
reads Prometheus' self-scrape samples of that window.

It runs twice in one run, side by side: with the nginx.conf of ``--before`` (a git revision;
its nginx role's template rendered for this host with the scenario's inventory: every request
limited per address, passwords passed to Prometheus) and with the host's own (this branch's:
the gate, failed logins limited). The host's nginx.conf is put back at the end.

    make bench-flood                 # after: flock ... molecule converge -s default
    python bench/bench_flood.py --host agentmon-default-host --before main

Not part of `make test`: the machine is shared and noisy; the figures are one run's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONF = "/etc/nginx/nginx.conf"
CA = "/etc/ssl/agentmon/ca.crt"

# Renders the revision's nginx.conf.j2 with its role's defaults and vars beneath the inventory
# (include_role: role defaults have the lowest precedence, as in a real run).
_RENDER_TASKS = """---
- name: Render this revision's nginx.conf (bench only)
  ansible.builtin.template:
    src: nginx.conf.j2
    dest: /etc/nginx/nginx.conf.bench-before
    owner: root
    group: root
    mode: "0644"
"""
_PLAYBOOK = """---
- name: Render the revision's nginx.conf for the flood benchmark
  hosts: monitoring_hosts
  gather_facts: false
  become: true
  tasks:
    - name: Render
      ansible.builtin.include_role:
        name: {role}
        tasks_from: bench_render
"""


def podman(host: str, *argv: str, check: bool = True) -> str:
    proc = subprocess.run(["podman", "exec", host, *argv], capture_output=True, text=True,
                          timeout=900, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench_flood: on {host}: {' '.join(argv[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def render_before(host: str, ref: str, inventory: Path) -> None:
    """/etc/nginx/nginx.conf.bench-before on the host: revision `ref`'s template, rendered."""
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        archive = Path(tmp) / "roles.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), ref,
                        "roles/nginx"], check=True, timeout=120)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        role = Path(tmp) / "roles" / "nginx"
        (role / "tasks" / "bench_render.yml").write_text(_RENDER_TASKS)
        playbook = Path(tmp) / "render.yml"
        playbook.write_text(_PLAYBOOK.format(role=role))
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        proc = subprocess.run(["ansible-playbook", "-i", str(inventory), "--limit", host,
                               str(playbook)], capture_output=True, text=True, env=env,
                              timeout=900, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"bench_flood: rendering {ref}'s nginx.conf failed:\n"
                             + proc.stdout[-3000:])


def use_conf(host: str, path: str) -> None:
    podman(host, "cp", path, CONF)
    podman(host, "nginx", "-t", "-q")
    podman(host, "systemctl", "reload", "nginx")
    time.sleep(3)  # the old workers finish; not a measurement


def flood(host: str, args: argparse.Namespace) -> dict[str, Any]:
    client = (HERE / "flood_client.py").read_text()
    name = podman(host, "hostname").strip()
    out = podman(host, "python3", "-c", client, "--host", name, "--ca", CA,
                 "--user", args.user, "--password", args.password,
                 "--flooders", str(args.flooders), "--seconds", str(args.seconds),
                 "--timeout", "30")
    return json.loads(out)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(result: dict[str, Any]) -> dict[str, str]:
    legit = result["legit"][1:]  # the login before the flood is not part of it
    ok = [t for s, t in legit if s == 200]
    others: dict[int, int] = {}
    for status, _ in legit:
        if status != 200:
            others[status] = others.get(status, 0) + 1
    ups = [v for _, v in result["samples"]["up"]]
    durations = [v for _, v in result["samples"]["scrape_duration_seconds"]]
    flooded = result["flood"]
    return {
        "user: answers in the flood": str(len(legit)),
        "user: 200 / other (status: count; 0 = timeout or error)":
            f"{len(ok)} / {sum(others.values())}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(others.items()))})"
               if others else ""),
        "user: latency p50 / p99 (all answers)":
            f"{pct([t for _, t in legit], 0.5) * 1000:.0f} ms / "
            f"{pct([t for _, t in legit], 0.99) * 1000:.0f} ms",
        "flooders: 401 / 429 / other": f"{flooded.get('401', 0)} / {flooded.get('429', 0)} / "
            f"{sum(v for k, v in flooded.items() if k not in ('401', '429'))}",
        'self-scrape: up{job="prometheus"} samples, of which 0':
            f"{len(ups)}, {sum(1 for v in ups if v == 0)}",
        "self-scrape: scrape_duration_seconds median / max":
            (f"{statistics.median(durations) * 1000:.0f} ms / {max(durations) * 1000:.0f} ms"
             if durations else "none"),
    }


def newest_inventory(host: str) -> Path | None:
    """The inventory of the newest Molecule `default` run that has `host` (Molecule 26 keeps
    it in a temp dir; other worktrees' runs name other hosts)."""
    found = sorted((p for p in (Path.home() / ".ansible" / "tmp").glob(
        "molecule.*.default/inventory") if (p / "ansible_inventory.yml").exists()
        and host in (p / "ansible_inventory.yml").read_text()),
        key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("AGENTMON_DEFAULT_HOST",
                                                          "agentmon-default-host"))
    parser.add_argument("--before", default="main", help="git revision of the before config")
    parser.add_argument("--inventory", type=Path,
                        help="the scenario's inventory (default: Molecule's ephemeral one)")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="molecule-default-admin-password")
    parser.add_argument("--flooders", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    inventory = args.inventory or newest_inventory(args.host)
    if inventory is None or not inventory.exists():
        raise SystemExit(f"bench_flood: no inventory at {inventory}: converge the default "
                         "scenario first, or pass --inventory")
    podman(args.host, "cp", CONF, "/etc/nginx/nginx.conf.bench-after")
    render_before(args.host, args.before, inventory)
    results: dict[str, dict[str, str]] = {}
    try:
        for label, path in ((f"before ({args.before})", "/etc/nginx/nginx.conf.bench-before"),
                            ("after (this tree)", "/etc/nginx/nginx.conf.bench-after")):
            use_conf(args.host, path)
            print(f"bench_flood: {label}: {args.flooders} flooders for {args.seconds:.0f} s ...",
                  file=sys.stderr, flush=True)
            results[label] = summary(flood(args.host, args))
    finally:
        use_conf(args.host, "/etc/nginx/nginx.conf.bench-after")
    labels = list(results)
    rows = list(results[labels[0]])
    print(f"\nWrong-password flood, {args.flooders} connections from the user's address, "
          f"{args.seconds:.0f} s, on {args.host}\n")
    print("| measure | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for row in rows:
        print(f"| {row} | " + " | ".join(results[label][row] for label in labels) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
