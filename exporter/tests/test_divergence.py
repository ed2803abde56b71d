"""Numbers that must not silently diverge: restored backups, deletes and replaces.

Each reproduction from issue 8 is here and failed before: the exporter kept counting rows that
no longer existed. After every refresh the exported values must equal a recount of the file.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from collector_db import (
    add_invocation,
    add_session,
    add_tool_use,
    add_usage,
    make_db,
    samples,
    value,
    writer,
)
from test_truth import assert_matches, recount

from agentmon.collector import checkpoint
from agentmon.collector.collector import ExporterCollector
from agentmon.schema import migrations
from agentmon.schema.migrate import migrate


def rebuilds(collector: ExporterCollector) -> float:
    return value(samples(collector), "agentmon_state_rebuilds_total")


def checked(collector: ExporterCollector, db: Path) -> None:
    collector.refresh()
    assert collector.db_up
    assert_matches(samples(collector), recount(db))


def backup(db: Path, to: Path) -> Path:
    with sqlite3.connect(db) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
    return to


def restore(copy: Path, db: Path) -> None:
    """Over the live file, in place (same inode), as sqlite3's .restore does."""
    src, dst = sqlite3.connect(copy), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()


@pytest.mark.parametrize("how", ["restart", "running", "copied-file"])
def test_a_restored_backup_is_noticed_after_writes_pass_the_mark(
        db: Path, tmp_path: Path, how: str) -> None:
    """Issue 8's reproduction: 5 deleted rows still counted, 1 instead of 6 for another agent,
    state_rebuilds 0."""
    ckpt = tmp_path / "state.json"
    conn = writer(db)
    add_invocation(conn, agent="coder", duration=1.0)
    copy = backup(db, tmp_path / "backup.db")
    for _ in range(5):
        add_invocation(conn, agent="planner", duration=2.0)
    conn.close()
    collector = ExporterCollector(db, checkpoint_path=ckpt, checkpoint_interval=0)
    checked(collector, db)
    assert collector.save_checkpoint()
    if how != "running":
        collector.close()
    if how == "copied-file":
        shutil.copyfile(copy, db.with_suffix(".new"))
        db.with_suffix(".new").replace(db)
        for side in ("-wal", "-shm"):
            Path(str(db) + side).unlink(missing_ok=True)
    else:
        restore(copy, db)
    conn = writer(db)
    for _ in range(8):  # carries the sequence past the checkpoint's mark
        add_invocation(conn, agent="coder", duration=1.0)
    conn.close()
    if how != "running":
        collector = ExporterCollector(db, checkpoint_path=ckpt)
    checked(collector, db)
    snap = samples(collector)
    assert value(snap, "agentmon_invocations_total", agent="planner", phase="plan",
                 status="completed") == 0
    assert value(snap, "agentmon_invocations_total", agent="coder", phase="plan",
                 status="completed") == 9
    assert rebuilds(collector) == (2 if how == "running" else 1)


def test_a_restore_that_loses_only_running_rows_is_noticed(db: Path, tmp_path: Path) -> None:
    """Nothing counted was lost, but rows written after the restore reuse sequence numbers
    the state has already passed: the head witness (the row stamped last) catches it."""
    conn = writer(db)
    add_invocation(conn, duration=1.0)
    copy = backup(db, tmp_path / "backup.db")
    for _ in range(3):
        add_tool_use(conn, status="running")
    collector = ExporterCollector(db)
    checked(collector, db)
    conn.close()
    restore(copy, db)
    conn = writer(db)
    for _ in range(5):
        add_tool_use(conn, status="completed", duration=0.5)  # seqs the state has "seen"
    conn.close()
    checked(collector, db)
    assert rebuilds(collector) == 2


def test_a_restore_of_a_lost_session_change_is_noticed(db: Path, tmp_path: Path) -> None:
    conn = writer(db)
    add_session(conn, "s1", "active")
    copy = backup(db, tmp_path / "backup.db")
    conn.execute("UPDATE sessions SET status = 'completed' WHERE session_id = 's1'")
    collector = ExporterCollector(db)
    checked(collector, db)
    conn.close()
    restore(copy, db)
    conn = writer(db)
    for _ in range(3):
        add_invocation(conn, status="running")
    conn.close()
    checked(collector, db)
    assert rebuilds(collector) == 2


