"""The hooks role's default scope on the real host: one managed settings drop-in that Claude Code
applies to every user of the host. A user created after the converge, in no group of agentmon's,
runs the drop-in's hook command as Claude Code would (a shell of that user, the event as JSON on
stdin) and the event is recorded in the database through the ingest socket, with no other run of
the role; that user can neither read the database nor add anything to its folder."""

from __future__ import annotations

import json
import shlex
import uuid
from typing import Any

DROP_IN = "/etc/claude-code/managed-settings.d/50-agentmon.json"
DB = "/var/lib/agentmon/agent_workflow.db"
DATA = "/var/lib/agentmon"
SOCKET = "/run/agentmon/ingest.sock"


def test_the_drop_in_is_roots_and_readable_by_every_user(host: Any) -> None:
    for folder in ("/etc/claude-code", "/etc/claude-code/managed-settings.d"):
        info = host.file(folder)
        assert (info.user, info.group, info.mode, info.is_symlink) == ("root", "root", 0o755, False)
    drop_in = host.file(DROP_IN)
    assert (drop_in.user, drop_in.group, drop_in.mode) == ("root", "root", 0o644)
    hooks = json.loads(drop_in.content_string)["hooks"]
    assert {"PreToolUse", "SessionStart", "SessionEnd", "Stop"} <= set(hooks)
    # No per-user registration besides: alice has no settings of agentmon's.
    assert not host.file("/home/alice/.claude/settings.json").exists


def test_the_data_folder_is_the_service_accounts_and_the_socket_everyones(host: Any) -> None:
    folder, db = host.file(DATA), host.file(DB)
    assert (folder.user, folder.group, folder.mode) == ("agentmon-db", "agentmon", 0o2770)
    assert (db.user, db.group, db.mode) == ("agentmon-db", "agentmon", 0o660)
    members = host.check_output("getent group agentmon").split(":")[3].split(",")
    assert sorted(members) == ["agentmon-db", "agentmon-exporter"]
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.mode) == ("root", 0o666)
    run = host.file("/run/agentmon")
    assert (run.user, run.group, run.mode) == ("root", "root", 0o755)
    hook = json.loads(host.file(DROP_IN).content_string)["hooks"]["Stop"][0]["hooks"][0]
    assert shlex.split(hook["command"])[1:] == ["hook", "--socket", SOCKET]


def _recorded(host: Any, session: str) -> bool:
    script = ("import sqlite3,sys; c=sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True);"
              " print(c.execute('SELECT count(*) FROM sessions WHERE session_id = ?',"
              " (sys.argv[2],)).fetchone()[0])")
    return host.check_output("python3 -c %s %s %s", script, DB, session) == "1"


def test_a_user_created_after_the_converge_is_logged(host: Any) -> None:
    user = f"late{uuid.uuid4().hex[:6]}"
    host.check_output("useradd --create-home --shell /bin/bash %s", user)
    try:
        assert "agentmon" not in host.user(user).groups
        session = f"verify-{user}"
        event = {"session_id": session, "transcript_path": f"/home/{user}/.claude/t.jsonl",
                 "cwd": f"/home/{user}", "permission_mode": "default",
                 "hook_event_name": "SessionStart", "source": "startup"}
        entries = json.loads(host.file(DROP_IN).content_string)["hooks"]["SessionStart"]
        hooks = [h for entry in entries for h in entry["hooks"] if h.get("type") == "command"]
        assert len(hooks) == 1, hooks
        hook = hooks[0]
        # As Claude Code runs a command hook: a shell (or, in exec form, no shell) of the user.
        command = (shlex.join([hook["command"], *hook["args"]]) if "args" in hook
                   else hook["command"])
        run = host.run("printf %%s %s | runuser -u %s -- sh -c %s", json.dumps(event), user,
                       command)
        assert run.rc == 0, run.stderr
        assert run.stderr == "", run.stderr
        assert _recorded(host, session)
        # Logged, but the database is not theirs: no row to read, nothing to plant or remove.
        for attempt in (f"cat {DB}", f"ls {DATA}", f"touch {DATA}/planted",
                        f"ln -s /etc/shadow {DB}-journal", f"rm -f {DB}"):
            denied = host.run("runuser -u %s -- %s", user, attempt)
            assert denied.rc != 0, (attempt, denied.stdout)
            assert "Permission denied" in denied.stderr, (attempt, denied.stderr)
        assert not host.file(f"{DATA}/planted").exists
    finally:
        host.run("userdel --remove %s", user)
