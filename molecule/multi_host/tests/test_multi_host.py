"""Verify the monitoring path over the network, as users and Prometheus see it: every request
goes from one test host to another through nginx, with the internal CA, as a client would. Then
the alert path end to end (an exporter stopped on one agent host reaches the webhook receiver
through Prometheus and Alertmanager, firing then resolved) and the files Grafana is given."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from verify_helpers import http, ssh_host, wait_for

AGENT_1, AGENT_2 = "agentmon-mh-agent-1", "agentmon-mh-agent-2"
MONITOR, RECEIVER = "agentmon-mh-monitor", "agentmon-mh-receiver"
testinfra_hosts = [ssh_host(name) for name in (AGENT_1, AGENT_2, MONITOR, RECEIVER)]

ADMIN = "admin:molecule-admin-password"
ADMIN_NEXT = "admin-next:molecule-admin-next-password"
SCRAPER = "prometheus:molecule-scrape-password"
READER = "reader:molecule-reader-password"
AM_ADMIN = "admin:molecule-am-admin-password"
AM_PROMETHEUS = "prometheus:molecule-am-prometheus-password"
GRAFANA_DATASOURCE = "grafana:molecule-grafana-datasource-password"
WRONG = ["", "admin:wrong-password", "nobody:molecule-admin-password", "prometheus:wrong"]
CA = "/etc/ssl/agentmon/ca.crt"
PROMETHEUS = f"https://{MONITOR}/prometheus"
ALERTMANAGER = f"https://{MONITOR}/alertmanager"
RECEIVED = "/var/lib/alert-receiver/notifications.jsonl"
# The rules' `for:` in this scenario (agentmon_test_alert_for).
ALERT_FOR = 4.0
# Watchdog: repeat_interval 10 s + group_interval 2 s in this scenario, plus slack for the load
# of CI on 2 cores (Prometheus resends a firing alert once a minute: a notification lost while
# Alertmanager was being found is made good within 60 s). A broken path still shows: no
# Watchdog for a whole minute.
WATCHDOG_MAX_GAP = 60.0
DASHBOARDS = Path(__file__).resolve().parents[3] / "roles" / "grafana" / "files" / "dashboards"
RULES = Path(__file__).resolve().parents[3] / "roles" / "prometheus" / "files" / "rules"

# Probes run inside a test host (HTTP goes through verify_helpers.http): a TLS handshake at
# one protocol version, a TCP connect. Answers one JSON line.
CLIENT = r"""
import json, socket, ssl, sys, warnings
warnings.simplefilter("ignore")
mode, args = sys.argv[1], sys.argv[2:]
CA = "/etc/ssl/agentmon/ca.crt"
if mode == "tls":
    host, port, version = args
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CA)
    # Let the client offer old versions, so that a refusal can only come from the server.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                print(json.dumps({"ok": True, "version": tls.version(), "cipher": tls.cipher()[0]}))
    except (ssl.SSLError, OSError) as error:
        print(json.dumps({"ok": False, "error": str(error)}))
elif mode == "port":
    host, port = args
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(json.dumps("open"))
    except ConnectionRefusedError:
        print(json.dumps("refused"))
    except OSError as error:
        print(json.dumps(str(error)))
