"""Issue 19, item 3's metric on the real host: an event the ingest service cannot store for alice
(the database locked by another writer) waits in her spool, her hook tells the service its
counts, and Prometheus sees it waiting through the exporter, then sees none once her next hook
run has drained it through the service. The status folder is the service's (its account's,
closed to everyone but the data group, which reads it)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from verify_helpers import http, wait_for

CA = "/etc/ssl/agentmon/ca.crt"
ADMIN = ("admin", "molecule-default-admin-password")
DB = "/var/lib/agentmon/agent_workflow.db"
STATUS = "/var/lib/agentmon/spool-status"
HOOK = "/opt/agentmon/current/bin/agentmon"
SOCKET = "/run/agentmon/ingest.sock"
# In /tmp: the holder runs as the service account, which may not write /run.
READY, RELEASE = "/tmp/agentmon-test-lock.ready", "/tmp/agentmon-test-lock.release"
# Holds the database's write lock (as the service account) until RELEASE appears.
HOLDER = f"""
import os, sqlite3, time
c = sqlite3.connect({DB!r}, isolation_level=None, timeout=60)
c.execute("BEGIN IMMEDIATE")
open({READY!r}, "w").close()
deadline = time.monotonic() + 600
while not os.path.exists({RELEASE!r}) and time.monotonic() < deadline:
    time.sleep(0.2)
c.execute("ROLLBACK")
"""


def waiting(host: Any) -> float | None:
    name = host.check_output("hostname")
    query = urllib.parse.urlencode({"query": 'agentmon_spool_events_waiting{job="agentmon"}'})
    answer = http(host, f"https://{name}/prometheus/api/v1/query?{query}", basic=ADMIN, ca=CA)
    assert answer["status"] == 200, answer
    result = json.loads(answer["body"])["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def hook(host: Any, session: str) -> str:
    event = {"hook_event_name": "Notification", "session_id": session,
             "transcript_path": "/home/alice/.claude/projects/p/s.jsonl",
             "cwd": "/home/alice", "permission_mode": "default", "message": "waiting"}
    run = host.run("printf %s %s | runuser -u alice -- %s hook --socket %s --busy-timeout-ms 0",
                   "%s", json.dumps(event), HOOK, SOCKET)
    assert run.rc == 0, run.stderr
    return run.stderr


def test_the_status_folder_is_the_services(host: Any) -> None:
    folder = host.file(STATUS)
    assert folder.is_directory
    assert not folder.is_symlink
    # The ingest service's (it writes every user's counts); the exporter reads it (group).
    assert (folder.user, folder.group, folder.mode) == ("agentmon-db", "agentmon", 0o750)


def test_a_waiting_event_is_exported_then_drained(host: Any) -> None:
    host.run("rm -f %s %s", READY, RELEASE)
    host.check_output("systemd-run --collect --unit agentmon-test-lock --uid agentmon-db"
                      " --gid agentmon"
                      " /usr/bin/python3 -c %s", HOLDER)
    try:
        wait_for(lambda: host.file(READY).exists, "the lock holder")
        said = hook(host, "spool-e2e-1")
        assert "database is locked" in said, said
        assert "event kept in" in said, said
        uid = host.user("alice").uid
        status = host.file(f"{STATUS}/{uid}")
        assert status.user == "agentmon-db"  # the service's, with alice's counts
        assert status.content_string.startswith("waiting 1\n"), status.content_string
        wait_for(lambda: (waiting(host) or 0) >= 1, "agentmon_spool_events_waiting >= 1")
    finally:
        host.run("touch %s", RELEASE)
        wait_for(lambda: host.run("systemctl is-active agentmon-test-lock").rc != 0,
                 "the lock holder to end")
        host.run("rm -f %s %s", READY, RELEASE)
    # alice's next event drains hers (written first), and the status says none waits.
    assert hook(host, "spool-e2e-2") == ""
    wait_for(lambda: waiting(host) == 0, "agentmon_spool_events_waiting back to 0")
