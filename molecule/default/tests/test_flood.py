"""Issue 19, items 1 and 2: a flood of new wrong passwords from the address a logged-in user
shares (NAT, a jump host) through nginx. nginx's authentication gate limits failed logins, not
requests; a wrong password never reaches Prometheus' bcrypt.

The flood runs on the host (exporter/bench/flood_client.py, the same client `make bench-flood`
measures with): 60 connections, a new wrong password in every request, while the user queries
Prometheus with the right one. It stops on events (the user's answers, the flooders' refusals,
two self-scrapes stored after the flood began), never after a duration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verify_helpers import http

PROJECT = Path(__file__).resolve().parents[3]
FLOOD = (PROJECT / "exporter" / "bench" / "flood_client.py").read_text()
CA = "/etc/ssl/agentmon/ca.crt"
ADMIN = ("admin", "molecule-default-admin-password")
GRAFANA = ("grafana", "molecule-default-grafana-password")
SOCKET = "/run/agentmon-auth-gate.sock"


def name(host: Any) -> str:
    return host.check_output("hostname")


def test_gate_checks_people_and_nginx_calls_the_upstreams_as_itself(host: Any) -> None:
    """Before the flood: after it, this address is past its budget of failed logins for a
    while, and a wrong password gets 429 instead of 401 (as it should)."""
    base = f"https://{name(host)}"
    for user in (ADMIN, GRAFANA):
        assert http(host, f"{base}/prometheus/api/v1/query?query=up", basic=user,
                    ca=CA)["status"] == 200, user
    wrong = http(host, f"{base}/prometheus/api/v1/query?query=up",
                 basic=("admin", "not-the-password"), ca=CA)
    assert wrong["status"] == 401
    # The realm is the gate's: Prometheus never saw the wrong password.
    assert wrong["headers"]["www-authenticate"].startswith('Basic realm="prometheus"')
    assert http(host, f"{base}/alertmanager/api/v2/status", basic=("admin", "molecule-default-"
                "am-admin-password"), ca=CA)["status"] == 200
    # Prometheus' logins through nginx are nginx's own (its web config user "nginx"), while the
    # people's passwords stay out of every file nginx and the gate read.
    for path in ("/etc/nginx", "/etc/systemd/system"):
        found = host.run("grep -rlF -e %s -e %s %s", ADMIN[1], GRAFANA[1], path)
        assert found.rc == 1, found.stdout
    users = json.loads(host.file("/etc/nginx/agentmon-auth-gate-users.json").content_string)
    assert all(h.startswith("$2b$10$") for t in users.values() for h in t.values()), users
    gate_file = host.file("/etc/nginx/agentmon-auth-gate-users.json")
    assert (gate_file.user, gate_file.group, gate_file.mode) == ("root", "agentmon-auth-gate",
                                                                 0o640)
    for location in ("prometheus", "alertmanager"):
        include = host.file(f"/etc/nginx/agentmon-auth-gate-upstream-{location}.conf")
        assert (include.user, include.mode) == ("root", 0o600), location


def test_flood_refuses_no_logged_in_user_and_spares_the_self_scrape(host: Any) -> None:
    run = host.run("python3 -c %s --host %s --ca %s --user %s --password %s --flooders 60"
                   " --until-events --min-legit 30 --min-refused 300 --deadline 600",
                   FLOOD, name(host), CA, *ADMIN)
    assert run.rc == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    statuses = [status for status, _ in out["legit"]]
    print(f"[verify] flood: user {len(statuses)} answers {sorted(set(statuses))}, flooders"
          f" {out['flood']}, self-scrapes {out['samples']['up']}", flush=True)
    # Every request of the user, from the flooder's address, answered 200 (none 429, none 0 =
    # timed out or refused).
    assert set(statuses) == {200}, statuses
    assert len(statuses) >= 30
    # The flooders were refused: 401 while their address had budget, then 429.
    assert set(out["flood"]) <= {"401", "429"}, out["flood"]
    assert out["flood"].get("429", 0) > 0, out["flood"]
    # Prometheus scraped itself during the flood, and every such scrape succeeded.
    ups = [v for _, v in out["samples"]["up"]]
    assert len(ups) >= 2, out["samples"]
    assert set(ups) == {1.0}, out["samples"]


def test_only_nginx_may_ask_the_gate(host: Any) -> None:
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("root", "www-data", 0o660)
    probe = (f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({SOCKET!r});"
             " print('open')")
    denied = host.run("runuser -u alice -- python3 -c %s", probe)
    assert denied.rc != 0, denied.stdout
    assert "Permission denied" in denied.stderr, denied.stderr
    allowed = host.run("runuser -u www-data -- python3 -c %s", probe)
    assert allowed.stdout.strip() == "open", allowed.stderr
    pid = host.check_output("systemctl show -P MainPID agentmon-auth-gate.service")
    assert host.check_output("stat -c %%U /proc/%s", pid) == "agentmon-auth-gate"
    # No network at all: the gate's only way in is the socket systemd hands it.
    listening = host.check_output("ss -Hltnup")
    assert f"pid={pid}," not in listening, listening
