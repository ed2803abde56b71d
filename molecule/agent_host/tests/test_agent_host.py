"""Verify an agent host the way its users see it: Prometheus over HTTP, Claude Code running
the hook command from settings.json, an operator looking at the database and the unit."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from agentmon.schema import migrations
from verify_helpers import http, ssh_host, wait_for

HOST = os.environ.get("AGENTMON_AGENT_HOST", "agentmon-agent-host")
testinfra_hosts = [ssh_host(HOST)]

DB = "/var/lib/agentmon/agent_workflow.db"
SOCKET = "/run/agentmon/ingest.sock"
BACKUPS = "/var/backups/agentmon"
URL = "http://127.0.0.1:9477/metrics"
USER, PASSWORD = "prometheus", "molecule-test-password"
NEXT_USER, NEXT_PASSWORD = "prometheus-next", "molecule-next-password"
TOKEN = "molecule-test-bearer-token-0123456789"
SERVICE = "agentmon-exporter.service"
EVENTS = ["PreToolUse", "PostToolUse", "PostToolUseFailure", "SessionStart", "SessionEnd", "Stop",
          "SubagentStop"]
ORIGINAL_SQL = Path(__file__).resolve().parent.parent / "files" / "original_schema.sql"
ALICE_OWN_HOOK = {"matcher": "Bash",
                  "hooks": [{"type": "command", "command": "/usr/local/bin/audit-bash"}]}

# Read-only queries on the host's database, answered as JSON.
SQL_QUERY = """
import json, sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(json.dumps([list(row) for row in conn.execute(sys.argv[2])]))
"""


def get(host: Any, kind: str = "none", secret: str = "") -> dict[str, Any]:
    """GET /metrics on the host's loopback, with basic ("user:password") or bearer credentials."""
    user, _, password = secret.partition(":")
    return http(host, URL, basic=(user, password) if kind == "basic" else None,
                bearer=secret if kind == "bearer" else None)


def query(host: Any, sql: str, db: str = DB) -> list[list[Any]]:
    return json.loads(host.check_output("python3 -c %s %s %s", SQL_QUERY, db, sql))


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples(text)
               if n == name and all(lab.get(k) == want for k, want in labels.items()))


def scrape(host: Any) -> str:
    answer = get(host, "basic", f"{USER}:{PASSWORD}")
    assert answer["status"] == 200
    return str(answer["body"])


def settings(host: Any, user: str) -> dict[str, Any]:
    return json.loads(host.file(f"/home/{user}/.claude/settings.json").content_string)


def hook_command(doc: dict[str, Any], event: str) -> str:
    commands = [h["command"] for entry in doc["hooks"][event] for h in entry["hooks"]
                if " hook" in h.get("command", "") and "agentmon" in h["command"]]
    assert len(commands) == 1, commands
    return commands[0]


# --- the exporter service -----------------------------------------------------------------


def test_exporter_is_active_enabled_and_restarts_on_failure(host: Any) -> None:
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled
    assert host.check_output("systemctl show -p Restart --value %s", SERVICE) == "on-failure"
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    assert host.check_output("ps -o user= -p %s", pid) == "agentmon-exporter"


def test_reload_rereads_the_web_config_without_a_restart(host: Any) -> None:
    """systemctl reload sends SIGHUP (ExecReload), under the unit's system call filter."""
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")  # no args: no %-formatting
    host.run_expect([0], f"systemctl reload {SERVICE}")
    wait_for(lambda: "web config reloaded" in host.check_output(
        f"journalctl -u {SERVICE} --since '{since}' --no-pager"), "the reload's log line",
        every=0.2)
    assert host.check_output("systemctl show -p MainPID --value %s", SERVICE) == pid
    assert "agentmon_db_up" in scrape(host)


def test_unit_waits_for_the_network_to_be_online(host: Any) -> None:
    for prop in ("Wants", "After"):
        units = host.check_output("systemctl show -p %s --value %s", prop, SERVICE).split()
        assert "network-online.target" in units, prop


