"""Verify the monitoring path over the network, as users and Prometheus see it: every request
goes from one test host to another through nginx, with the internal CA, as a client would.
Both Prometheus of the pair scrape both agent hosts and remote write to VictoriaMetrics; a hook
event reaches both and the long-term store once; TLS, credentials and open ports on every host;
Alertmanager behind nginx and the alert gates; the files Grafana is given, and every dashboard
query on both of its datasources. test_pair.py then stops things (it runs after this file)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import time
import uuid
from typing import Any

import pytest
import yaml
from scenario import (
    ADMIN,
    ADMIN_NEXT,
    AGENT,
    AGENTS,
    ALL,
    AM_ADMIN,
    AM_PUSH,
    CA,
    GRAFANA_DATASOURCE,
    LONGTERM_GRAFANA,
    LONGTERM_WRITER,
    MON1,
    MON2,
    MONITORS,
    PROJECT,
    READER,
    SCRAPER,
    VM,
    VM_NGINX,
    WRONG,
    alertmanager,
    client,
    get,
    on,
    podman,
    prometheus,
    query,
)
from verify_helpers import ssh_host, wait_for

testinfra_hosts = [ssh_host(name) for name in ALL]

DASHBOARDS = PROJECT / "roles" / "grafana" / "files" / "dashboards"
RULES = PROJECT / "roles" / "prometheus" / "files" / "rules"
# The rules' `for:` in this scenario (agentmon_test_alert_for).
ALERT_FOR = 4.0
# $__rate_interval. Over the sessions just played: a ratio of two zero rates is NaN, which
# Prometheus returns as a series and VictoriaMetrics (MetricsQL) leaves out.
RATE_INTERVAL = "5m"


# --- both Prometheus scrape both agent hosts over https --------------------------------------


@pytest.mark.parametrize("monitor", MONITORS)
def test_both_agent_targets_are_up_over_https(monitor: str) -> None:
    def targets() -> list[dict[str, Any]]:
        answer = get(f"{prometheus(monitor)}/api/v1/targets?state=active", ADMIN)
        assert answer["status"] == 200, answer
        found = [t for t in json.loads(answer["body"])["data"]["activeTargets"]
                 if t["labels"]["job"] == "agentmon"]
        return found if len(found) == 2 and all(t["health"] == "up" for t in found) else []

    up = wait_for(targets, f"both agent targets up on {monitor}")
    assert sorted(t["scrapeUrl"] for t in up) == sorted(f"https://{a}:443/metrics" for a in AGENTS)
    assert sorted(t["labels"]["instance"] for t in up) == sorted(AGENTS)


@pytest.mark.parametrize("monitor", MONITORS)
def test_prometheus_scrapes_itself_with_credentials(monitor: str) -> None:
    result = wait_for(lambda: query('up{job="prometheus"} == 1', prometheus(monitor)),
                      "Prometheus' own target up")
    assert len(result) == 1


def test_the_replicas_differ_only_by_their_replica_label_and_peers() -> None:
    """Same scrape config, rules and remote write on both; the external label replica names
    each; each sends alerts to its own Alertmanager and the other's."""
    configs = {}
    for monitor in MONITORS:
        host = on(monitor)
        with host.sudo():
            text = host.file("/etc/prometheus/prometheus.yml").content_string
        configs[monitor] = yaml.safe_load(text)
    one, two = configs[MON1], configs[MON2]
    for key in ("scrape_configs", "rule_files", "remote_write"):
        assert one[key] == two[key], key
    for monitor, config in configs.items():
        assert config["global"]["external_labels"] == {"cluster": "molecule", "replica": monitor}
        assert config["global"]["scrape_interval"] == "3s"
        other = MON2 if monitor == MON1 else MON1
        targets = [t for am in config["alerting"]["alertmanagers"]
                   for c in am["static_configs"] for t in c["targets"]]
        assert targets == ["127.0.0.1:9095", f"{other}:443"]