"""


def on(name: str) -> Any:
    return testinfra.get_host(ssh_host(name))


def client(origin: str, *args: str) -> Any:
    out = on(origin).check_output("python3 -c %s " + " ".join(["%s"] * len(args)), CLIENT, *args)
    return json.loads(out)


def get(url: str, auth: str = "", origin: str = AGENT_2) -> dict[str, Any]:
    """From `origin`, with the internal CA, not following redirects; auth is "user:password"."""
    user, _, password = auth.partition(":")
    return http(on(origin), url, basic=(user, password) if auth else None, ca=CA,
                follow_redirects=False, timeout=10)


def query(promql: str, base: str = PROMETHEUS, auth: str = ADMIN) -> list[dict[str, Any]]:
    from urllib.parse import quote

    answer = get(f"{base}/api/v1/query?query={quote(promql)}", auth)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])["data"]["result"]



# --- Prometheus scrapes both agent hosts over https -----------------------------------------


def test_both_agent_targets_are_up_over_https() -> None:
    def targets() -> list[dict[str, Any]]:
        answer = get(f"{PROMETHEUS}/api/v1/targets?state=active", ADMIN)
        assert answer["status"] == 200, answer
        found = [t for t in json.loads(answer["body"])["data"]["activeTargets"]
                 if t["labels"]["job"] == "agentmon"]
        return found if len(found) == 2 and all(t["health"] == "up" for t in found) else []

    up = wait_for(targets, "both agent targets up")
    assert up, get(f"{PROMETHEUS}/api/v1/targets", ADMIN)["body"]
    assert sorted(t["scrapeUrl"] for t in up) == [f"https://{AGENT_1}:443/metrics",
                                                  f"https://{AGENT_2}:443/metrics"]
    assert sorted(t["labels"]["instance"] for t in up) == [AGENT_1, AGENT_2]


def test_prometheus_scrapes_itself_with_credentials() -> None:
    result = wait_for(lambda: query('up{job="prometheus"} == 1'), "Prometheus' own target up")
    assert len(result) == 1


def test_scrape_config_verifies_certificates_and_hides_the_password() -> None:
    monitor = on(MONITOR)
    with monitor.sudo():
        config = monitor.file("/etc/prometheus/prometheus.yml").content_string
    assert "insecure_skip_verify: false" in config
    assert "insecure_skip_verify: true" not in config
    assert f"ca_file: {CA}" in config
    assert "molecule-scrape-password" not in config
    password_file = monitor.file("/etc/prometheus/secrets/agentmon_scrape_password")
    assert (password_file.user, password_file.group, password_file.mode) == ("prometheus",
                                                                             "prometheus", 0o400)
    secrets_dir = monitor.file("/etc/prometheus/secrets")
    assert secrets_dir.mode & 0o007 == 0


def test_web_config_holds_bcrypt_hashes_only() -> None:
    monitor = on(MONITOR)
    with monitor.sudo():
        web = monitor.file("/etc/prometheus/web-config.yml").content_string
    assert "molecule-admin" not in web
    assert "molecule-grafana" not in web
    # admin, admin-next and grafana (the datasource's user).
    assert web.count("$2b$10$") == 3


def test_prometheus_flags() -> None:
    args = on(MONITOR).file("/etc/default/prometheus").content_string
    assert "--web.listen-address=127.0.0.1:9090" in args
    assert f"--web.external-url=https://{MONITOR}/prometheus/" in args
    assert "--web.config.file=/etc/prometheus/web-config.yml" in args
    assert on(MONITOR).service("prometheus").is_running
    assert not on(MONITOR).package("prometheus-node-exporter").is_installed


# --- a hook event travels to Prometheus and to the remote-write receiver -------------------


@pytest.fixture(scope="module")
def hook_event() -> dict[str, Any]:
    """Write one finished tool use on agent 1 through the installed `agentmon hook` command,
    as Claude Code runs it for alice; return when it was written and the tool's name."""
    tool = f"mcp__verify__mh{uuid.uuid4().hex[:8]}"
    promql = f'agentmon_tool_uses_total{{tool="{tool}",status="completed"}}'
    assert query(promql) == []
    scrapes_before = agent_1_scrapes()
    agent = on(AGENT_1)
    doc = json.loads(agent.file("/home/alice/.claude/settings.json").content_string)

    def command(event: str) -> str:
        commands = [h["command"] for entry in doc["hooks"][event] for h in entry["hooks"]
                    if "agentmon" in h.get("command", "")]
        assert len(commands) == 1, commands
        return commands[0]

    base = {"session_id": f"mh-{uuid.uuid4().hex[:8]}", "cwd": "/home/alice",
            "transcript_path": "/home/alice/.claude/t.jsonl", "permission_mode": "default"}
    events = [("PreToolUse", {"tool_name": tool, "tool_input": {"q": 1}, "tool_use_id": "u1"}),
              ("PostToolUse", {"tool_name": tool, "tool_input": {"q": 1}, "tool_use_id": "u1",
                               "tool_response": {"ok": True}})]
    for name, fields in events:
        result = agent.run("echo %s | runuser -u alice -- sh -c %s",
                           json.dumps({**base, "hook_event_name": name, **fields}), command(name))
        assert result.rc == 0, result.stderr
        assert result.stderr == "", result.stderr
    return {"tool": tool, "promql": promql, "written": time.monotonic(),
            "scrapes_before": scrapes_before}


