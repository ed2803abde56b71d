"""The rollback scenario, stage by stage (the tests run in file order and build on each other):
release 1 -> events -> release 2 with one more schema step -> events -> a prune of every
finished session -> rollback of release and schema -> the same rollback again (no change) ->
release 3 whose health check fails (rescued) -> reset metrics and throttle -> restore a backup
-> disable. Events go through the installed hook command from alice's settings.json, as Claude
Code runs it; metrics are compared with what SQL says about the same database (plus what was
pruned)."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import agentmon
from agentmon.schema import migrations
from verify_helpers import http, playbook, recap, ssh_host, wait_for

# AGENTMON_RB_HOST renames the container (molecule.yml), so two checkouts can run the scenario.
HOST = os.environ.get("AGENTMON_RB_HOST", "agentmon-rb-host")
testinfra_hosts = [ssh_host(HOST)]

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
WHEELHOUSE = EPHEMERAL / "wheelhouse"
V1, V2, V3 = agentmon.__version__, f"{agentmon.__version__}.post2", f"{agentmon.__version__}.post3"
# Release 1 needs the repository's latest schema; releases 2 and 3 add one step to it.
S1, S2 = migrations.LATEST, migrations.LATEST + 1

DB = "/var/lib/agentmon/agent_workflow.db"
BACKUPS = "/var/backups/agentmon"
RELEASES = "/opt/agentmon/releases"
SERVICE = "agentmon-exporter.service"
URL = "http://127.0.0.1:9477/metrics"
AUTH = "prometheus:molecule-rollback-password"
PROBE = "mcp__rollback__probe"

# Shared between the stages: release folders and every session written through the hook.
STATE: dict[str, Any] = {"sessions": [], "pruned": []}

SQL_QUERY = """
import json, sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(json.dumps([list(row) for row in conn.execute(sys.argv[2], json.loads(sys.argv[3]))]))
"""


def messages(out: str, step: str) -> list[str]:
    return re.findall(rf'"msg": "({step}: [^"]*)"', out)


def query(host: Any, sql: str, *params: Any, db: str = DB) -> list[list[Any]]:
    return json.loads(host.check_output("python3 -c %s %s %s %s", SQL_QUERY, db, sql,
                                        json.dumps(params)))


def has_session(host: Any, sid: str, db: str = DB) -> bool:
    return bool(query(host, "SELECT 1 FROM sessions WHERE session_id = ?", sid, db=db))


def scrape(host: Any) -> str:
    """The exposition, or one comment line when the exporter does not answer 200."""
    user, _, password = AUTH.partition(":")
    answer = http(host, URL, basic=(user, password), timeout=10)
    if answer["status"] != 200:
        return f"# unreachable: {answer.get('error') or answer['status']}\n"
    return str(answer["body"])


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
    return total


def live_release(host: Any) -> str:
    return str(host.file("/opt/agentmon/current").linked_to)


def running_release(host: Any) -> str:
    """The release folder the exporter's process started from (its interpreter lives there)."""
    pid = host.check_output("systemctl show -p MainPID --value %s", SERVICE)
    argv0 = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")[0]
    return argv0.rsplit("/bin/", 1)[0]


def schema_version(host: Any) -> int:
    return int(query(host, "PRAGMA user_version")[0][0])


def write_events(host: Any, tag: str) -> None:
    """One session through alice's hook command: start, a completed and a failed tool use, end."""
    doc = json.loads(host.file("/home/alice/.claude/settings.json").content_string)
    sid = f"rb-{tag}-{uuid.uuid4().hex[:8]}"
    base = {"session_id": sid, "transcript_path": "/home/alice/.claude/t.jsonl",
            "cwd": "/home/alice", "permission_mode": "default"}

    def send(event: str, **fields: Any) -> None:
        command = next(h["command"] for entry in doc["hooks"][event] for h in entry["hooks"]
                       if "agentmon" in h.get("command", ""))
        result = host.run("echo %s | runuser -u alice -- sh -c %s",
                          json.dumps({**base, "hook_event_name": event, **fields}), command)
        assert result.rc == 0
        assert result.stderr == "", result.stderr  # the hook prints one line when it drops an event

    send("SessionStart", source="startup")
    send("PreToolUse", tool_name=PROBE, tool_input={"q": tag}, tool_use_id="t1")
    send("PostToolUse", tool_name=PROBE, tool_input={"q": tag}, tool_use_id="t1",
         tool_response={"ok": True})
    send("PreToolUse", tool_name=PROBE, tool_input={}, tool_use_id="t2")
    send("PostToolUseFailure", tool_name=PROBE, tool_input={}, tool_use_id="t2", error="boom")
    send("SessionEnd", reason="exit")
    STATE["sessions"].append(sid)


def kept_sessions() -> list[str]:
    """The sessions written so far that agentmon prune has not removed."""
    return [sid for sid in STATE["sessions"] if sid not in STATE["pruned"]]


