"""The whole single-host stack, checked as a user would, through nginx with credentials.

Stages run in file order and build on each other (pytest -x): the stack is up; hook events
played through the hooks registered in alice's settings.json reach Prometheus' query API with
the values SQL gives (hook -> SQLite -> exporter -> nginx TLS -> Prometheus -> nginx); the
Watchdog reaches the webhook receiver through Alertmanager; every dashboard panel's query, with
its template variables replaced by real label values, returns at least one series; the files
Grafana is given are right (Grafana itself is not installed: grafana_manage_server is false).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from verify_helpers import http, wait_for

PROJECT = Path(__file__).resolve().parents[3]
DASHBOARDS = PROJECT / "roles" / "grafana" / "files" / "dashboards"
CA = "/etc/ssl/agentmon/ca.crt"
DB = "/var/lib/agentmon/agent_workflow.db"
ADMIN = ("admin", "molecule-default-admin-password")
AM_ADMIN = ("admin", "molecule-default-am-admin-password")
RATE_INTERVAL = "1m"  # $__rate_interval for a 2 s scrape interval is far shorter; 1m is safe
_STARTED = time.monotonic()


def say(line: str) -> None:
    print(f"[verify {time.monotonic() - _STARTED:6.1f}s] {line}", flush=True)


def name(host: Any) -> str:
    return host.check_output("hostname")


def curl(
    host: Any, path: str, auth: tuple[str, str] | None = ADMIN, data: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET (or POST a form) https://<host>/<path> through nginx, from the host, CA verified."""
    answer = http(host, f"https://{name(host)}{path}", basic=auth, ca=CA,
                  form=urllib.parse.urlencode(data) if data else None)
    assert "error" not in answer, answer
    return answer["status"], answer["body"]


def promql(host: Any, expr: str) -> list[dict[str, Any]]:
    code, body = curl(host, "/prometheus/api/v1/query", data={"query": expr})
    assert code == 200, f"{expr}: HTTP {code} {body[:200]}"
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def value(host: Any, expr: str) -> float | None:
    result = promql(host, expr)
    return float(result[0]["value"][1]) if result else None


def sql(host: Any, query: str) -> int:
    script = (
        f"import sqlite3,sys; c=sqlite3.connect('file:{DB}?mode=ro', uri=True);"
        " print(c.execute(sys.argv[1]).fetchone()[0])"
    )
    return int(host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(query)}"))


def play_sessions(host: Any, sessions: int, seed: int) -> str:
    cmd = host.run(
        f"runuser -u alice -- sh -c 'cd /home/alice && /usr/local/bin/agentmon-demo-events"
        f" --sessions {sessions} --seed {seed}'"
    )
    assert cmd.rc == 0, cmd.stderr
    assert "hook said" not in cmd.stderr, cmd.stderr
    return cmd.stdout.strip()


def in_step(host: Any, sql_total: str, metric: str) -> Any:
    """A probe: Prometheus' value of `metric` equals what SQL says, or None."""

    def probe() -> tuple[int, float] | None:
        want = sql(host, sql_total)
        got = value(host, metric)
        return (want, got) if got is not None and got == want and want > 0 else None

    return probe


def scrapes(host: Any) -> int:
    """How many times Prometheus has scraped the exporter in the last hour."""
    return int(value(host, "sum(count_over_time(agentmon_db_up[1h]))") or 0)


def wait_scrapes(host: Any, more: int, what: str) -> None:
    """Until Prometheus has scraped the exporter `more` more times (rates need those samples)."""
    first = scrapes(host)
    wait_for(lambda: scrapes(host) >= first + more, what)


def test_stack_is_up(host: Any) -> None:
    for unit in ("agentmon-exporter", "nginx", "prometheus", "prometheus-alertmanager", "webhook"):
        assert host.service(unit).is_running, unit
    assert not host.package("grafana").is_installed
    say(
        "Grafana itself is NOT installed here (grafana_manage_server: false; its repository is"
        " unreachable): the files it is given are checked below, and every dashboard query runs"
        " against the real Prometheus"
    )


def test_only_nginx_listens_off_loopback(host: Any) -> None:
    listeners = host.check_output("ss -Hltnp").splitlines()
    off_loopback = [
        line for line in listeners
        if not re.search(r"\s(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):\d+\s", line)
    ]
    assert off_loopback, listeners
    for line in off_loopback:
        assert '"nginx"' in line, f"not nginx, off loopback: {line}"
    say(f"off loopback only nginx listens ({len(off_loopback)} sockets)")


def test_every_protected_path_needs_credentials(host: Any) -> None:
    for path in ("/prometheus/api/v1/query?query=up", "/alertmanager/api/v2/status", "/metrics"):
        code, _ = curl(host, path, auth=None)
        assert code == 401, f"{path}: {code} without credentials"
        code, _ = curl(host, path, auth=("admin", "wrong"))
        assert code == 401, f"{path}: {code} with a wrong password"