def agent_1_scrapes() -> int:
    """How many times Prometheus has scraped agent 1's exporter in the last hour."""
    result = query(f'count_over_time(up{{job="agentmon",instance="{AGENT_1}"}}[1h])')
    return int(float(result[0]["value"][1])) if result else 0


def test_hook_event_reaches_prometheus_within_two_scrapes(hook_event: dict[str, Any]) -> None:
    """Counted in scrapes, not seconds: the event is in the second scrape after it was written
    at the latest (one more may fall between counting and writing). The seconds are printed."""
    def visible() -> tuple[int, list[dict[str, Any]]] | None:
        scrapes = agent_1_scrapes()  # first: a scrape between the two queries only lowers it
        result = query(hook_event["promql"])
        return (scrapes, result) if result else None

    seen = wait_for(visible, "the hook event in Prometheus", every=0.2)
    elapsed = time.monotonic() - hook_event["written"]
    print(f"hook event visible in Prometheus after {elapsed:.1f} s")
    assert seen, f"not visible after {elapsed:.1f} s"
    scrapes, result = seen
    assert scrapes - hook_event["scrapes_before"] <= 3, (scrapes, hook_event["scrapes_before"])
    assert len(result) == 1
    assert result[0]["metric"]["instance"] == AGENT_1
    assert result[0]["metric"]["job"] == "agentmon"
    assert float(result[0]["value"][1]) == 1.0


def test_hook_event_arrives_at_the_remote_write_receiver(hook_event: dict[str, Any]) -> None:
    base = f"https://{RECEIVER}/prometheus"
    result = wait_for(lambda: query(hook_event["promql"], base, READER),
                      "the hook event at the receiver")
    assert result, "the receiver never got the series"
    assert len(result) == 1
    labels = result[0]["metric"]
    assert labels["cluster"] == "molecule"
    assert labels["replica"] == MONITOR
    assert labels["instance"] == AGENT_1
    assert float(result[0]["value"][1]) == 1.0


# --- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", [AGENT_1, MONITOR, RECEIVER])
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_are_refused(server: str, version: str) -> None:
    answer = client(AGENT_2, "tls", server, "443", version)
    assert not answer["ok"]
    # The server's alert, not a client-side refusal.
    assert "alert protocol version" in answer["error"].lower(), answer


@pytest.mark.parametrize("server", [AGENT_1, MONITOR, RECEIVER])
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_12_and_13_are_accepted(server: str, version: str) -> None:
    answer = client(AGENT_2, "tls", server, "443", version)
    assert answer["ok"], answer
    assert answer["version"] == version.replace("_", ".")
    if version == "TLSv1_2":
        # One of the profile's ECDHE AEAD suites.
        assert answer["cipher"].startswith("ECDHE-"), answer
        assert "GCM" in answer["cipher"] or "CHACHA20" in answer["cipher"], answer


def test_security_headers_and_no_version() -> None:
    answer = get(f"{PROMETHEUS}/-/ready", ADMIN)
    assert answer["status"] == 200
    headers = answer["headers"]
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["server"] == "nginx"


# --- authentication ---------------------------------------------------------------------------

PROTECTED = [
    f"{PROMETHEUS}/graph",
    f"{PROMETHEUS}/api/v1/query?query=up",
    f"{PROMETHEUS}/api/v1/targets",
    f"{PROMETHEUS}/metrics",
    f"{PROMETHEUS}/-/ready",
    f"https://{AGENT_1}/metrics",
    f"https://{AGENT_2}/metrics",
    f"https://{RECEIVER}/prometheus/api/v1/query?query=up",
    f"https://{RECEIVER}/prometheus/api/v1/write",
    f"{ALERTMANAGER}/-/ready",
    f"{ALERTMANAGER}/api/v2/status",
    f"{ALERTMANAGER}/api/v2/alerts",
    f"{ALERTMANAGER}/api/v2/silences",
]