def assert_every_event_kept(host: Any) -> None:
    """Every session is in the database, but those pruned, whose rows are in the aggregates."""
    rows = query(host, "SELECT s.session_id, s.status, count(t.id) FROM sessions s "
                       "LEFT JOIN agent_tool_uses t ON t.session_id = s.session_id "
                       "WHERE s.session_id LIKE 'rb-%' GROUP BY s.session_id")
    assert sorted(rows) == sorted([sid, "completed", 2] for sid in kept_sessions())
    assert pruned_probe_uses(host) == {"completed": len(STATE["pruned"]),
                                       "error": len(STATE["pruned"])}


def pruned_probe_uses(host: Any) -> dict[str, int]:
    """The probe's tool uses agentmon prune removed, by status (schema step "pruned")."""
    if not query(host, "SELECT 1 FROM sqlite_master WHERE name = 'agentmon_pruned'"):
        return {"completed": 0, "error": 0}
    return {status: query(host, "SELECT COALESCE(SUM(rows), 0) FROM agentmon_pruned WHERE"
                                " tbl = 'agent_tool_uses' AND key2 = ? AND status = ?",
                          PROBE, status)[0][0]
            for status in ("completed", "error")}


def assert_metrics_match_sql(host: Any) -> None:
    """The probe's counters equal SQL plus what agentmon prune removed."""
    pruned = pruned_probe_uses(host)
    sql = {status: query(host, "SELECT count(*) FROM agent_tool_uses WHERE tool_name = ?"
                               " AND status = ?", PROBE, status)[0][0] + pruned[status]
           for status in ("completed", "error")}
    def matching() -> str | None:
        text = scrape(host)
        seen = {s: metric(text, "agentmon_tool_uses_total", tool=PROBE, status=s) for s in sql}
        return text if seen == sql and metric(text, "agentmon_db_up") == 1 else None

    wait_for(matching, f"agentmon_db_up 1 and the probe's tool uses {sql} in a scrape")


# --- stages -------------------------------------------------------------------------------


def test_release_1_is_live_and_serves(host: Any) -> None:
    release = live_release(host)
    assert re.fullmatch(rf"{RELEASES}/{re.escape(V1)}-[0-9a-f]{{12}}", release), release
    assert running_release(host) == release
    assert schema_version(host) == S1
    STATE["r1"] = release
    write_events(host, "r1")
    assert_metrics_match_sql(host)


def test_release_2_adds_a_schema_step(host: Any) -> None:
    rc, out = playbook("site.yml", "-e", f"agentmon_release_version={V2}",
                       "-e", f"agentmon_release_wheelhouse={WHEELHOUSE}")
    assert rc == 0, out[-3000:]
    release = live_release(host)
    assert release.startswith(f"{RELEASES}/{V2}-")
    assert running_release(host) == release
    assert host.file(f"{STATE['r1']}/bin/agentmon").is_file  # release 1 stays, untouched
    assert schema_version(host) == S2
    assert query(host, "SELECT name FROM sqlite_master WHERE name = 'idx_rollback_probe'")
    record = json.loads(host.file(f"{release}/release.json").content_string)
    assert (record["version"], record["schema_version"]) == (V2, S2)
    deploys = json.loads(host.file("/opt/agentmon/deploys.json").content_string)["deploys"]
    assert deploys == [Path(STATE["r1"]).name, Path(release).name]
    STATE["r2"] = release
    write_events(host, "r2")
    assert_every_event_kept(host)
    assert_metrics_match_sql(host)


def test_a_prune_then_a_rollback_across_schema_steps(host: Any) -> None:
    """Retention runs as the timer runs it (the live release's CLI, the service account), here
    with a retention of 0 hours so that every finished session goes; the rollback below then
    goes down a schema step with the pruned aggregates in place, and no number moves."""
    before = scrape(host)
    cli = f"{live_release(host)}/bin/agentmon"
    out = host.check_output("runuser -u agentmon-db -- %s prune --db %s --older-than 0h",
                            cli, DB)
    print(out)
    assert re.search(r"removed .*older than 0 h", out), out
    STATE["pruned"] = [sid for sid in STATE["sessions"] if not has_session(host, sid)]
    assert STATE["pruned"] == STATE["sessions"]  # every one of them had ended
    assert host.file(DB).user == "agentmon-db"
    assert_every_event_kept(host)
    assert_metrics_match_sql(host)
    after = scrape(host)
    for status in ("completed", "error"):
        assert metric(after, "agentmon_tool_uses_total", tool=PROBE, status=status) == metric(
            before, "agentmon_tool_uses_total", tool=PROBE, status=status)