def test_hook_events_reach_prometheus_through_the_chain(host: Any) -> None:
    """Two batches, a few scrapes apart, so that every rate() in the dashboards has an increase."""
    started = time.monotonic()
    say(play_sessions(host, sessions=6, seed=14))
    want, got = wait_for(
        in_step(host, "SELECT count(*) FROM agent_tool_uses WHERE status != 'running'",
                "sum(agentmon_tool_uses_total)"),
        "the first batch in Prometheus",
    )
    say(f"batch 1: {got:.0f} finished tool uses in Prometheus = {want} in SQL"
        f" ({time.monotonic() - started:.1f}s from the first hook run)")
    wait_scrapes(host, 3, "3 scrapes at the first batch's values")
    started = time.monotonic()
    say(play_sessions(host, sessions=6, seed=41))
    want, got = wait_for(
        in_step(host, "SELECT count(*) FROM agent_tool_uses WHERE status != 'running'",
                "sum(agentmon_tool_uses_total)"),
        "the second batch in Prometheus",
    )
    inv_want, inv_got = wait_for(
        in_step(host, "SELECT count(*) FROM agent_invocations WHERE status != 'running'",
                "sum(agentmon_invocations_total)"),
        "the invocations in Prometheus",
    )
    say(f"batch 2: {got:.0f} finished tool uses = {want} in SQL, {inv_got:.0f} finished"
        f" invocations = {inv_want} in SQL ({time.monotonic() - started:.1f}s)")
    statuses = {r["metric"]["status"]: float(r["value"][1])
                for r in promql(host, "sum by (status) (agentmon_invocations_total)")}
    say(f"invocations by status: {statuses}")
    interrupted = sql(host, "SELECT count(*) FROM agent_invocations WHERE status = 'interrupted'")
    assert statuses.get("interrupted", 0) == interrupted
    wait_scrapes(host, 3, "3 scrapes after the second batch")  # rates over it need them


def test_watchdog_reaches_the_webhook_receiver(host: Any) -> None:
    started = time.monotonic()

    def delivered() -> list[dict[str, Any]]:
        cmd = host.run("cat /var/lib/alert-receiver/notifications.jsonl")
        lines = [json.loads(line) for line in cmd.stdout.splitlines() if line.strip()]
        return [
            n for n in lines
            if any(a["labels"].get("alertname") == "AgentmonWatchdog"
                   for a in n["notification"].get("alerts", []))
        ]

    got = wait_for(delivered, "the Watchdog at the webhook receiver", every=2)
    say(f"alert path: {len(got)} Watchdog notification(s) at the webhook receiver"
        f" (waited {time.monotonic() - started:.1f}s)")
    code, body = curl(host, "/alertmanager/api/v2/alerts", auth=AM_ADMIN)
    assert code == 200, body
    names = sorted({a["labels"]["alertname"] for a in json.loads(body)})
    assert "AgentmonWatchdog" in names
    say(f"Alertmanager (through nginx) holds: {', '.join(names)}")


def test_every_dashboard_query_returns_data(host: Any) -> None:
    """Issue 13's live check: every panel, variables set to real values, >= 1 series, by
    tools/query_dashboards.py (the dashboards' own live checker) run on the host itself."""
    target = name(host)
    work = host.check_output("mktemp -d /tmp/agentmon-live.XXXXXX")
    try:
        sources = ("tools/query_dashboards.py", "tools/check_dashboards.py",
                   "roles/grafana/files/dashboards")
        for source in sources:
            subprocess.run(
                ["podman", "cp", str(PROJECT / source), f"{target}:{work}/"], check=True
            )
        password = f"{work}/password"
        host.check_output(f"umask 077; printf %s {shlex.quote(ADMIN[1])} > {password}")
        cmd = host.run(
            f"python3 {work}/query_dashboards.py --url https://{target}/prometheus --user admin"
            f" --password-file {password} --cacert {CA} --rate-interval {RATE_INTERVAL}"
            f" {work}/dashboards"
        )
        say("dashboard queries against the live Prometheus (tools/query_dashboards.py):")
        print(cmd.stdout, cmd.stderr, flush=True)
        assert cmd.rc == 0, "a dashboard query returned no series (above)"
    finally:
        host.run(f"rm -rf {shlex.quote(work)}")


def test_grafana_is_given_the_right_files(host: Any) -> None:
    ini = host.file("/etc/grafana/grafana.ini")
    assert ini.exists
    assert (ini.user, ini.group, ini.mode) == ("root", "grafana", 0o640)
    text = ini.content_string
    for setting in (r"http_addr = 127\.0\.0\.1", r"root_url = https://\S+/grafana/",
                    r"serve_from_sub_path = true",
                    r"admin_password = molecule-default-grafana-admin",
                    r"secret_key = molecule-default-grafana-secret-key", r"allow_sign_up = false",
                    r"(?s)\[auth\.anonymous\]\s*enabled = false"):
        assert re.search(setting, text), setting
    datasource = host.file("/etc/grafana/provisioning/datasources/agentmon.yml")
    assert datasource.mode == 0o640
    ds = datasource.content_string
    assert "uid: agentmon-prometheus" in ds
    assert "http://127.0.0.1:9090/prometheus" in ds
    assert "molecule-default-grafana-password" in ds.split("secureJsonData", 1)[1]
    # The datasource's credentials work against the real Prometheus (as Grafana would use them).
    code, _ = curl(host, "/prometheus/api/v1/query?query=up",
                   auth=("grafana", "molecule-default-grafana-password"))
    assert code == 200
    shipped = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json")}
    provider = host.file("/etc/grafana/provisioning/dashboards/agentmon.yml").content_string
    folder = re.search(r"path: (\S+)", provider).group(1)
    assert "allowUiUpdates: false" in provider
    on_host = sorted(host.check_output(f"ls {shlex.quote(folder)}").split())
    assert on_host == sorted(shipped)
    for file_name, board in shipped.items():
        assert json.loads(host.file(f"{folder}/{file_name}").content_string) == board
    # nginx routes /grafana/ to loopback:3000; no Grafana answers there, so nginx says 502.
    code, _ = curl(host, "/grafana/api/health", auth=None)
    assert code == 502, code
    say(f"Grafana's files: grafana.ini, datasource agentmon-prometheus (its user reads Prometheus),"
        f" {len(on_host)} dashboards in {folder} identical to the grafana role's files/dashboards;"
        f" /grafana/ routed by nginx (502: no Grafana server here)")