@pytest.mark.parametrize("url", PROTECTED)
@pytest.mark.parametrize("auth", WRONG)
def test_protected_paths_answer_401(url: str, auth: str) -> None:
    answer = get(url, auth, origin=MONITOR if AGENT_2 in url else AGENT_2)
    assert answer["status"] == 401, (url, auth, answer["status"])


@pytest.mark.parametrize(("url", "auth"), [
    (f"{PROMETHEUS}/-/ready", ADMIN),
    (f"{PROMETHEUS}/-/ready", ADMIN_NEXT),
    (f"https://{AGENT_1}/metrics", SCRAPER),
    (f"https://{RECEIVER}/prometheus/-/ready", READER),
    (f"{ALERTMANAGER}/-/ready", AM_ADMIN),
    (f"{ALERTMANAGER}/api/v2/status", AM_ADMIN),
    (f"{ALERTMANAGER}/api/v2/alerts", AM_PROMETHEUS),
])
def test_right_credentials_are_let_in(url: str, auth: str) -> None:
    assert get(url, auth)["status"] == 200


def test_nginx_never_logs_credentials() -> None:
    get(f"{PROMETHEUS}/-/ready", ADMIN)
    get(f"{PROMETHEUS}/-/ready", "admin:wrong-password")
    monitor = on(MONITOR)
    with monitor.sudo():
        log = monitor.file("/var/log/nginx/access.log").content_string
    assert "/prometheus/-/ready" in log
    for secret in ("molecule-admin-password", "wrong-password",
                   base64.b64encode(ADMIN.encode()).decode(), "admin"):
        assert secret not in log


# --- redirect and open ports -----------------------------------------------------------------


def test_http_redirects_to_https() -> None:
    answer = get(f"http://{MONITOR}/prometheus/graph?x=1")
    assert answer["status"] == 308
    assert answer["headers"]["location"] == f"https://{MONITOR}/prometheus/graph?x=1"


@pytest.mark.parametrize(("origin", "server", "port", "state"), [
    (AGENT_2, AGENT_1, 443, "open"),
    (AGENT_2, AGENT_1, 9477, "refused"),
    (AGENT_2, AGENT_1, 80, "refused"),
    (AGENT_2, MONITOR, 443, "open"),
    (AGENT_2, MONITOR, 80, "open"),
    (AGENT_2, MONITOR, 9090, "refused"),
    (AGENT_2, MONITOR, 9093, "refused"),
    (AGENT_2, MONITOR, 9094, "refused"),
    (AGENT_2, MONITOR, 9000, "refused"),
    (AGENT_2, RECEIVER, 9090, "refused"),
    (MONITOR, AGENT_2, 9477, "refused"),
])
def test_only_nginx_answers_from_another_host(origin: str, server: str, port: int,
                                              state: str) -> None:
    assert client(origin, "port", server, str(port)) == state


@pytest.mark.parametrize("name", [AGENT_1, AGENT_2, MONITOR, RECEIVER])
def test_only_nginx_listens_off_loopback(name: str) -> None:
    host = on(name)
    listeners = host.check_output("ss -Hltnp").splitlines()
    public = [line for line in listeners
              if not any(f" {lo}:" in line for lo in ("127.0.0.1", "[::1]", "127.0.0.53"))]
    assert public, listeners
    for line in public:
        assert '"nginx"' in line, line
        assert line.split()[3].rsplit(":", 1)[1] in ("80", "443"), line


def test_keys_are_private() -> None:
    for name in (AGENT_1, MONITOR):
        key = on(name).file("/etc/ssl/agentmon/server.key")
        assert (key.user, key.mode) == ("root", 0o600)


# --- Alertmanager behind nginx; Prometheus sends it alerts ------------------------------------