def test_rollback_takes_back_release_and_schema(host: Any) -> None:
    rc, out = playbook("playbooks/rollback.yml", "--tags", "release")
    assert rc == 0, out[-3000:]
    said = messages(out, "release")
    print(said)
    assert any(f"down {S2}->{S1}" in m and Path(STATE["r1"]).name in m for m in said), said
    assert live_release(host) == STATE["r1"]
    assert running_release(host) == STATE["r1"]  # release 1 runs from its own folder
    assert schema_version(host) == S1
    assert not query(host, "SELECT name FROM sqlite_master WHERE name = 'idx_rollback_probe'")
    assert host.run(f"ls {BACKUPS}/agent_workflow.db.v{S2}.*.bak").rc == 0  # verified backup first
    # The down migrations ran as the service account (issue 7), never as root.
    for name in host.check_output("ls %s", BACKUPS).split():
        assert host.file(f"{BACKUPS}/{name}").user == "agentmon-db", name
    assert host.file(DB).user == "agentmon-db"
    assert_every_event_kept(host)
    write_events(host, "after-rollback")  # release 1's hook accepts the schema again
    assert_every_event_kept(host)
    assert_metrics_match_sql(host)


def test_the_same_rollback_again_changes_nothing(host: Any) -> None:
    rc, out = playbook("playbooks/rollback.yml", "--tags", "release")
    assert rc == 0, out[-3000:]
    assert recap(out, HOST)["changed"] == 0
    assert any("nothing to do" in m for m in messages(out, "release")), out[-2000:]
    rc, out = playbook("playbooks/rollback.yml", "--tags", "release", "--check")
    assert rc == 0, out[-3000:]
    assert recap(out, HOST)["changed"] == 0
    assert live_release(host) == STATE["r1"]


def test_release_3_fails_its_health_check_and_is_taken_back(host: Any) -> None:
    rc, out = playbook("site.yml", "-e", f"agentmon_release_version={V3}",
                       "-e", f"agentmon_release_wheelhouse={WHEELHOUSE}")
    assert rc != 0
    summary = recap(out, HOST)
    assert summary["rescued"] == 1, summary
    assert summary["failed"] == 1, summary
    assert "is live again and answers agentmon_db_up 1" in out
    r3 = [p for p in host.file(RELEASES).listdir() if p.startswith(f"{V3}-")]
    assert len(r3) == 1  # it was built and went live, then the rescue switched back
    deploys = json.loads(host.file("/opt/agentmon/deploys.json").content_string)["deploys"]
    assert deploys[-1] == r3[0]
    assert live_release(host) == STATE["r1"]
    assert running_release(host) == STATE["r1"]
    assert schema_version(host) == S1  # release 3 migrated up a step; the rescue went back down
    assert_every_event_kept(host)
    write_events(host, "after-rescue")
    assert_every_event_kept(host)
    assert_metrics_match_sql(host)


def test_reset_metrics_and_throttle(host: Any) -> None:
    args = ("playbooks/rollback.yml", "-e",
            '{"agentmon_rollback_steps": ["reset_metrics", "throttle"], '
            '"agentmon_rollback_incident": "molecule-1", "agentmon_rollback_refresh_interval": 7}')
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    print(messages(out, "reset_metrics"), messages(out, "throttle"))
    assert "AGENTMON_REFRESH_INTERVAL=7" in host.check_output(
        "systemctl show -p Environment --value %s", SERVICE)
    assert running_release(host) == STATE["r1"]
    assert_metrics_match_sql(host)  # rebuilt from SQL after the checkpoint was dropped
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    assert recap(out, HOST)["changed"] == 0, out[-3000:]


def test_restore_a_backup(host: Any) -> None:
    # The backup release 3's migration took (release 1's schema), before the events written since.
    # Names differ only in their UTC time stamp: the newest sorts last.
    backup = sorted(n for n in host.check_output("ls %s", BACKUPS).split()
                    if f".v{S1}." in n)[-1]
    assert all(has_session(host, sid) for sid in kept_sessions())
    args = ("playbooks/rollback.yml", "-e",
            json.dumps({"agentmon_rollback_steps": ["restore"],
                        "agentmon_rollback_backup": backup}))
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    said = messages(out, "restore")
    print(said)
    aside = f"{BACKUPS}/agent_workflow.db.set-aside-before-{backup}"
    assert host.file(aside).is_file
    assert host.file(aside).mode == 0o600
    assert host.file(aside).user == "agentmon-db"  # the restore ran as the service account
    assert host.file(DB).user == "agentmon-db"
    # Nothing is lost: every session is in the restored file or in the set-aside one.
    only_aside = [sid for sid in kept_sessions() if not has_session(host, sid)]
    assert only_aside, "the backup predates the last sessions"
    assert all(has_session(host, sid, db=aside) for sid in only_aside)
    assert any(f"sessions={len(only_aside)}" in m for m in said), said
    assert_metrics_match_sql(host)
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    assert recap(out, HOST)["changed"] == 0, out[-3000:]


def test_disable_keeps_the_hook_logging(host: Any) -> None:
    args = ("playbooks/rollback.yml", "--tags", "disable")
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    service = host.service(SERVICE)
    assert not service.is_running
    assert not service.is_enabled
    before = query(host, "SELECT count(*) FROM sessions")[0][0]
    write_events(host, "disabled")
    assert query(host, "SELECT count(*) FROM sessions")[0][0] == before + 1
    rc, out = playbook(*args)
    assert rc == 0, out[-3000:]
    assert recap(out, HOST)["changed"] == 0, out[-3000:]