@pytest.mark.parametrize("table", ["agent_invocations", "agent_tool_uses"])
def test_insert_or_replace_of_a_finished_row_is_counted_once(db: Path, table: str) -> None:
    """Reproduction: the replaced row was counted, and its replacement again."""
    conn = writer(db)
    add = add_invocation if table == "agent_invocations" else add_tool_use
    row = add(conn, duration=1.0)
    collector = ExporterCollector(db)
    checked(collector, db)
    conn.execute(f"INSERT OR REPLACE INTO {table} (id, agent_name, status, duration_seconds)"  # noqa: S608
                 " VALUES (?, 'other', 'error', 3.0)", (row,))
    checked(collector, db)
    assert rebuilds(collector) == 2
    conn.close()


def test_deleted_finished_rows_leave_the_counters(db: Path) -> None:
    conn = writer(db)
    for _ in range(4):
        add_invocation(conn, duration=1.0)
    add_tool_use(conn, duration=0.1)
    collector = ExporterCollector(db)
    checked(collector, db)
    conn.execute("DELETE FROM agent_invocations WHERE id <= 2")
    checked(collector, db)
    assert value(samples(collector), "agentmon_invocations_total", agent="planner",
                 phase="plan", status="completed") == 2
    conn.execute("DELETE FROM agent_tool_uses")
    checked(collector, db)
    assert rebuilds(collector) == 3
    conn.close()


def test_deleting_a_running_row_needs_no_rebuild(db: Path) -> None:
    conn = writer(db)
    add_invocation(conn, duration=1.0)
    add_invocation(conn, status="running")
    running = add_invocation(conn, status="running")
    add_invocation(conn, status="completed", duration=2.0)  # the head is a finished row
    collector = ExporterCollector(db)
    checked(collector, db)
    conn.execute("DELETE FROM agent_invocations WHERE id = ?", (running,))
    checked(collector, db)
    assert rebuilds(collector) == 1
    conn.close()


@pytest.mark.parametrize("change", ["replace", "delete", "replace-completed"])
def test_a_replaced_or_deleted_session_leaves_the_sessions_gauge_true(
        db: Path, change: str) -> None:
    """Reproduction: agentmon_sessions kept the old row's status."""
    conn = writer(db)
    add_session(conn, "s1", "active")
    add_session(conn, "s2", "completed")
    collector = ExporterCollector(db)
    checked(collector, db)
    if change == "replace":
        conn.execute("INSERT OR REPLACE INTO sessions (session_id, status) VALUES ('s1', 'paused')")
    elif change == "replace-completed":
        conn.execute("REPLACE INTO sessions (session_id, status) VALUES ('s2', 'completed')")
    else:
        conn.execute("DELETE FROM sessions WHERE session_id = 's2'")
    checked(collector, db)
    assert rebuilds(collector) == 2
    conn.close()


def test_hook_like_traffic_never_rebuilds(db: Path) -> None:
    """No false alarms: inserts, finishes, session upserts and resumes, many refreshes."""
    conn = writer(db)
    collector = ExporterCollector(db, batch_size=2)
    for i in range(30):
        sid = f"s{i % 4}"
        conn.execute("INSERT INTO sessions (session_id, status) VALUES (?, 'active')"
                     " ON CONFLICT (session_id) DO UPDATE SET status = 'active'", (sid,))
        inv = add_invocation(conn, status="running", session=sid)
        tool = add_tool_use(conn, status="running", session=sid)
        conn.execute("UPDATE agent_tool_uses SET status = 'completed', duration_seconds = 0.2"
                     " WHERE id = ?", (tool,))
        if i % 3 == 0:
            conn.execute("UPDATE agent_invocations SET status = 'error' WHERE id = ?", (inv,))
            conn.execute("UPDATE sessions SET status = 'completed' WHERE session_id = ?", (sid,))
        checked(collector, db)
    assert rebuilds(collector) == 1