def test_alertmanager_through_nginx() -> None:
    answer = get(f"{ALERTMANAGER}/api/v2/status", AM_ADMIN)
    assert answer["status"] == 200, answer
    status = json.loads(answer["body"])
    assert status["cluster"]["status"] == "disabled"
    assert "http://127.0.0.1:9000/hooks/alertmanager" in status["config"]["original"]
    # The same security headers as every other location.
    assert answer["headers"]["strict-transport-security"] == "max-age=63072000"
    assert answer["headers"]["server"] == "nginx"


def test_alertmanager_listens_on_loopback_only() -> None:
    monitor = on(MONITOR)
    assert monitor.service("prometheus-alertmanager").is_running
    assert monitor.service("prometheus-alertmanager").is_enabled
    listening = monitor.check_output("ss -Hltn")
    assert "127.0.0.1:9093 " in listening
    assert ":9094 " not in listening


def test_prometheus_alerting_block_uses_a_private_password_file() -> None:
    monitor = on(MONITOR)
    with monitor.sudo():
        config = yaml.safe_load(monitor.file("/etc/prometheus/prometheus.yml").content_string)
    assert config["alerting"]["alertmanagers"] == [{
        "path_prefix": "/alertmanager",
        "basic_auth": {"username": "prometheus",
                       "password_file": "/etc/prometheus/secrets/alertmanager_password"},
        "static_configs": [{"targets": ["127.0.0.1:9093"]}],
    }]
    secret = monitor.file("/etc/prometheus/secrets/alertmanager_password")
    assert (secret.user, secret.group, secret.mode) == ("prometheus", "prometheus", 0o400)
    assert secret.content_string == AM_PROMETHEUS.split(":", 1)[1]


def test_prometheus_discovered_the_alertmanager() -> None:
    def active() -> list[str]:
        answer = get(f"{PROMETHEUS}/api/v1/alertmanagers", ADMIN)
        assert answer["status"] == 200, answer
        return [a["url"] for a in json.loads(answer["body"])["data"]["activeAlertmanagers"]]

    assert wait_for(active, "Prometheus' Alertmanager") == ["http://127.0.0.1:9093/alertmanager/api/v2/alerts"]
    # Prometheus sends (the Watchdog always fires) and Alertmanager accepts: no error lately.
    sent = wait_for(lambda: query('prometheus_notifications_sent_total{job="prometheus"} > 0'),
                    "a notification sent by Prometheus")
    assert sent, "Prometheus sent no notification"
    errors = query('increase(prometheus_notifications_errors_total{job="prometheus"}[1m])')
    assert errors, "no error counter"
    assert all(float(e["value"][1]) == 0.0 for e in errors), errors


def test_prometheus_evaluates_every_agentmon_rule() -> None:
    def groups() -> dict[str, Any]:
        answer = get(f"{PROMETHEUS}/api/v1/rules", ADMIN)
        assert answer["status"] == 200, answer
        return {g["name"]: g for g in json.loads(answer["body"])["data"]["groups"]}

    def healthy() -> dict[str, Any]:
        found = groups()
        rules = [r for g in found.values() for r in g["rules"]]
        return found if rules and all(r["health"] == "ok" for r in rules) else {}

    found = wait_for(healthy, "every rule healthy", every=1)
    assert found, [(r["name"], r["health"], r.get("lastError"))
                   for g in groups().values() for r in g["rules"]]
    assert set(found) == {"agentmon.recording", "agentmon.usage", "agentmon.alerts"}
    durations = {r["name"]: r["duration"] for r in found["agentmon.alerts"]["rules"]}
    shipped = {r["alert"]: "for" in r for path in RULES.glob("*.yml")
               for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]
               if "alert" in r}
    assert sorted(durations) == sorted(shipped)
    # Every shipped `for:` shortened to the test's; alerts shipped without one (the Watchdog,
    # a count of lost events) fire from the first evaluation.
    assert durations == {n: ALERT_FOR if has_for else 0 for n, has_for in shipped.items()}
    assert not shipped["AgentmonWatchdog"]


# --- the alert path, end to end ---------------------------------------------------------------

Note = dict[str, Any]


def received() -> list[Note]:
    """Every notification the receiver on the monitoring host got, with "received" (Unix time)."""
    monitor = on(MONITOR)
    with monitor.sudo():
        receiver = monitor.file(RECEIVED)
        text = receiver.content_string if receiver.exists else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def alerts_in(note: Note) -> list[dict[str, Any]]:
    return note["notification"].get("alerts", [])