def test_scrape_config_verifies_certificates_and_hides_the_password() -> None:
    monitor = on(MON1)
    with monitor.sudo():
        config = monitor.file("/etc/prometheus/prometheus.yml").content_string
    assert "insecure_skip_verify: false" in config
    assert "insecure_skip_verify: true" not in config
    assert f"ca_file: {CA}" in config
    for secret in ("molecule-scrape-password", "molecule-longterm-prometheus-password",
                   "molecule-am-prometheus-password"):
        assert secret not in config
    for name in ("agentmon_scrape_password", "longterm_password", "alertmanager_password"):
        password_file = monitor.file(f"/etc/prometheus/secrets/{name}")
        assert (password_file.user, password_file.group, password_file.mode) == (
            "prometheus", "prometheus", 0o400), name
    secrets_dir = monitor.file("/etc/prometheus/secrets")
    assert secrets_dir.mode & 0o007 == 0


def test_web_config_holds_bcrypt_hashes_only() -> None:
    monitor = on(MON1)
    with monitor.sudo():
        web = monitor.file("/etc/prometheus/web-config.yml").content_string
    assert "molecule-admin" not in web
    assert "molecule-grafana" not in web
    # admin, admin-next and grafana (the datasource's user).
    assert web.count("$2b$10$") == 3


def test_prometheus_flags() -> None:
    args = on(MON1).file("/etc/default/prometheus").content_string
    assert "--web.listen-address=127.0.0.1:9090" in args
    assert f"--web.external-url=https://{MON1}/prometheus/" in args
    assert "--web.config.file=/etc/prometheus/web-config.yml" in args
    assert on(MON1).service("prometheus").is_running
    assert not on(MON1).package("prometheus-node-exporter").is_installed


# --- a hook event travels to both Prometheus and, once, to VictoriaMetrics -------------------


@pytest.fixture(scope="module")
def hook_event() -> dict[str, Any]:
    """Write one finished tool use on the agent host through the installed `agentmon hook`
    command, as Claude Code runs it for alice; return when it was written and the tool's name."""
    tool = f"mcp__verify__mh{uuid.uuid4().hex[:8]}"
    promql = f'agentmon_tool_uses_total{{tool="{tool}",status="completed"}}'
    assert query(promql, prometheus(MON1)) == []
    scrapes_before = agent_scrapes()
    agent = on(AGENT)
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


def agent_scrapes() -> int:
    """How many times monitor 1's Prometheus has scraped the agent host in the last hour."""
    result = query(f'count_over_time(up{{job="agentmon",instance="{AGENT}"}}[1h])',
                   prometheus(MON1))
    return int(float(result[0]["value"][1])) if result else 0


def test_hook_event_reaches_prometheus(hook_event: dict[str, Any]) -> None:
    """The event is in monitor 1's Prometheus, with its value. How long it took (seconds and
    scrapes, printed) is not asserted: on a loaded machine a refresh or a scrape runs late, and
    the hook-to-metric latency is the benchmarks' (docs/benchmarks.md)."""
    def visible() -> tuple[int, list[dict[str, Any]]] | None:
        scrapes = agent_scrapes()
        result = query(hook_event["promql"], prometheus(MON1))
        return (scrapes, result) if result else None

    scrapes, result = wait_for(visible, "the hook event in Prometheus", every=0.2)
    elapsed = time.monotonic() - hook_event["written"]
    print(f"hook event visible in Prometheus after {elapsed:.1f} s, "
          f"{scrapes - hook_event['scrapes_before']} scrapes of the agent host")
    assert len(result) == 1
    assert result[0]["metric"]["instance"] == AGENT
    assert result[0]["metric"]["job"] == "agentmon"
    assert float(result[0]["value"][1]) == 1.0
    # The other replica has it too.
    other = wait_for(lambda: query(hook_event["promql"], prometheus(MON2)), "it on monitor 2")
    assert float(other[0]["value"][1]) == 1.0