def test_the_real_hook_never_triggers_a_rebuild(tmp_path: Path) -> None:
    """Every event type through agentmon's own hook, refreshes in between: witnesses and
    counts hold, so the state is built once; numbers equal SQL throughout."""
    from hook_events import EVENT_NAMES, event, run_hook

    db = tmp_path / "agent_workflow.db"
    collector = ExporterCollector(db)
    sequence = ["SessionStart", *EVENT_NAMES, "SessionStart", "PreToolUse", "PostToolUse",
                "SessionEnd", "SessionStart", "PreToolUse", "PostToolUseFailure", "SessionEnd"]
    for i, name in enumerate(sequence):
        for session in ("sess-1", "sess-2"):
            fields = {"tool_use_id": f"toolu_{i}"} if "ToolUse" in name else {}
            code, err = run_hook(event(name, session, **fields), db)
            assert code == 0, err
            checked(collector, db)
    assert rebuilds(collector) == 1


# ---------------------------------------------------------------- the removal token

TOKEN_STEP = next(s.version for s in migrations.STEPS if s.name == "removal_token")
# One removal of each kind the triggers count; {end} is MIN before the restore, MAX after it,
# so the file then differs from the one counted while its removal counter reads the same.
REMOVALS = {
    "session": "DELETE FROM sessions WHERE rowid = (SELECT {end}(rowid) FROM sessions)",
    "invocation": "DELETE FROM agent_invocations WHERE id ="
                  " (SELECT {end}(id) FROM agent_invocations)",
    "replaced tool use": "INSERT OR REPLACE INTO agent_tool_uses (id, agent_name, tool_name,"
                         " status, duration_seconds) SELECT {end}(id), 'coder', 'Read',"
                         " 'completed', 1.0 FROM agent_tool_uses",
    "usage": "DELETE FROM agent_usage WHERE id = (SELECT {end}(id) FROM agent_usage)",
}


