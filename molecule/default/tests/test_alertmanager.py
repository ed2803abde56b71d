"""The Alertmanager site.yml installs on the monitoring host, as Prometheus and an operator use it
on the host's loopback: with and without credentials, alerts posted to its API reaching the real
webhook receiver (firing, then resolved), a critical alert muting the warnings of its instance,
and every agentmon rule healthy in Prometheus. (The path from a stopped exporter to the receiver
is proven across hosts in the multi_host scenario.)"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from verify_helpers import http as shared_http
from verify_helpers import wait_for

HOST = os.environ.get("AGENTMON_DEFAULT_HOST", "agentmon-default-host")

BASE = "http://127.0.0.1:9093/alertmanager"
# nginx's loopback gate: Prometheus' credential may POST alerts there, nothing else anywhere.
GATE = "http://127.0.0.1:9095/alertmanager"
PROMETHEUS_URL = "http://127.0.0.1:9090/prometheus"
PROMETHEUS = ("prometheus", "molecule-default-am-prometheus-password")
ADMIN = ("admin", "molecule-default-am-admin-password")
PROMETHEUS_ADMIN = ("admin", "molecule-default-admin-password")
SERVICE = "prometheus-alertmanager.service"
# The rule files the prometheus role installs (its files/rules), as shipped in this checkout.
RULE_FILES = sorted(
    (Path(__file__).resolve().parents[3] / "roles/prometheus/files/rules").glob("*.yml"))
RECEIVED = "/var/lib/alert-receiver/notifications.jsonl"
WEB_CONFIG = "/etc/prometheus/alertmanager-web.yml"
CONFIG = "/etc/prometheus/alertmanager.yml"

Note = dict[str, Any]


def http(host: Any, method: str, url: str, auth: tuple[str, str] | None = None,
         body: Any = None) -> dict[str, Any]:
    """On the host: Alertmanager and Prometheus listen on its loopback only."""
    return shared_http(host, url, method=method, basic=auth, json_body=body)


def call(host: Any, method: str, path: str, auth: tuple[str, str] | None = ADMIN,
         body: Any = None) -> dict[str, Any]:
    return http(host, method, BASE + path, auth, body)


def push(host: Any, alerts: list[Any], auth: tuple[str, str] | None = PROMETHEUS,
         ) -> dict[str, Any]:
    """POST alerts as Prometheus does: through the gate, with its credential."""
    return http(host, "POST", GATE + "/api/v2/alerts", auth, alerts)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(labels: dict[str, str], ends_in: timedelta = timedelta(minutes=5),
          started: timedelta = timedelta(seconds=30)) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"labels": labels, "annotations": {"summary": "Posted by the Molecule verify step."},
            "startsAt": stamp(now - started), "endsAt": stamp(now + ends_in),
            "generatorURL": "https://monitor.example/prometheus/graph"}


def received(host: Any) -> list[Note]:
    """Every notification the receiver got, each with "received" (Unix time of arrival)."""
    receiver = host.file(RECEIVED)
    text = receiver.content_string if receiver.exists else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def alerts_in(note: Note) -> list[dict[str, Any]]:
    return note["notification"].get("alerts", [])


def has_test_alert(test_id: str, status: str) -> Callable[[Note], bool]:
    return lambda note: note["notification"].get("status") == status and any(
        a["labels"].get("test") == test_id for a in alerts_in(note))


def wait_for_note(host: Any, matches: Callable[[Note], bool], what: str,
                  since: float = 0) -> Note:
    """The first notification that arrived after `since` and matches."""
    return wait_for(lambda: next((note for note in received(host)
                                  if note["received"] >= since and matches(note)), None), what)


def sent_alerts(host: Any, test_id: str) -> set[tuple[str, str]]:
    """(alertname, instance) of every alert labelled test=test_id the receiver got."""
    return {(a["labels"]["alertname"], a["labels"]["instance"])
            for note in received(host) for a in alerts_in(note)
            if a["labels"].get("test") == test_id}


def test_service_enabled_and_on_loopback_only(host: Any) -> None:
    service = host.service(SERVICE)
    assert service.is_enabled
    assert service.is_running
    listening = host.check_output("ss -Hltn")
    assert "127.0.0.1:9093 " in listening
    assert "*:9093 " not in listening
    assert "0.0.0.0:9093 " not in listening
    # The cluster port stays closed (gossip has no authentication).
    assert ":9094 " not in listening


def test_flags(host: Any) -> None:
    args = host.file("/etc/default/prometheus-alertmanager").content_string
    for flag in ("--web.listen-address=127.0.0.1:9093", f"--web.config.file={WEB_CONFIG}",
                 f"--config.file={CONFIG}",
                 f"--web.external-url=https://{HOST}/alertmanager/", "--cluster.listen-address="):
        assert flag in args


def test_web_config_holds_only_bcrypt_hashes(host: Any) -> None:
    web = host.file(WEB_CONFIG)
    assert (web.user, web.group, web.mode) == ("root", "alertmanager", 0o640)
    text = web.content_string
    assert text.count("$2b$10$") == 3  # admin, alert-gate and nginx (its authentication gate)
    assert ADMIN[1] not in text
    assert PROMETHEUS[1] not in text


def test_config_passes_amtool_and_has_routes(host: Any) -> None:
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "alertmanager", 0o640)
    check = host.run("amtool check-config %s", CONFIG)
    assert check.rc == 0, check.stdout + check.stderr
    text = config.content_string
    assert "http://127.0.0.1:9000/hooks/alertmanager" in text
    assert 'severity="critical"' in text
    assert "equal:" in text


@pytest.mark.parametrize("path", ["/-/ready", "/api/v2/status", "/api/v2/alerts", "/metrics"])
def test_refuses_without_or_with_wrong_credentials(host: Any, path: str) -> None:
    assert call(host, "GET", path, auth=None)["status"] == 401
    assert call(host, "GET", path, auth=("prometheus", "wrong"))["status"] == 401
    assert call(host, "GET", path, auth=("nobody", PROMETHEUS[1]))["status"] == 401
    assert call(host, "GET", path, auth=ADMIN)["status"] == 200
    # Prometheus' credential is not Alertmanager's: only the gate knows it.
    assert call(host, "GET", path, auth=PROMETHEUS)["status"] == 401


def test_prometheus_credential_may_push_alerts_and_nothing_else(host: Any) -> None:
    silence = {"matchers": [{"name": "alertname", "value": "AgentmonWatchdog", "isRegex": False,
                             "isEqual": True}],
               "startsAt": stamp(datetime.now(UTC)),
               "endsAt": stamp(datetime.now(UTC) + timedelta(hours=1)),
               "createdBy": "attacker", "comment": "muted"}
    assert http(host, "POST", BASE + "/api/v2/silences", PROMETHEUS, silence)["status"] == 401
    assert http(host, "POST", GATE + "/api/v2/silences", PROMETHEUS, silence)["status"] == 403
    for path in ("/api/v2/alerts", "/api/v2/silences", "/api/v2/status", "/-/ready"):
        assert http(host, "GET", GATE + path, PROMETHEUS)["status"] == 403, path
    assert http(host, "DELETE", GATE + "/api/v2/silence/x", PROMETHEUS)["status"] == 403
    assert push(host, [], auth=None)["status"] == 401
    assert push(host, [], auth=("prometheus", "wrong"))["status"] == 401
    assert push(host, [], auth=("alert-gate", "molecule-default-am-gate-password"))["status"] == 401
    assert push(host, [])["status"] == 200
    silences = json.loads(call(host, "GET", "/api/v2/silences")["body"])
    assert not [s for s in silences if s["createdBy"] == "attacker"]


def test_posting_alerts_needs_credentials(host: Any) -> None:
    test_id = uuid.uuid4().hex
    answer = push(host, [alert({"alertname": "AgentmonExporterDown", "test": test_id})],
                  auth=None)
    assert answer["status"] == 401
    # The later event: the same alert, posted with credentials, listed and notified.
    accepted = {"alertname": "AgentmonExporterDown", "test": test_id + "-accepted"}
    assert push(host, [alert(accepted)])["status"] == 200
    wait_for_note(host, has_test_alert(accepted["test"], "firing"), "the accepted alert")
    refused = f"/api/v2/alerts?filter=test%3D%22{test_id}%22"
    assert not json.loads(call(host, "GET", refused)["body"])
    assert not any(a["labels"].get("test") == test_id
                   for note in received(host) for a in alerts_in(note))
    ended = alert(accepted, ends_in=timedelta(seconds=-1))
    assert push(host, [ended])["status"] == 200


def test_alert_reaches_the_receiver_then_resolves(host: Any) -> None:
    test_id = uuid.uuid4().hex
    labels = {"alertname": "AgentmonExporterDown", "instance": "agent-1", "job": "agentmon",
              "severity": "critical", "test": test_id}
    assert push(host, [alert(labels)])["status"] == 200
    firing = wait_for_note(host, has_test_alert(test_id, "firing"), "firing notification")
    assert firing["notification"]["receiver"] == "webhook"
    assert firing["notification"]["externalURL"] == f"https://{HOST}/alertmanager"
    [sent] = [a for a in alerts_in(firing) if a["labels"].get("test") == test_id]
    assert sent["labels"] == labels
    assert sent["status"] == "firing"
    # Prometheus ends an alert by sending it with endsAt in the past.
    ended = alert(labels, ends_in=timedelta(seconds=-1))
    assert push(host, [ended])["status"] == 200
    resolved = wait_for_note(host, has_test_alert(test_id, "resolved"), "resolved notification")
    assert [a["status"] for a in alerts_in(resolved) if a["labels"].get("test") == test_id] == [
        "resolved"]


def test_critical_alert_mutes_warnings_of_its_instance(host: Any) -> None:
    test_id = uuid.uuid4().hex
    critical = {"alertname": "AgentmonDatabaseDown", "instance": "agent-2", "severity": "critical",
                "test": test_id}
    muted = {"alertname": "AgentmonRefreshStale", "instance": "agent-2", "severity": "warning",
             "test": test_id}
    other = {"alertname": "AgentmonRefreshStale", "instance": "agent-3", "severity": "warning",
             "test": test_id}
    # The critical alert first, as it happens (the database goes down, then the refresh goes
    # stale). The warnings start now: an alert that started more than group_wait ago is
    # dispatched at once, racing the inhibitor, which learns of the critical alert on its own.
    assert push(host, [alert(critical)])["status"] == 200
    filtered = f"/api/v2/alerts?filter=test%3D%22{test_id}%22"
    wait_for(lambda: json.loads(call(host, "GET", filtered)["body"]), "the critical alert listed")
    warnings = [alert(muted, started=timedelta(0)), alert(other, started=timedelta(0))]
    assert push(host, warnings)["status"] == 200

    def states() -> dict[tuple[str, str], Any]:
        listed = json.loads(call(host, "GET", filtered)["body"])
        return {(a["labels"]["alertname"], a["labels"]["instance"]): a["status"] for a in listed}

    def inhibited() -> dict[tuple[str, str], Any] | None:
        state = states()
        muted_key = ("AgentmonRefreshStale", "agent-2")
        return state if len(state) == 3 and state.get(muted_key, {}).get("inhibitedBy") else None

    state = wait_for(inhibited, "the warning of agent-2 inhibited")
    assert state[("AgentmonRefreshStale", "agent-2")]["state"] == "suppressed"
    assert state[("AgentmonRefreshStale", "agent-2")]["inhibitedBy"]
    assert state[("AgentmonDatabaseDown", "agent-2")]["state"] == "active"
    assert state[("AgentmonRefreshStale", "agent-3")]["state"] == "active"
    # Both active alerts reach the receiver; the muted one does not, even after a group interval
    # more: the later event is a sentinel warning, posted once those two arrived, firing and
    # then resolved (its resolution waits for its group's next interval).
    expected = {("AgentmonDatabaseDown", "agent-2"), ("AgentmonRefreshStale", "agent-3")}
    wait_for(lambda: expected <= sent_alerts(host, test_id), f"{expected} at the receiver")
    sentinel = {"alertname": "AgentmonRefreshStale", "instance": "agent-4",
                "severity": "warning", "test": test_id}
    assert push(host, [alert(sentinel, started=timedelta(0))])["status"] == 200
    fired = wait_for_note(host, lambda n: has_test_alert(test_id, "firing")(n) and any(
        a["labels"].get("instance") == "agent-4" for a in alerts_in(n)), "the sentinel")
    ended = alert(sentinel, ends_in=timedelta(seconds=-1))  # startsAt must precede endsAt
    assert push(host, [ended])["status"] == 200
    wait_for_note(host, lambda n: has_test_alert(test_id, "resolved")(n) and any(
        a["labels"].get("instance") == "agent-4" for a in alerts_in(n)), "the sentinel resolved",
        since=fired["received"])
    assert sent_alerts(host, test_id) == expected | {("AgentmonRefreshStale", "agent-4")}


def test_prometheus_evaluates_every_agentmon_rule(host: Any) -> None:
    def rule_groups() -> dict[str, Any]:
        answer = http(host, "GET", f"{PROMETHEUS_URL}/api/v1/rules", PROMETHEUS_ADMIN)
        assert answer["status"] == 200, answer
        return {g["name"]: g for g in json.loads(answer["body"])["data"]["groups"]}

    shipped = {g["name"]: len(g["rules"]) for path in RULE_FILES
               for g in yaml.safe_load(path.read_text())["groups"]}
    groups = rule_groups()
    assert {name: len(g["rules"]) for name, g in groups.items()} == shipped

    def unhealthy() -> list[tuple[str, str, str | None]]:
        return [(r["name"], r["health"], r.get("lastError")) for g in rule_groups().values()
                for r in g["rules"] if r["health"] != "ok"]

    wait_for(lambda: not unhealthy(), "every rule healthy", every=1)