def test_hook_event_reaches_victoriametrics_once(hook_event: dict[str, Any]) -> None:
    """Both replicas remote write the series; VictoriaMetrics drops their replica label at
    ingestion, so it holds one series (not two) with the right value."""
    result = wait_for(lambda: query(hook_event["promql"], VM, READER),
                      "the hook event in VictoriaMetrics")
    elapsed = time.monotonic() - hook_event["written"]
    assert len(result) == 1, result
    labels = result[0]["metric"]
    assert labels == {"__name__": "agentmon_tool_uses_total", "agent": "main",
                      "cluster": "molecule", "instance": AGENT, "job": "agentmon",
                      "status": "completed", "tool": hook_event["tool"]}, labels
    assert float(result[0]["value"][1]) == 1.0
    print(f"\ndedup query: {hook_event['promql']} on VictoriaMetrics through nginx -> "
          f"{len(result)} series {labels} = {result[0]['value'][1]} "
          f"({elapsed:.1f} s after the hook ran; both replicas wrote it)")


def test_victoriametrics_keeps_one_sample_per_scrape_interval() -> None:
    """The pair writes every sample twice; -dedup.minScrapeInterval (the scrape interval) keeps
    one per interval: VictoriaMetrics holds as many samples of a series in a minute as one
    replica scraped, not the sum of both, once both replicas' remote write has sent past it."""
    selector = f'up{{job="agentmon",instance="{AGENT}"}}'

    def in_minute(base: str, auth: str, at: float) -> int:
        result = query(f"count_over_time({selector}[60s])", base, auth, at=at)
        return int(float(result[0]["value"][1])) if result else 0

    def full_minute() -> tuple[float, dict[str, int]] | None:
        at = time.time()
        got = {m: in_minute(prometheus(m), ADMIN, at) for m in MONITORS}
        # Both replicas scraped through the whole minute (19-21 scrapes at 3 s).
        return (at, got) if min(got.values()) >= 18 else None

    def sent_past(monitor: str, at: float) -> bool:
        result = query("prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                       prometheus(monitor))
        return bool(result) and min(float(r["value"][1]) for r in result) >= at

    at, got = wait_for(full_minute, "a full minute scraped by both replicas")
    wait_for(lambda: all(sent_past(m, at) for m in MONITORS),
             "both replicas' remote write to have sent past that minute")
    got["VictoriaMetrics"] = in_minute(VM, READER, at)
    single = max(got[MON1], got[MON2])
    print(f"\ndedup: samples of {selector} in one minute: VictoriaMetrics "
          f"{got['VictoriaMetrics']}, {MON1} {got[MON1]}, {MON2} {got[MON2]} "
          f"({got[MON1] + got[MON2]} written to VictoriaMetrics)")
    assert single - 1 <= got["VictoriaMetrics"] <= single + 1, got


# --- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ALL)
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_are_refused(server: str, version: str) -> None:
    origin = MON2 if server == AGENT else AGENT
    answer = client(origin, "tls", server, "443", version)
    assert not answer["ok"]
    # The server's alert, not a client-side refusal.
    assert "alert protocol version" in answer["error"].lower(), answer


@pytest.mark.parametrize("server", ALL)
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_12_and_13_are_accepted(server: str, version: str) -> None:
    origin = MON2 if server == AGENT else AGENT
    answer = client(origin, "tls", server, "443", version)
    assert answer["ok"], answer
    assert answer["version"] == version.replace("_", ".")
    if version == "TLSv1_2":
        # One of the profile's ECDHE AEAD suites.
        assert answer["cipher"].startswith("ECDHE-"), answer
        assert "GCM" in answer["cipher"] or "CHACHA20" in answer["cipher"], answer


def test_security_headers_and_no_version() -> None:
    answer = get(f"{prometheus(MON1)}/-/ready", ADMIN)
    assert answer["status"] == 200
    headers = answer["headers"]
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["server"] == "nginx"


# --- authentication ---------------------------------------------------------------------------

PROTECTED = [
    f"{prometheus(MON1)}/graph",
    f"{prometheus(MON1)}/api/v1/query?query=up",
    f"{prometheus(MON1)}/api/v1/targets",
    f"{prometheus(MON1)}/metrics",
    f"{prometheus(MON2)}/-/ready",
    f"https://{AGENT}/metrics",
    f"https://{MON1}/metrics",
    f"{VM}/api/v1/query?query=up",
    f"{VM}/api/v1/write",
    f"{VM}/vmui/",
    f"{alertmanager(MON1)}/-/ready",
    f"{alertmanager(MON1)}/api/v2/status",
    f"{alertmanager(MON2)}/api/v2/alerts",
    f"{alertmanager(MON1)}/api/v2/silences",
    f"https://{MON2}/alert-gate/api/v2/alerts",
]


@pytest.mark.parametrize("url", PROTECTED)
@pytest.mark.parametrize("auth", WRONG)
def test_protected_paths_answer_401(url: str, auth: str) -> None:
    method = "POST" if "/write" in url or "/alert-gate/" in url else None
    answer = get(url, auth, origin=MON2 if AGENT in url else AGENT, method=method)
    assert answer["status"] == 401, (url, auth, answer["status"])


@pytest.mark.parametrize(("url", "auth"), [
    (f"{prometheus(MON1)}/-/ready", ADMIN),
    (f"{prometheus(MON2)}/-/ready", ADMIN_NEXT),
    (f"https://{AGENT}/metrics", SCRAPER),
    (f"https://{MON1}/metrics", SCRAPER),
    (f"{VM}/api/v1/query?query=up", READER),
    (f"{VM}/api/v1/query?query=up", LONGTERM_GRAFANA),
    (f"{VM}/api/v1/label/instance/values", READER),
    (f"{alertmanager(MON1)}/-/ready", AM_ADMIN),
    (f"{alertmanager(MON2)}/api/v2/status", AM_ADMIN),
    (f"{alertmanager(MON1)}/api/v2/alerts", AM_ADMIN),
])
def test_right_credentials_are_let_in(url: str, auth: str) -> None:
    assert get(url, auth, origin=MON2 if AGENT in url else AGENT)["status"] == 200


@pytest.mark.parametrize(("url", "auth", "method", "status"), [
    # Prometheus' remote-write credential writes and nothing else; the readers only read.
    (f"{VM}/api/v1/query?query=up", LONGTERM_WRITER, "GET", 401),
    (f"{VM}/api/v1/write", READER, "POST", 401),
    (f"{VM}/api/v1/write", LONGTERM_WRITER, "GET", 403),
    # VictoriaMetrics' own credential is nginx's, not a door for people.
    (f"{VM}/api/v1/query?query=up", VM_NGINX, "GET", 401),
    # Import, export, delete, admin and debug endpoints are not published at all.
    (f"{VM}/api/v1/import", READER, "POST", 404),
    (f"{VM}/api/v1/import/prometheus", LONGTERM_WRITER, "POST", 404),
    (f"{VM}/api/v1/export?match[]=up", READER, "GET", 404),
    (f"{VM}/api/v1/admin/tsdb/delete_series?match[]=up", READER, "POST", 404),
    (f"{VM}/flags", READER, "GET", 404),
    (f"{VM}/metrics", READER, "GET", 404),
    (f"{VM}/snapshot/create", READER, "GET", 404),
    # Prometheus' alert credential may post alerts (test_pair.py) and nothing else.
    (f"https://{MON2}/alert-gate/api/v2/alerts", AM_PUSH, "GET", 403),
    (f"https://{MON2}/alert-gate/api/v2/silences", AM_PUSH, "POST", 404),
    (f"{alertmanager(MON2)}/api/v2/alerts", AM_PUSH, "GET", 401),
    (f"{alertmanager(MON2)}/api/v2/silences", AM_PUSH, "GET", 401),
])
def test_each_credential_opens_only_its_door(url: str, auth: str, method: str,
                                             status: int) -> None:
    body = "{}" if method == "POST" else None
    answer = get(url, auth, method=method, origin=MON1, form=body)
    assert answer["status"] == status, (url, auth, method, answer["status"], answer["body"][:200])


def test_victoriametrics_refuses_local_users_without_its_credential() -> None:
    """VictoriaMetrics listens on loopback, and another user of the long-term host (alice runs
    Claude Code there) gets 401 without its credential; the credential is in no command line."""
    agent = on(AGENT)
    local = "http://127.0.0.1:8428/victoriametrics/api/v1/query?query=up"
    assert get(local, origin=AGENT)["status"] == 401
    assert get(local, VM_NGINX, origin=AGENT)["status"] == 200
    pid = agent.check_output("systemctl show -p MainPID --value victoria-metrics")
    cmdline = agent.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert not [arg for arg in cmdline if "httpAuth" in arg or "molecule-" in arg], cmdline
    for flag in ("-envflag.enable", "-dedup.minScrapeInterval=3s",
                 "-httpListenAddr=127.0.0.1:8428", "-http.pathPrefix=/victoriametrics",
                 "-retentionPeriod=30d", "-relabelConfig=/etc/victoria-metrics/relabel.yml"):
        assert flag in cmdline, (flag, cmdline)
    env_file = agent.file("/etc/victoria-metrics/http-auth.env")
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    data = agent.file("/var/lib/victoria-metrics")
    assert (data.user, data.mode) == ("_victoria-metrics", 0o700)
    assert agent.run("runuser -u alice -- ls /var/lib/victoria-metrics").rc != 0


@pytest.mark.parametrize(("name", "unit", "user"), [
    (AGENT, "victoria-metrics.service", "_victoria-metrics"),
    (MON1, "prometheus-alertmanager.service", "alertmanager"),
])
def test_new_units_are_hardened(name: str, unit: str, user: str) -> None:
    """The long-term store and the clustered Alertmanager: systemd-analyze security exposure
    at most 2.0 (the default scenario measures the others), each under its own user."""
    host = on(name)
    out = host.check_output("systemd-analyze security --no-pager %s", unit)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert found, out[-400:]
    print(f"systemd-analyze security {unit} on {name}: {found.group(1)}")
    assert float(found.group(1)) <= 2.0, (unit, found.group(1))
    pid = host.check_output("systemctl show -P MainPID %s", unit)
    assert host.check_output("stat -c %%U /proc/%s", pid) == user


def test_nginx_never_logs_credentials() -> None:
    get(f"{prometheus(MON1)}/-/ready", ADMIN)
    get(f"{prometheus(MON1)}/-/ready", "admin:wrong-password")
    monitor = on(MON1)
    with monitor.sudo():
        log = monitor.file("/var/log/nginx/access.log").content_string
    assert "/prometheus/-/ready" in log
    for secret in ("molecule-admin-password", "wrong-password",
                   base64.b64encode(ADMIN.encode()).decode(), "admin"):
        assert secret not in log


# --- redirect and open ports -----------------------------------------------------------------


def test_http_redirects_to_https() -> None:
    answer = get(f"http://{MON1}/prometheus/graph?x=1")
    assert answer["status"] == 308
    assert answer["headers"]["location"] == f"https://{MON1}/prometheus/graph?x=1"


@pytest.mark.parametrize(("origin", "server", "port", "state"), [
    (MON2, AGENT, 443, "open"),
    (MON2, AGENT, 9477, "refused"),
    (MON2, AGENT, 80, "refused"),
    (MON2, AGENT, 8428, "refused"),
    (MON2, AGENT, 9000, "refused"),
    (AGENT, MON1, 443, "open"),
    (AGENT, MON1, 80, "open"),
    (AGENT, MON1, 9477, "refused"),
    (AGENT, MON1, 9090, "refused"),
    (AGENT, MON1, 9093, "refused"),
    (AGENT, MON1, 9095, "refused"),
    # The gossip port: open, and mutual TLS refuses anyone but a peer (test_pair.py).
    (AGENT, MON1, 9094, "open"),
    (AGENT, MON2, 9094, "open"),
])
def test_only_nginx_and_the_gossip_port_answer_from_another_host(origin: str, server: str,
                                                                 port: int, state: str) -> None:
    assert client(origin, "port", server, str(port)) == state


@pytest.mark.parametrize("name", ALL)
def test_only_nginx_and_alertmanager_gossip_listen_off_loopback(name: str) -> None:
    host = on(name)
    listeners = host.check_output("ss -Hltnp").splitlines()
    public = [line for line in listeners
              if not any(f" {lo}:" in line for lo in ("127.0.0.1", "[::1]", "127.0.0.53"))]
    assert public, listeners
    for line in public:
        port = line.split()[3].rsplit(":", 1)[1]
        if port == "9094":
            assert name in MONITORS, line
            assert '"prometheus-aler' in line, line
        else:
            assert '"nginx"' in line, line
            assert port in ("80", "443"), line


@pytest.mark.parametrize("name", ALL)
def test_keys_are_private(name: str) -> None:
    host = on(name)
    keys = ["/etc/ssl/agentmon/server.key"]
    if name in MONITORS:
        keys.append("/etc/ssl/agentmon/peer.key")
        with host.sudo():
            copy = host.file("/etc/prometheus/alertmanager-cluster/peer.key")
            assert (copy.user, copy.mode) == ("alertmanager", 0o400)
            folder = host.file("/etc/prometheus/alertmanager-cluster")
            assert (folder.user, folder.group, folder.mode) == ("root", "alertmanager", 0o750)
    else:
        assert not host.file("/etc/ssl/agentmon/peer.key").exists
    for path in keys:
        key = host.file(path)
        assert (key.user, key.mode) == ("root", 0o600), path


# --- Alertmanager behind nginx; Prometheus sends it alerts ------------------------------------


def test_alertmanager_through_nginx() -> None:
    answer = get(f"{alertmanager(MON1)}/api/v2/status", AM_ADMIN)
    assert answer["status"] == 200, answer
    status = json.loads(answer["body"])
    assert "https://agentmon-mh-agent/hooks/alertmanager" in status["config"]["original"]
    # The same security headers as every other location.
    assert answer["headers"]["strict-transport-security"] == "max-age=63072000"
    assert answer["headers"]["server"] == "nginx"


@pytest.mark.parametrize("monitor", MONITORS)
def test_alertmanager_listens_on_loopback_and_gossips_over_mutual_tls(monitor: str) -> None:
    host = on(monitor)
    assert host.service("prometheus-alertmanager").is_running
    assert host.service("prometheus-alertmanager").is_enabled
    listening = host.check_output("ss -Hltn")
    assert "127.0.0.1:9093 " in listening
    args = host.file("/etc/default/prometheus-alertmanager").content_string
    other = MON2 if monitor == MON1 else MON1
    assert "--web.listen-address=127.0.0.1:9093" in args
    assert "--cluster.listen-address=0.0.0.0:9094" in args
    assert f"--cluster.peer={other}:9094" in args
    assert "--cluster.tls-config=/etc/prometheus/alertmanager-cluster/tls.yml" in args
    with host.sudo():
        text = host.file("/etc/prometheus/alertmanager-cluster/tls.yml").content_string
    tls = yaml.safe_load(text)
    assert tls["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    assert tls["tls_client_config"]["insecure_skip_verify"] is False


def test_prometheus_alerting_block_drops_the_replica_and_uses_the_gates() -> None:
    monitor = on(MON1)
    with monitor.sudo():
        config = yaml.safe_load(monitor.file("/etc/prometheus/prometheus.yml").content_string)
    password = "/etc/prometheus/secrets/alertmanager_password"
    assert config["alerting"] == {
        "alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
        "alertmanagers": [
            {"path_prefix": "/alertmanager",
             "basic_auth": {"username": "prometheus", "password_file": password},
             "static_configs": [{"targets": ["127.0.0.1:9095"]}]},
            {"scheme": "https", "path_prefix": "/alert-gate", "timeout": "5s",
             "basic_auth": {"username": "prometheus", "password_file": password},
             "tls_config": {"ca_file": CA, "insecure_skip_verify": False, "min_version": "TLS12"},
             "static_configs": [{"targets": [f"{MON2}:443"]}]},
        ],
    }
    secret = monitor.file(password)
    assert (secret.user, secret.group, secret.mode) == ("prometheus", "prometheus", 0o400)
    assert secret.content_string == AM_PUSH.split(":", 1)[1]


@pytest.mark.parametrize("monitor", MONITORS)
def test_prometheus_sends_to_both_alertmanagers(monitor: str) -> None:
    other = MON2 if monitor == MON1 else MON1

    def active() -> list[str]:
        answer = get(f"{prometheus(monitor)}/api/v1/alertmanagers", ADMIN)
        assert answer["status"] == 200, answer
        return sorted(a["url"] for a in json.loads(answer["body"])["data"]["activeAlertmanagers"])

    assert wait_for(active, "Prometheus' Alertmanagers") == [
        "http://127.0.0.1:9095/alertmanager/api/v2/alerts",
        f"https://{other}:443/alert-gate/api/v2/alerts",
    ]
    # Prometheus sends (the Watchdog always fires) and both gates accept: no error lately.
    sent = wait_for(lambda: query('prometheus_notifications_sent_total{job="prometheus"} > 0',
                                  prometheus(monitor)), "notifications sent by Prometheus")
    assert len(sent) == 2, sent
    errors = query('increase(prometheus_notifications_errors_total{job="prometheus"}[1m])',
                   prometheus(monitor))
    assert len(errors) == 2, errors
    assert all(float(e["value"][1]) == 0.0 for e in errors), errors


def test_prometheus_evaluates_every_agentmon_rule() -> None:
    def groups() -> dict[str, Any]:
        answer = get(f"{prometheus(MON1)}/api/v1/rules", ADMIN)
        assert answer["status"] == 200, answer
        return {g["name"]: g for g in json.loads(answer["body"])["data"]["groups"]}

    def healthy() -> dict[str, Any]:
        found = groups()
        rules = [r for g in found.values() for r in g["rules"]]
        return found if rules and all(r["health"] == "ok" for r in rules) else {}

    found = wait_for(healthy, "every rule healthy", every=1)
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


# --- what Grafana is given (Grafana itself cannot be installed here) --------------------------


def test_grafana_server_is_not_installed_here() -> None:
    monitor = on(MON1)
    # grafana_manage_server: false: the files only, never a stand-in server.
    assert not monitor.package("grafana").is_installed
    assert "127.0.0.1:3000 " not in monitor.check_output("ss -Hltn")


@pytest.mark.parametrize(("path", "mode"), [
    ("/etc/grafana/grafana.ini", 0o640),
    ("/etc/grafana/provisioning/datasources/agentmon.yml", 0o640),
    ("/etc/grafana/provisioning/dashboards/agentmon.yml", 0o644),
])
def test_grafana_files_owner_and_mode(path: str, mode: int) -> None:
    file = on(MON1).file(path)
    assert file.is_file
    assert (file.user, file.group, file.mode) == ("root", "grafana", mode)


def test_grafana_ini_listens_on_loopback_under_grafana() -> None:
    monitor = on(MON1)
    with monitor.sudo():
        ini = monitor.file("/etc/grafana/grafana.ini").content_string
    for line in ("http_addr = 127.0.0.1", "http_port = 3000",
                 f"root_url = https://{MON1}/grafana/", "serve_from_sub_path = true",
                 "allow_sign_up = false", "provisioning = /etc/grafana/provisioning"):
        assert line in ini.splitlines(), line
    assert "[auth.anonymous]\nenabled = false" in ini


def _datasources() -> dict[str, dict[str, Any]]:
    monitor = on(MON1)
    with monitor.sudo():
        provisioned = yaml.safe_load(
            monitor.file("/etc/grafana/provisioning/datasources/agentmon.yml").content_string)
    return {source["uid"]: source for source in provisioned["datasources"]}


def test_grafana_datasource_reaches_prometheus_with_its_credentials() -> None:
    sources = _datasources()
    assert sorted(sources) == ["agentmon-longterm", "agentmon-prometheus"]
    source = sources["agentmon-prometheus"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"] == "http://127.0.0.1:9090/prometheus"
    assert source["basicAuth"] is True
    user, password = GRAFANA_DATASOURCE.split(":", 1)
    assert source["basicAuthUser"] == user
    # The password only in secureJsonData (Grafana encrypts it), never in jsonData.
    assert source["secureJsonData"] == {"basicAuthPassword": password}
    assert password not in json.dumps(source["jsonData"])
    # What Grafana would do with it: query Prometheus on loopback as that user.
    url = source["url"] + "/api/v1/query?query=up"
    answer = get(url, f"{source['basicAuthUser']}:{password}", origin=MON1)
    assert answer["status"] == 200, answer
    assert get(url, f"{user}:wrong", origin=MON1)["status"] == 401


def test_grafana_long_term_datasource_reaches_victoriametrics_over_tls() -> None:
    source = _datasources()["agentmon-longterm"]
    assert source["name"] == "agentmon long-term"
    assert source["type"] == "prometheus"
    assert source["isDefault"] is False
    assert source["url"] == VM
    user, password = LONGTERM_GRAFANA.split(":", 1)
    assert (source["basicAuth"], source["basicAuthUser"]) == (True, user)
    assert source["jsonData"]["tlsAuthWithCACert"] is True
    ca = on(MON1).file(CA).content_string
    assert source["secureJsonData"] == {"basicAuthPassword": password, "tlsCACert": ca}
    assert password not in json.dumps(source["jsonData"])
    # What Grafana would do: from the monitoring host, over TLS with that CA, as that user.
    url = source["url"] + "/api/v1/query?query=up"
    assert get(url, LONGTERM_GRAFANA, origin=MON1)["status"] == 200
    assert get(url, f"{user}:wrong", origin=MON1)["status"] == 401


def test_grafana_dashboards_provider_and_dashboards() -> None:
    monitor = on(MON1)
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


def test_every_dashboard_query_returns_data_on_both_datasources() -> None:
    """Claude Code sessions played twice through alice's hooks on the agent host (the second
    play raises counters the first created, so rates are not zero), then every panel's
    query, variables set to real label values (tools/query_dashboards.py, run on the monitoring
    host as Grafana would), returns series from Prometheus and from VictoriaMetrics."""
    agent = on(AGENT)
    expr = f'count_over_time(agentmon_db_up{{instance="{AGENT}"}}[1h])'

    def scraped(more: int) -> None:
        """Until both stores hold `more` more scrapes of the agent host."""
        for base, auth in ((prometheus(MON1), ADMIN), (VM, READER)):
            first = float(query(expr, base, auth)[0]["value"][1])
            wait_for(lambda base=base, auth=auth, first=first:
                     float(query(expr, base, auth)[0]["value"][1]) >= first + more,
                     f"{more} more scrapes in {base}")

    for seed in (22, 23):
        played = agent.run("runuser -u alice -- sh -c 'cd /home/alice && "
                           f"/usr/local/bin/agentmon-demo-events --sessions 4 --seed {seed}'")
        assert played.rc == 0, played.stderr
        assert "hook said" not in played.stderr, played.stderr
        # Rates need samples on both sides of the events.
        scraped(3)
    monitor = on(MON1)
    work = monitor.check_output("mktemp -d /tmp/agentmon-live.XXXXXX")
    counts = {}
    try:
        for source in ("tools/query_dashboards.py", "tools/check_dashboards.py",
                       "roles/grafana/files/dashboards"):
            podman("cp", str(PROJECT / source), f"{MON1}:{work}/")
        for name, base, auth in (("Prometheus", prometheus(MON1), ADMIN),
                                 ("VictoriaMetrics", VM, READER)):
            user, password = auth.split(":", 1)
            monitor.check_output(f"umask 077; printf %s {shlex.quote(password)} > {work}/password")
            cmd = monitor.run(
                f"python3 {work}/query_dashboards.py --url {base} --user {user}"
                f" --password-file {work}/password --cacert {CA} --rate-interval {RATE_INTERVAL}"
                f" {work}/dashboards")
            assert cmd.rc == 0, f"{name}: a query returned no series:\n{cmd.stdout}{cmd.stderr}"
            lines = [line.split(" | ") for line in cmd.stdout.splitlines() if " | " in line]
            counts[name] = [line[3] for line in lines]
            rows = [line[:3] for line in lines]
    finally:
        monitor.run(f"rm -rf {shlex.quote(work)}")
    print("\ndashboard queries, series on Prometheus / VictoriaMetrics:")
    for row, prom, vm in zip(rows, counts["Prometheus"], counts["VictoriaMetrics"], strict=True):
        print(f"  {' / '.join(row)}: {prom} / {vm}")
