"""Events the database cannot take now are kept in the user's private spool and written later.

The hook writing a database itself (``--db``): real SQLite files and a real lock, a second
connection holds ``BEGIN IMMEDIATE`` while hooks run with no busy timeout, a member of the hook
group plants ``-journal`` as a link. Whatever subset of a session's events fails, once the
database is back every event is in it and the exported numbers equal those of the same events
written directly (hypothesis; test_ingest.py has the same through the ingest socket).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from collector_db import make_db, samples, value
from hook_events import event, rows, run_hook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hook_order import exported, subagent_events, tool_use_events

from agentmon.collector.collector import ExporterCollector
from agentmon.hook import spool
from agentmon.schema import migrations

NO_WAIT = ("--busy-timeout-ms", "0")
AGENTMON = Path(sys.executable).with_name("agentmon")


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another writer holds the database's write lock."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def home_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home)}


def raw(item: dict[str, Any]) -> bytes:
    return json.dumps(item).encode()


def spool_files(env: dict[str, str]) -> list[Path]:
    folder = Path(env["HOME"]) / ".local/state/agentmon/spool"
    return sorted(folder.glob("*.json")) if folder.exists() else []


def test_an_event_refused_by_a_locked_database_is_kept_then_written(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    env = home_env(tmp_path)
    with locked(db):
        code, err = run_hook(event("Stop"), db, *NO_WAIT, env=env)
    assert code == 0
    assert "database is locked" in err
    assert "event kept in" in err
    assert "1 waiting" in err
    (kept,) = spool_files(env)
    folder = kept.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["hook_event_name"] == "Stop"
    assert rows(db, "SELECT count(*) FROM sessions") == [(0,)]
    # the next event of any session, once the lock is gone, brings the kept one in
    assert run_hook(event("Notification", session="sess-2"), db, *NO_WAIT, env=env) == (0, "")
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("sess-1",),
                                                                           ("sess-2",)]
    assert spool_files(env) == []


def test_a_planted_journal_link_stops_no_one(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    env = home_env(tmp_path)
    journal = Path(f"{db}-journal")
    journal.symlink_to(tmp_path / "elsewhere")
    _code, err = run_hook(event("Notification"), db, env=env)
    assert "removed planted symbolic link(s)" in err
    assert not journal.is_symlink()
    assert not (tmp_path / "elsewhere").exists()
    assert rows(db, "SELECT count(*) FROM sessions") == [(1,)]


def test_a_side_file_the_hook_cannot_fix_loses_no_event(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    env = home_env(tmp_path)
    wal = Path(f"{db}-wal")
    wal.unlink(missing_ok=True)
    wal.mkdir()  # not a link (not removed), not a file: SQLite cannot use it
    events = tool_use_events("PostToolUse")
    for item in events:
        _code, err = run_hook(item, db, env=env)
        assert "database unavailable" in err
        assert "event kept in" in err
    assert len(spool_files(env)) == 2
    wal.rmdir()  # the operator removes it (AgentmonRecordingBlocked says so)
    assert run_hook(event("Notification"), db, env=env) == (0, "")
    assert rows(db, "SELECT tool_use_id, status FROM agent_tool_uses") == [("toolu_b",
                                                                           "completed")]
    assert spool_files(env) == []


def test_a_full_spool_keeps_the_oldest_and_counts_the_dropped(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    monkeypatch.setattr(spool, "MAX_EVENTS", 2)
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    env = home_env(tmp_path)
    with locked(db):
        for n in range(4):
            _, err = run_hook(event("Notification", session=f"s{n}"), db, *NO_WAIT, env=env)
        assert "spool" in err
        assert "full (2 dropped so far)" in err
    assert run_hook(event("Notification", session="later"), db, *NO_WAIT, env=env) == (0, "")
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [
        ("later",), ("s0",), ("s1",)]
    folder = Path(env["HOME"]) / ".local/state/agentmon/spool"
    assert (folder / "dropped").read_text() == "2\n"


def test_the_spool_follows_xdg_state_home_and_fixes_loose_modes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = state / "agentmon" / "spool"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    env = {"XDG_STATE_HOME": str(state), "HOME": str(tmp_path / "unused")}
    said, counts = spool.keep(raw(event("Stop")), env)
    assert said == f"event kept in {folder} (1 waiting)"
    assert counts is not None
    assert counts[:2] == (1, 0)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert spool.spool_dir({"XDG_STATE_HOME": "relative", "HOME": "/h"}) == (
        "/h/.local/state/agentmon/spool")


@pytest.mark.parametrize("env", [{}, {"HOME": "relative/home"}])
def test_without_a_home_folder_the_event_is_dropped_with_a_reason(env: dict[str, str]) -> None:
    assert spool.spool_dir(env) is None
    assert spool.keep(raw(event("Stop")), env) == (
        "event dropped (no home folder for the spool)", None)
    assert spool.drain_into(lambda _event, _data: None, env) == (None, None)


def test_a_spool_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "agentmon").mkdir(parents=True)
    target = tmp_path / "target"
    target.mkdir()
    (state / "agentmon" / "spool").symlink_to(target)
    said, counts = spool.keep(raw(event("Stop")), {"XDG_STATE_HOME": str(state)})
    assert counts is None
    assert said.startswith("event dropped: spool unavailable:")
    assert "symbolic link" in said
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_spool_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = state / "agentmon" / "spool"
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder, 65534, 65534)
    said, _counts = spool.keep(raw(event("Stop")), {"XDG_STATE_HOME": str(state)})
    assert "belongs to uid 65534" in said
    assert list(folder.iterdir()) == []


def test_a_damaged_spool_file_is_dropped_and_counted(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    env = home_env(tmp_path)
    with locked(db):
        run_hook(event("Stop", session="kept"), db, *NO_WAIT, env=env)
    folder = Path(env["HOME"]) / ".local/state/agentmon/spool"
    (folder / "00000000000000000001-bad.json").write_text("{not json")
    (folder / "00000000000000000002-invalid.json").write_text('{"hook_event_name": 3}')
    (folder / "00000000000000000003-link.json").symlink_to(tmp_path / "x")
    assert run_hook(event("Notification", session="next"), db, env=env) == (0, "")
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("kept",),
                                                                           ("next",)]
    assert (folder / "dropped").read_text() == "3\n"
    assert spool_files(env) == []


def test_a_database_failing_during_the_drain_keeps_the_rest(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    for n in range(4):
        spool.keep(raw(event("Notification", session=f"s{n}")), env)
    calls: list[str] = []

    def record(item: dict[str, Any], data: bytes) -> None:
        assert json.loads(data) == item
        calls.append(item["session_id"])
        if len(calls) == 2:
            raise spool.Refused("refused for good")
        if len(calls) == 3:
            raise spool.Unavailable("database is locked")

    counts, why = spool.drain_into(record, env)
    assert why == "database is locked"
    assert calls == ["s0", "s1", "s2"]
    assert len(spool_files(env)) == 2  # s2 (not written) and s3 wait for the next run
    assert counts is not None
    assert counts[:2] == (2, 1)  # s1, refused for good, is counted as dropped


SESSION = [*tool_use_events("PostToolUse"), *subagent_events("PostToolUse"),
           event("SessionEnd")]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failing=st.lists(st.booleans(), min_size=len(SESSION), max_size=len(SESSION)))
def test_whatever_fails_every_event_arrives_and_the_numbers_match(tmp_path_factory: Any,
                                                                   failing: list[bool]) -> None:
    folder = tmp_path_factory.mktemp("spooled")
    direct = make_db(folder / "direct.db", migrations.LATEST)
    for item in SESSION:
        assert run_hook(item, direct) == (0, "")
    db = make_db(folder / "spooled.db", migrations.LATEST)
    env = home_env(folder)
    for item, fails in zip(SESSION, failing, strict=True):
        if fails:
            with locked(db):
                _, err = run_hook(item, db, *NO_WAIT, env=env)
            assert "event kept in" in err
        else:
            assert run_hook(item, db, *NO_WAIT, env=env) == (0, "")
    assert run_hook(event("Notification", session="other"), db, env=env) == (0, "")
    assert spool_files(env) == []
    assert exported(db) == exported(direct)
    assert rows(db, "SELECT tool_use_id, status FROM agent_tool_uses") == rows(
        direct, "SELECT tool_use_id, status FROM agent_tool_uses")
    assert rows(db, "SELECT tool_use_id, status, agent_name FROM agent_invocations") == rows(
        direct, "SELECT tool_use_id, status, agent_name FROM agent_invocations")


def test_the_exporter_shows_a_planted_link_the_hooks_refuse(tmp_path: Path) -> None:
    """Reads still work (agentmon_db_up 1) while a link is planted: the gauge tells."""
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    collector = ExporterCollector(db)
    collector.refresh()
    assert value(samples(collector), "agentmon_db_unsafe_side_files") == 0
    Path(f"{db}-journal").symlink_to(tmp_path / "elsewhere")
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_db_up") == 1
    assert value(snap, "agentmon_db_unsafe_side_files") == 1
    _, err = run_hook(event("Stop"), db, env=home_env(tmp_path))  # the next hook removes it
    assert "removed planted symbolic link(s)" in err
    collector.refresh()
    assert value(samples(collector), "agentmon_db_unsafe_side_files") == 0


def as_nobody(db: Path, state: Path, item: dict[str, Any]) -> str:
    """Run the console script as the unprivileged user nobody; its stderr. A locked database
    spools at once (NO_WAIT), as after the default busy timeout."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent",
           "XDG_STATE_HOME": str(state)}
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(AGENTMON), "hook",
         "--db", str(db), *NO_WAIT], input=json.dumps(item).encode(), capture_output=True,
        env=env, timeout=60, check=False)
    assert proc.returncode == 0
    return proc.stderr.decode()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the hook as other real users")
