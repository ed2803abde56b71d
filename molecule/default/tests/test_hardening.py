"""Least privilege on the host, as another local user or systemd sees it: each unit's
`systemd-analyze security` exposure, Alertmanager under its own user, Prometheus' data closed to
other users, the alert receiver unprivileged and answering 401 without its token, the ingest
service under the database's account with no network."""

from __future__ import annotations

import re
from typing import Any

import pytest
from verify_helpers import http

# The "Service hardening" table of docs/deploy.md gives the same figures. nginx's master must
# stay root (ports 80/443, the root-only TLS key, setuid to www-data, its logs, chown of its
# temp dirs): 2.4.
EXPOSURE = {
    "prometheus.service": 2.0,
    "prometheus-alertmanager.service": 2.0,
    "nginx.service": 2.4,
    "webhook.service": 2.0,
    "agentmon-exporter.service": 2.0,
    "agentmon-auth-gate.service": 2.0,
    "agentmon-ingest.service": 2.0,
}
PROMETHEUS_DATA = "/var/lib/prometheus/metrics2"
RECEIVER = "http://127.0.0.1:9000/hooks/alertmanager"



def exposure(host: Any, unit: str) -> float:
    out = host.check_output("systemd-analyze security --no-pager %s", unit)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert found, out[-400:]
    return float(found.group(1))


@pytest.mark.parametrize("unit", sorted(EXPOSURE))
def test_unit_exposure_is_at_most_its_threshold(host: Any, unit: str) -> None:
    score = exposure(host, unit)
    print(f"[verify] systemd-analyze security {unit}: {score}", flush=True)
    assert score <= EXPOSURE[unit], (unit, score)


def main_pid_user(host: Any, unit: str) -> str:
    pid = host.check_output("systemctl show -P MainPID %s", unit)
    assert int(pid) > 0, unit
    return host.check_output("stat -c %%U /proc/%s", pid)


def test_each_service_runs_as_its_own_user(host: Any) -> None:
    assert main_pid_user(host, "prometheus.service") == "prometheus"
    assert main_pid_user(host, "prometheus-alertmanager.service") == "alertmanager"
    assert main_pid_user(host, "webhook.service") == "alert-receiver"
    # Started by its socket (the exporter asks it on every refresh): the database's account.
    assert main_pid_user(host, "agentmon-ingest.service") == "agentmon-db"
    shown = host.check_output("systemctl show -p PrivateNetwork -p RestrictAddressFamilies"
                              " agentmon-ingest.service").splitlines()
    assert sorted(shown) == ["PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX"], shown
    # Alertmanager's secrets and state are not Prometheus' to read, and the other way round.
    for path in ("/etc/prometheus/alertmanager-secrets", "/var/lib/prometheus/alertmanager"):
        denied = host.run("setpriv --reuid=prometheus --regid=prometheus --clear-groups ls %s",
                          path)
        assert denied.rc != 0, (path, denied.stdout)
        assert "Permission denied" in denied.stderr, (path, denied.stderr)
    denied = host.run("setpriv --reuid=alertmanager --regid=alertmanager --clear-groups ls %s",
                      "/etc/prometheus/secrets")
    assert denied.rc != 0, denied.stdout
    assert "Permission denied" in denied.stderr, denied.stderr


def test_prometheus_data_is_closed_to_other_users(host: Any) -> None:
    data = host.file(PROMETHEUS_DATA)
    assert (data.user, data.group, data.mode) == ("prometheus", "prometheus", 0o700)
    # Written since this start under UMask=0077: private even below the folder.
    active = host.file(f"{PROMETHEUS_DATA}/queries.active")
    assert active.exists
    assert active.mode & 0o077 == 0, oct(active.mode)
    for user in ("alice", "nobody"):
        denied = host.run("setpriv --reuid=%s --regid=nogroup --clear-groups ls -R %s", user,
                          PROMETHEUS_DATA)
        assert denied.rc != 0, (user, denied.stdout)
        assert "Permission denied" in denied.stderr, (user, denied.stderr)


def test_alert_receiver_refuses_requests_without_its_token(host: Any) -> None:
    for token in ("", "wrong-token-of-some-length"):
        answer = http(host, RECEIVER, json_body={"alerts": []}, bearer=token or None)
        assert answer["status"] == 401, (token, answer)
    # Alertmanager's notifications carry it: the Watchdog and the alert tests in the other
    # files of this scenario arrive at the receiver.
    config = host.file("/etc/prometheus/alertmanager.yml").content_string
    assert "credentials_file: /etc/prometheus/alertmanager-secrets/webhook_token" in config