def removal_counter(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT value FROM agentmon_removals").fetchone()[0]
    conn.close()
    return int(found)


def history_with_one_of_each(db: Path) -> None:
    conn = writer(db)
    for i, (agent, status) in enumerate((("planner", "active"), ("coder", "completed"),
                                         ("tester", "paused"))):
        add_session(conn, f"s{i}", status)
        add_invocation(conn, agent=agent, duration=float(i))
        add_tool_use(conn, agent=agent, tool=("Bash", "Grep", "Edit")[i], duration=i / 10)
        add_usage(conn, agent=agent, counts=(10 ** i, 0, 0, 0, 0, 0))
    conn.close()


@pytest.mark.parametrize("how", ["running", "restart"])
@pytest.mark.parametrize("kind", sorted(REMOVALS))
def test_a_restore_then_as_many_removals_as_it_took_back_is_noticed(
        db: Path, tmp_path: Path, kind: str, how: str, caplog: pytest.LogCaptureFixture) -> None:
    """The counter repeats, the token does not (and survives the checkpoint)."""
    ckpt = tmp_path / "state.json"
    history_with_one_of_each(db)
    copy = backup(db, tmp_path / "backup.db")
    conn = writer(db)
    conn.execute(REMOVALS[kind].format(end="MIN"))
    conn.close()
    collector = ExporterCollector(db, checkpoint_path=ckpt, checkpoint_interval=0)
    checked(collector, db)
    seen = removal_counter(db)
    if how == "restart":
        assert collector.save_checkpoint()
        collector.close()
    restore(copy, db)
    conn = writer(db)
    conn.execute(REMOVALS[kind].format(end="MAX"))
    conn.close()
    assert removal_counter(db) == seen
    if how == "restart":
        collector = ExporterCollector(db, checkpoint_path=ckpt)
    with caplog.at_level(logging.INFO, logger="agentmon.collector"):
        checked(collector, db)
    assert rebuilds(collector) == (2 if how == "running" else 1)
    assert any("a restored backup, then as many deletes?" in r.getMessage()
               for r in caplog.records)
    collector.close()


def _as_format_3(ckpt: Path) -> None:
    """Rewrite a checkpoint as the exporter before the token wrote it."""
    data = json.loads(ckpt.read_text())
    del data["digest"]
    del data["state"]["removal_token"]
    data["format"] = 3
    text = json.dumps({**data, "digest": checkpoint._digest(data)})
    ckpt.write_text(text)


def test_a_format_3_checkpoint_is_resumed_and_then_takes_the_token(
        db: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "state.json"
    history_with_one_of_each(db)
    collector = ExporterCollector(db, checkpoint_path=ckpt, checkpoint_interval=0)
    checked(collector, db)
    assert collector.save_checkpoint()
    collector.close()
    _as_format_3(ckpt)
    copy = backup(db, tmp_path / "backup.db")
    collector = ExporterCollector(db, checkpoint_path=ckpt, checkpoint_interval=0)
    checked(collector, db)
    assert rebuilds(collector) == 0  # the upgrade costs no rebuild
    assert collector.save_checkpoint()
    assert json.loads(ckpt.read_text())["format"] == checkpoint.FORMAT
    # from now on the token is known: a restore, then as many removals, is noticed
    conn = writer(db)
    conn.execute(REMOVALS["session"].format(end="MIN"))
    conn.close()
    checked(collector, db)
    restore(copy, db)
    conn = writer(db)
    conn.execute(REMOVALS["session"].format(end="MAX"))
    conn.close()
    checked(collector, db)
    assert rebuilds(collector) == 2
    collector.close()


def test_the_token_step_up_costs_no_rebuild_and_its_down_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = make_db(tmp_path / "agent_workflow.db", TOKEN_STEP - 1)
    history_with_one_of_each(db)
    collector = ExporterCollector(db)
    checked(collector, db)  # a database before the step: the counter alone
    conn = writer(db)
    conn.execute(REMOVALS["invocation"].format(end="MIN"))
    conn.close()
    checked(collector, db)
    assert rebuilds(collector) == 2
    migrate(db, backup_dir=tmp_path / "backups")
    checked(collector, db)
    assert rebuilds(collector) == 2  # the token is taken as it is
    migrate(db, TOKEN_STEP - 1, backup_dir=tmp_path / "backups")
    with caplog.at_level(logging.INFO, logger="agentmon.collector"):
        checked(collector, db)
    assert rebuilds(collector) == 3
    assert any("the removal token is gone" in r.getMessage() for r in caplog.records)
    collector.close()


def test_the_witnesses_survive_a_restart(db: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "state.json"
    conn = writer(db)
    add_session(conn, "s1")
    add_invocation(conn, duration=1.0)
    add_tool_use(conn, duration=1.0)
    collector = ExporterCollector(db, checkpoint_path=ckpt)
    checked(collector, db)
    collector.save_checkpoint()
    collector.close()
    again = ExporterCollector(db, checkpoint_path=ckpt)
    checked(again, db)
    assert rebuilds(again) == 0  # resumed: the checkpoint's witnesses all hold
    conn.close()


def test_empty_tables_have_no_witness_and_still_work(db: Path, tmp_path: Path) -> None:
    collector = ExporterCollector(db)
    checked(collector, db)
    copy = backup(db, tmp_path / "backup.db")
    conn = writer(db)
    add_invocation(conn, duration=1.0)
    conn.close()
    checked(collector, db)
    restore(copy, db)
    checked(collector, db)  # the sequence went backwards
    assert rebuilds(collector) == 2


def test_a_newer_schema_is_unusable(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Reproduction: a database from a newer agentmon was reported healthy (db_up 1)."""
    conn = writer(db)
    add_invocation(conn, duration=1.0)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    collector = ExporterCollector(db)
    with caplog.at_level(logging.INFO, logger="agentmon.collector"):
        collector.refresh()
        collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_db_up") == 0
    assert value(snap, "agentmon_refresh_errors_total", reason="not_migrated") == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "newer than this agentmon knows" in lines[0]
    assert "upgrade agentmon" in lines[0]


def test_a_database_without_the_removals_step_is_not_migrated(db: Path) -> None:
    from agentmon.collector.reading import MIN_SCHEMA
    from agentmon.schema.migrate import migrate

    migrate(db, MIN_SCHEMA - 1)
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_db_up") == 0
    assert value(snap, "agentmon_refresh_errors_total", reason="not_migrated") == 1