@pytest.mark.parametrize("sticky", [False, True])
def test_a_link_planted_by_another_user_as_real_users(sticky: bool) -> None:
    """Another uid plants the link in the shared folder; the hook runs as nobody. A plain
    group-writable folder: the hook removes the link and records. A sticky one (the link is
    not the hook user's to remove): refused, the event waits in nobody's spool."""
    top = Path(tempfile.mkdtemp(prefix="agentmon-real-users-"))  # pytest's are root-only
    try:
        _planted_as_real_users(top, sticky)
    finally:
        shutil.rmtree(top)


def _planted_as_real_users(tmp_path: Path, sticky: bool) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    db = make_db(shared / "a.db", migrations.LATEST)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            path.chmod(0o666)
    shared.chmod(0o1777 if sticky else 0o777)
    tmp_path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    link = Path(f"{db}-journal")
    link.symlink_to(tmp_path / "victim")
    os.chown(link, 12345, 12345, follow_symlinks=False)
    err = as_nobody(db, state, event("Stop", session="nobody-1"))
    if not sticky:
        assert "removed planted symbolic link(s)" in err
        assert not link.is_symlink()
        assert rows(db, "SELECT session_id FROM sessions") == [("nobody-1",)]
        return
    assert "is a symbolic link" in err
    assert "event kept in" in err
    (kept,) = (state / "agentmon" / "spool").glob("*.json")
    assert (kept.stat().st_uid, stat.S_IMODE(kept.stat().st_mode)) == (65534, 0o600)
    link.unlink()  # the operator, after AgentmonRecordingBlocked
    assert as_nobody(db, state, event("Notification", session="nobody-2")) == ""
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("nobody-1",),
                                                                     ("nobody-2",)]
    assert not (tmp_path / "victim").exists()