def test_exporter_user_cannot_log_in(host: Any) -> None:
    user = host.user("agentmon-exporter")
    assert user.shell == "/usr/sbin/nologin"
    assert "agentmon" in user.groups


def test_release_is_current(host: Any) -> None:
    current = host.file("/opt/agentmon/current")
    assert current.is_symlink
    release = current.linked_to
    assert re.fullmatch(r"/opt/agentmon/releases/0\.1\.0-[0-9a-f]{12}", release), release
    record = json.loads(host.file(f"{release}/release.json").content_string)
    assert record["version"] == "0.1.0"
    assert record["schema_version"] == migrations.LATEST
    # The release keeps the wheels it was installed from, each with the hash pip checked.
    for wheel, sha256 in record["wheels"].items():
        assert host.check_output("sha256sum %s", f"{release}/wheels/{wheel}").split()[0] == sha256
    assert json.loads(host.file("/opt/agentmon/deploys.json").content_string) == {
        "deploys": [release.rsplit("/", 1)[1]]}
    # The running exporter started from that release (its interpreter lives in the folder).
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert cmdline[0].startswith(f"{release}/bin/python"), cmdline


def test_exposure_score_is_at_most_2(host: Any) -> None:
    out = host.check_output("systemd-analyze security --no-pager %s", SERVICE)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    print(f"systemd-analyze security {SERVICE}: {score}")
    assert score <= 2.0


def test_listens_on_loopback_only(host: Any) -> None:
    listening = host.check_output("ss -Htln 'sport = :9477'").splitlines()
    assert listening, "nothing listens on port 9477"
    assert all(line.split()[3] == "127.0.0.1:9477" for line in listening), listening


def test_not_reachable_from_the_network() -> None:
    address = subprocess.run(
        ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", HOST],
        capture_output=True, text=True, check=True).stdout.strip()
    assert address, "the test host has no network address"
    with pytest.raises(ConnectionRefusedError), \
            socket.create_connection((address, 9477), timeout=5):
        pass


# --- authentication, as Prometheus scrapes -----------------------------------------------


@pytest.mark.parametrize(("kind", "secret"), [
    ("none", ""),
    ("basic", f"{USER}:wrong-password"),
    ("basic", f"nobody:{PASSWORD}"),
    ("bearer", "wrong-token-0123456789abcdef"),
])
def test_refuses_missing_or_wrong_credentials(host: Any, kind: str, secret: str) -> None:
    answer = get(host, kind, secret)
    assert answer["status"] == 401
    assert "agentmon_" not in answer["body"]


def test_answers_the_right_password(host: Any) -> None:
    body = scrape(host)
    assert value(body, "agentmon_db_up") == 1


def test_answers_both_users_of_a_rolling_password_change(host: Any) -> None:
    for credentials in (f"{USER}:{PASSWORD}", f"{NEXT_USER}:{NEXT_PASSWORD}"):
        answer = get(host, "basic", credentials)
        assert answer["status"] == 200, credentials
    # Each password opens its own user only.
    assert get(host, "basic", f"{NEXT_USER}:{PASSWORD}")["status"] == 401
    assert get(host, "basic", f"{USER}:{NEXT_PASSWORD}")["status"] == 401


def test_answers_the_right_bearer_token(host: Any) -> None:
    answer = get(host, "bearer", TOKEN)
    assert answer["status"] == 200
    assert value(answer["body"], "agentmon_db_up") == 1


# --- the database -------------------------------------------------------------------------


def test_data_folder_is_the_service_accounts_alone_and_not_root_owned(host: Any) -> None:
    folder = host.file("/var/lib/agentmon")
    assert (folder.user, folder.group, folder.mode) == ("agentmon-db", "agentmon", 0o2770)
    db = host.file(DB)
    assert (db.user, db.group, db.mode) == ("agentmon-db", "agentmon", 0o660)
    assert host.user("agentmon-db").shell == "/usr/sbin/nologin"
    assert not host.file("/var/lib/agentmon/backups").exists