def wait_for_note(matches: Callable[[Note], bool], what: str, since: float) -> Note:
    """The first notification that arrived after `since` and matches."""
    return wait_for(lambda: next((note for note in received()
                                  if note["received"] >= since and matches(note)), None),
                    what, every=1)


def exporter_down(status: str) -> Callable[[Note], bool]:
    return lambda note: note["notification"].get("status") == status and any(
        a["labels"].get("alertname") == "AgentmonExporterDown" and a["status"] == status
        for a in alerts_in(note))


def is_watchdog(note: Note) -> bool:
    return any(a["labels"].get("alertname") == "AgentmonWatchdog" for a in alerts_in(note))


def test_stopped_exporter_alerts_the_receiver_end_to_end() -> None:
    """The exporter on agent 1 stopped: Prometheus (scraping it through nginx, evaluating
    agentmon's rules) sends AgentmonExporterDown to Alertmanager with credentials, which
    notifies the webhook receiver with agent 1's labels; started again: the resolved
    notification follows. The Watchdog keeps arriving throughout."""
    def both_up() -> list[Any]:
        up = query('up{job="agentmon"} == 1')
        return up if len(up) == 2 else []

    assert wait_for(both_up, "Prometheus to see both exporters up", every=1)
    begin = time.time()
    wait_for_note(is_watchdog, "Watchdog notification", since=begin - WATCHDOG_MAX_GAP)

    agent = on(AGENT_1)
    stopped = time.time()
    agent.check_output("systemctl stop agentmon-exporter.service")
    try:
        firing = wait_for_note(exporter_down("firing"), "AgentmonExporterDown firing",
                               since=stopped)
    finally:
        agent.check_output("systemctl start agentmon-exporter.service")
    started = time.time()
    resolved = wait_for_note(exporter_down("resolved"), "AgentmonExporterDown resolved",
                             since=started)

    expected = {"alertname": "AgentmonExporterDown", "instance": AGENT_1, "job": "agentmon",
                "severity": "critical", "cluster": "molecule", "replica": MONITOR}
    [down] = [a for a in alerts_in(firing) if a["labels"]["alertname"] == "AgentmonExporterDown"]
    assert down["labels"] == expected
    assert down["annotations"]["summary"] == "An agentmon exporter cannot be scraped."
    assert down["annotations"]["runbook_url"] == "docs/runbook.md#agentmonexporterdown"
    assert AGENT_1 in down["annotations"]["description"]
    assert firing["notification"]["receiver"] == "webhook"
    assert firing["notification"]["externalURL"] == ALERTMANAGER
    # Only the stopped host's exporter is reported.
    assert all(a["labels"].get("instance") != AGENT_2 for n in received()
               if n["received"] >= stopped for a in alerts_in(n)
               if a["labels"].get("alertname") == "AgentmonExporterDown")
    [back] = [a for a in alerts_in(resolved) if a["labels"]["alertname"] == "AgentmonExporterDown"]
    assert back["labels"] == expected
    assert back["status"] == "resolved"

    # The Watchdog arrived throughout: no gap longer than its repeat interval allows.
    end = time.time()
    watchdog = sorted(n["received"] for n in received()
                      if is_watchdog(n) and n["received"] >= begin - WATCHDOG_MAX_GAP)
    gaps = [b - a for a, b in zip([begin - WATCHDOG_MAX_GAP, *watchdog], [*watchdog, end],
                                  strict=True)]
    assert max(gaps) <= WATCHDOG_MAX_GAP, gaps
    assert any(stopped <= t <= resolved["received"] for t in watchdog)
    [dog] = [a for a in alerts_in(next(n for n in received() if is_watchdog(n)))
             if a["labels"]["alertname"] == "AgentmonWatchdog"]
    assert dog["labels"] == {"alertname": "AgentmonWatchdog", "severity": "none",
                             "cluster": "molecule", "replica": MONITOR}

    print(f"\nalert end to end: exporter on {AGENT_1} stopped at "
          f"{datetime.fromtimestamp(stopped, UTC):%H:%M:%S}, AgentmonExporterDown firing at "
          f"the receiver after {firing['received'] - stopped:.1f} s with {down['labels']} "
          f"(for: 4s, scrape/evaluation every 3 s); started at "
          f"{datetime.fromtimestamp(started, UTC):%H:%M:%S}, resolved at the receiver after "
          f"{resolved['received'] - started:.1f} s; {len(watchdog)} Watchdog notifications, "
          f"largest gap {max(gaps):.1f} s")


# --- what Grafana is given (Grafana itself cannot be installed here) --------------------------


def test_grafana_server_is_not_installed_here() -> None:
    monitor = on(MONITOR)
    # grafana_manage_server: false: the files only, never a stand-in server.
    assert not monitor.package("grafana").is_installed
    assert "127.0.0.1:3000 " not in monitor.check_output("ss -Hltn")


@pytest.mark.parametrize(("path", "mode"), [
    ("/etc/grafana/grafana.ini", 0o640),
    ("/etc/grafana/provisioning/datasources/agentmon.yml", 0o640),
    ("/etc/grafana/provisioning/dashboards/agentmon.yml", 0o644),
])
def test_grafana_files_owner_and_mode(path: str, mode: int) -> None:
    file = on(MONITOR).file(path)
    assert file.is_file
    assert (file.user, file.group, file.mode) == ("root", "grafana", mode)


def test_grafana_ini_listens_on_loopback_under_grafana() -> None:
    monitor = on(MONITOR)
    with monitor.sudo():
        ini = monitor.file("/etc/grafana/grafana.ini").content_string
    for line in ("http_addr = 127.0.0.1", "http_port = 3000",
                 f"root_url = https://{MONITOR}/grafana/", "serve_from_sub_path = true",
                 "allow_sign_up = false", "provisioning = /etc/grafana/provisioning"):
        assert line in ini.splitlines(), line
    assert "[auth.anonymous]\nenabled = false" in ini


def test_grafana_datasource_reaches_prometheus_with_its_credentials() -> None:
    monitor = on(MONITOR)
    with monitor.sudo():
        provisioned = yaml.safe_load(
            monitor.file("/etc/grafana/provisioning/datasources/agentmon.yml").content_string)
    [source] = provisioned["datasources"]
    assert source["uid"] == "agentmon-prometheus"
    assert source["type"] == "prometheus"
    assert source["url"] == "http://127.0.0.1:9090/prometheus"
    assert source["basicAuth"] is True
    user, password = GRAFANA_DATASOURCE.split(":", 1)
    assert source["basicAuthUser"] == user
    # The password only in secureJsonData (Grafana encrypts it), never in jsonData.
    assert source["secureJsonData"] == {"basicAuthPassword": password}
    assert password not in json.dumps(source["jsonData"])
    # What Grafana would do with it: query Prometheus on loopback as that user.
    url = source["url"] + "/api/v1/query?query=up"
    answer = get(url, f"{source['basicAuthUser']}:{password}", origin=MONITOR)
    assert answer["status"] == 200, answer
    assert get(url, f"{user}:wrong", origin=MONITOR)["status"] == 401


def test_grafana_dashboards_provider_and_dashboards() -> None:
    monitor = on(MONITOR)
    provider = yaml.safe_load(
        monitor.file("/etc/grafana/provisioning/dashboards/agentmon.yml").content_string)
    [entry] = provider["providers"]
    assert entry["folder"] == "agentmon"
    assert entry["allowUiUpdates"] is False
    folder = entry["options"]["path"]
    shipped = sorted(DASHBOARDS.glob("*.json"))
    assert shipped  # the folder's files, whatever their number, each on the host below
    on_host = sorted(monitor.check_output("ls -A %s", folder).split())
    assert on_host == [p.name for p in shipped]
    for path in shipped:
        file = monitor.file(f"{folder}/{path.name}")
        assert (file.user, file.group, file.mode) == ("root", "grafana", 0o644)
        assert file.sha256sum == hashlib.sha256(path.read_bytes()).hexdigest(), path.name