def test_schema_is_latest_with_indexes(host: Any) -> None:
    assert query(host, "PRAGMA user_version") == [[migrations.LATEST]]
    names = {row[0] for row in query(host, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert set(migrations.INDEXES) <= names


def test_original_rows_are_all_kept(host: Any) -> None:
    original = sqlite3.connect(":memory:")
    original.executescript(ORIGINAL_SQL.read_text(encoding="utf-8"))
    for table in ("sessions", "agent_invocations", "agent_tool_uses", "tool_uses"):
        columns = [row[1] for row in original.execute(f"PRAGMA table_info({table})")]
        select = f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608 - names from PRAGMA
        want = [list(row) for row in original.execute(f"{select} ORDER BY rowid")]
        seeded_ids = ", ".join(repr(row[0]) for row in want)
        key = columns[0]
        got = query(host, f"{select} WHERE {key} IN ({seeded_ids}) ORDER BY rowid")
        assert got == want, table


def test_a_verified_backup_of_the_original_exists(host: Any) -> None:
    folder = host.file(BACKUPS)
    assert (folder.user, folder.group, folder.mode) == ("agentmon-db", "agentmon-db", 0o700)
    backups = host.check_output("ls %s", BACKUPS).split()
    assert backups
    path = f"{BACKUPS}/{sorted(backups)[0]}"
    assert host.file(path).user == "agentmon-db"
    assert query(host, "PRAGMA integrity_check", db=path) == [["ok"]]
    assert query(host, "PRAGMA user_version", db=path) == [[0]]
    assert query(host, "SELECT count(*) FROM agent_invocations", db=path) == [[5]]
    assert host.file(path).mode == 0o600


# --- Claude Code settings -----------------------------------------------------------------


def test_alice_keeps_her_settings_and_her_hook(host: Any) -> None:
    doc = settings(host, "alice")
    assert doc["model"] == "sonnet"
    assert doc["permissions"] == {"allow": ["Bash(git status)"]}
    assert doc["hooks"]["PreToolUse"][0] == ALICE_OWN_HOOK
    file = host.file("/home/alice/.claude/settings.json")
    assert (file.user, file.group, file.mode) == ("alice", "alice", 0o640)
    backups = host.check_output("ls -a /home/alice/.claude").split()
    backup = [name for name in backups if name.startswith("settings.json.") and name.endswith("~")]
    assert len(backup) == 1
    old = json.loads(host.file(f"/home/alice/.claude/{backup[0]}").content_string)
    assert old["hooks"] == {"PreToolUse": [ALICE_OWN_HOOK]}
    assert not [name for name in backups if name.endswith(".tmp")]


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_hook_registered_for_every_event(host: Any, user: str) -> None:
    doc = settings(host, user)
    for event in EVENTS:
        command = hook_command(doc, event)
        assert shlex.split(command) == ["/opt/agentmon/current/bin/agentmon", "hook",
                                        "--socket", SOCKET]
    matchers = {entry.get("matcher") for entry in doc["hooks"]["PreToolUse"]
                if any("agentmon" in h["command"] for h in entry["hooks"])}
    assert matchers == {"*"}
    assert "matcher" not in next(e for e in doc["hooks"]["Stop"])
    assert "agentmon" not in host.user(user).groups  # the hook writes no database


def test_new_settings_file_is_private(host: Any) -> None:
    file = host.file("/home/bob/.claude/settings.json")
    assert (file.user, file.group, file.mode) == ("bob", "bob", 0o600)


# --- hook events end to end ---------------------------------------------------------------


def run_hook(host: Any, user: str, command: str, event: dict[str, Any]) -> None:
    """Run the settings.json command as Claude Code does: a shell of the user, JSON on stdin."""
    result = host.run("echo %s | runuser -u %s -- sh -c %s", json.dumps(event), user, command)
    assert result.rc == 0
    assert result.stderr == "", result.stderr


def test_hook_events_appear_in_metrics(host: Any) -> None:
    before = scrape(host)
    for user in ("alice", "bob"):
        doc = settings(host, user)
        sid = f"verify-{user}-{uuid.uuid4().hex[:8]}"
        base = {"session_id": sid, "transcript_path": f"/home/{user}/.claude/t.jsonl",
                "cwd": f"/home/{user}", "permission_mode": "default"}

        def send(event: str, _doc: dict[str, Any] = doc, _user: str = user,
                 _base: dict[str, Any] = base, **fields: Any) -> None:
            run_hook(host, _user, hook_command(_doc, event),
                     {**_base, "hook_event_name": event, **fields})

        send("SessionStart", source="startup")
        send("PreToolUse", tool_name="mcp__verify__probe", tool_input={"q": 1}, tool_use_id="t1")
        send("PostToolUse", tool_name="mcp__verify__probe", tool_input={"q": 1},
             tool_use_id="t1", tool_response={"ok": True})
        send("PreToolUse", tool_name="mcp__verify__fails", tool_input={}, tool_use_id="t2")
        send("PostToolUseFailure", tool_name="mcp__verify__fails", tool_input={},
             tool_use_id="t2", error="boom", is_interrupt=False)
        task = {"description": "verify", "prompt": "check", "subagent_type": "verify-agent"}
        send("PreToolUse", tool_name="Task", tool_input=task, tool_use_id="t3")
        send("PostToolUse", tool_name="Task", tool_input=task, tool_use_id="t3",
             tool_response={"totalDurationMs": 1500})
        send("Stop", stop_hook_active=False)
        send("SessionEnd", reason="exit")

    def delta(text: str, name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    expected = {
        ("agentmon_tool_uses_total", (("tool", "mcp__verify__probe"), ("status", "completed"))): 2,
        ("agentmon_tool_uses_total", (("tool", "mcp__verify__fails"), ("status", "error"))): 2,
        ("agentmon_tool_uses_total", (("tool", "mcp__verify__probe"), ("status", "error"))): 0,
        ("agentmon_invocations_total", (("agent", "verify-agent"), ("status", "completed"))): 2,
        ("agentmon_sessions", (("status", "completed"),)): 2,
    }

    def seen(text: str) -> dict[Any, float]:
        return {key: delta(text, key[0], **dict(key[1])) for key in expected}

    # A scrape may show a refresh that ran while the hooks were still writing: poll (bounded).
    def settled() -> str | None:
        text = scrape(host)
        return text if seen(text) == expected else None

    after = wait_for(settled, f"a scrape showing {expected}")
    assert value(after, "agentmon_db_up") == 1
    assert "verify-alice" not in after  # no session id in any label
    assert "verify-bob" not in after


# --- retention ------------------------------------------------------------------------------


def test_prune_timer_is_scheduled_and_its_run_keeps_the_counters(host: Any) -> None:
    """The retention timer (agentmon_db_retention_days, default 90) is active; its service runs
    as the database's account, hardened, and a run now (nothing is 90 days old) succeeds and
    changes no exported number."""
    timer = host.service("agentmon-prune.timer")
    assert timer.is_enabled
    assert timer.is_running
    unit = "agentmon-prune.service"
    shown = host.check_output("systemctl show -p User -p ExecStart --value %s", unit)
    assert "agentmon-db" in shown
    assert "prune --db" in shown
    assert "--older-than 90d" in shown
    out = host.check_output("systemd-analyze security --no-pager %s", unit)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    print(f"systemd-analyze security {unit}: {score}")
    assert score <= 2.0
    before = [s for s in samples(scrape(host)) if s[0].endswith("_total")
              and not s[0].startswith(("agentmon_rows_read", "agentmon_refreshes",
                                       "agentmon_scrape", "process_", "python_"))]
    host.check_output("systemctl start %s", unit)  # oneshot: returns when the prune has ended
    assert host.check_output("systemctl show -p Result --value %s", unit) == "success"
    journal = host.check_output("journalctl -u %s -n 5 --no-pager -o cat", unit)
    assert f"{DB}: removed" in journal, journal
    after = {(n, tuple(sorted(lab.items()))): v for n, lab, v in samples(scrape(host))}
    for name, labels, was in before:
        assert after[(name, tuple(sorted(labels.items())))] >= was, name
