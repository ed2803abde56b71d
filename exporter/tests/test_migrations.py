"""Schema migrations on real files built with the original project's DDL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from original_schema import build_original_db, full_dump, original_dump

from agentmon.schema import migrations, original
from agentmon.schema import plan as steps_plan
from agentmon.schema.db import connect_writer, table_columns
from agentmon.schema.migrate import ensure_latest, migrate

SHAPES = [
    pytest.param(dict(sessions_columns=4), id="sessions4"),
    pytest.param(dict(sessions_columns=6), id="sessions6"),
    pytest.param(dict(sessions_columns=4, with_tool_uses=True), id="sessions4+tool_uses"),
    pytest.param(dict(sessions_columns=6, with_tool_uses=True), id="sessions6+tool_uses"),
    pytest.param(dict(sessions_columns=4, with_agent_tool_uses=False), id="agent-hook-only"),
]


def same_rows(path: Path, before: dict) -> bool:
    """The original rows of ``path`` equal ``before`` (in ``before``'s sessions shape)."""
    width = len(before["sessions"][0]) if before.get("sessions") else None
    after = original_dump(path, width)
    created = [table for table in after if table not in before]  # by adoption: still empty
    return {t: after[t] for t in before} == before and not any(after[t] for t in created)


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def names(path: Path, kind: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = ?",
                                           (kind,))}
    finally:
        conn.close()


@pytest.mark.parametrize("shape", SHAPES)
def test_adopt_up_and_down_keeps_every_row_and_value(tmp_path: Path, shape: dict) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db", **shape)
    before = original_dump(db)
    tables_before = names(db, "table")

    result = migrate(db)
    assert (result.from_version, result.to_version) == (0, migrations.LATEST)
    assert version(db) == migrations.LATEST
    assert same_rows(db, before)
    conn = sqlite3.connect(db)
    assert {"cwd", "metadata"} <= set(table_columns(conn, "sessions"))
    assert "tool_use_id" in table_columns(conn, "agent_tool_uses")
    # rows from before change tracking keep NULL sequence numbers: the cold start counts them
    assert conn.execute("SELECT count(*) FROM agent_invocations WHERE agentmon_seq IS NOT NULL"
                        ).fetchone()[0] == 0
    conn.close()

    down = migrate(db, 0)
    assert [s.split()[1] for s in down.steps] == [
        f"{v}->{v - 1}" for v in range(migrations.LATEST, 0, -1)]
    assert version(db) == 0
    assert same_rows(db, before)
    # no down dropped a table; only agentmon's bookkeeping is gone
    after_tables = names(db, "table")
    assert tables_before <= after_tables
    assert not {"agentmon_meta", "agentmon_sequence"} & after_tables
    assert not names(db, "trigger")
    assert not {i for i in names(db, "index") if i.startswith("idx_invocations")}


def schema_by_columns(dump: dict) -> list[object]:
    """The schema with each table's columns as a set (their order left out)."""
    out: list[object] = []
    for kind, name, table, sql in dump["schema"]:
        if kind == "table":
            body = sql[sql.index("(") + 1: sql.rindex(")")]
            out.append((kind, name, table, frozenset(" ".join(part.split())
                                                      for part in body.split(","))))
        else:
            out.append((kind, name, table, sql))
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_up_down_up_again_is_stable(tmp_path: Path, shape: dict) -> None:
    db = build_original_db(tmp_path / "a.db", **shape)
    before = original_dump(db)
    migrate(db)
    first = full_dump(db)
    migrate(db, 0)
    migrate(db)
    again = full_dump(db)
    assert same_rows(db, before)
    # Step 4's agent_id column holds hook-written values and survives the down (as step 1's
    # columns do), so the second up adds agentmon_seq after it: same columns, other order.
    assert schema_by_columns(again) == schema_by_columns(first)
    migrate(db, 0)
    migrate(db)
    assert full_dump(db)["schema"] == again["schema"]
    assert again["user_version"] == migrations.LATEST


@pytest.mark.parametrize("make", ["empty-file", "new-path"])
def test_adopts_an_empty_file_and_a_brand_new_path(tmp_path: Path, make: str) -> None:
    db = tmp_path / "fresh.db"
    if make == "empty-file":
        db.touch()
    result = migrate(db, backup_dir=tmp_path / "backups")
    assert result.to_version == migrations.LATEST
    assert result.backup is None  # nothing to lose yet
    assert not (tmp_path / "backups").exists()
    assert {"sessions", "agent_invocations", "agent_tool_uses", "agentmon_meta",
            "agentmon_sequence"} <= names(db, "table")
    assert len(names(db, "trigger")) == 13 + len(migrations.usage_triggers())  # 8 + 5 removals
    migrate(db, 0)
    assert version(db) == 0


def test_a_second_run_is_a_no_op(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    backups = tmp_path / "b"
    first = migrate(db, backup_dir=backups)
    assert first.backup is not None
    snapshot = full_dump(db)
    second = migrate(db, backup_dir=backups)
    assert second.steps == []
    assert second.backup is None
    assert not second.changed
    assert (second.from_version, second.to_version) == (migrations.LATEST, migrations.LATEST)
    assert len(list(backups.iterdir())) == 1
    assert full_dump(db) == snapshot


def test_dry_run_changes_nothing_not_even_the_journal_mode(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    raw = db.read_bytes()
    result = migrate(db, dry_run=True, backup_dir=tmp_path / "b")
    assert result.dry_run
    assert not result.changed
    assert result.steps == [f"up {s.version - 1}->{s.version} ({s.name})"
                            for s in migrations.STEPS]
    assert result.steps[:5] == ["up 0->1 (adopt)", "up 1->2 (indexes)", "up 2->3 (changes)",
                                "up 3->4 (interrupted)", "up 4->5 (removals)"]
    assert result.to_version == migrations.LATEST
    assert db.read_bytes() == raw
    assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db"]

    missing = tmp_path / "nothing-here.db"
    planned = migrate(missing, dry_run=True)
    assert len(planned.steps) == migrations.LATEST
    assert not missing.exists()

    migrate(db)
    at_latest = migrate(db, dry_run=True)
    assert at_latest.steps == []
    assert at_latest.to_version == migrations.LATEST
    down = migrate(db, 1, dry_run=True)
    assert down.steps == [f"down {s.version}->{s.version - 1} ({s.name})"
                          for s in reversed(migrations.STEPS[1:])]
    assert version(db) == migrations.LATEST


def test_to_a_lower_version_runs_the_downs_one_at_a_time(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    migrate(db)
    assert migrate(db, 3).steps == [f"down {s.version}->{s.version - 1} ({s.name})"
                                    for s in reversed(migrations.STEPS[3:])]
    assert names(db, "trigger") == {
        f"agentmon_{table}_{suffix}" for table in migrations.TRACKED for suffix in
        ("ins", "upd", *(("frozen",) if table in migrations.FROZEN_TABLES else ()))}
    assert "agentmon_removals" not in names(db, "table")
    assert migrate(db, 2).steps == ["down 3->2 (changes)"]
    assert not names(db, "trigger")
    conn = sqlite3.connect(db)
    assert "agentmon_seq" not in table_columns(conn, "agent_invocations")
    assert conn.execute("SELECT value FROM agentmon_meta WHERE key = 'tracking_id'"
                        ).fetchone() is None
    conn.close()
    assert set(migrations.INDEXES) <= names(db, "index")
    assert migrate(db, 1).steps == ["down 2->1 (indexes)"]
    assert not set(migrations.INDEXES) & names(db, "index")
    assert "agentmon_meta" in names(db, "table")
    assert migrate(db, 0).steps == ["down 1->0 (adopt)"]
    assert migrate(db, 2).steps == ["up 0->1 (adopt)", "up 1->2 (indexes)"]


def test_downs_keep_rows_and_columns_written_after_adoption(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db", sessions_columns=4)
    migrate(db)
    conn = connect_writer(db)
    conn.execute("INSERT INTO sessions (session_id, start_time, status, cwd, metadata)"
                  " VALUES ('new', '2026-01-01T00:00:00+00:00', 'active', '/w', '{}')")
    conn.execute("INSERT INTO agent_invocations (agent_name, phase, status, start_time,"
                  " tool_use_id) VALUES ('planner', 'planning', 'running',"
                  " '2026-01-01T00:00:01+00:00', 'toolu_01abc')")
    conn.execute("INSERT INTO agent_tool_uses (agent_name, tool_name, status, tool_use_id)"
                  " VALUES ('planner', 'Read', 'completed', 'toolu_01def')")
    conn.close()
    written = original_dump(db)
    migrate(db, 0)
    assert same_rows(db, written)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT tool_use_id FROM agent_invocations WHERE tool_use_id IS NOT NULL"
                        ).fetchall() == [("toolu_01abc",)]
    assert conn.execute("SELECT cwd FROM sessions WHERE session_id = 'new'").fetchone() == ("/w",)
    conn.close()


def test_adoption_does_not_duplicate_the_original_indexes(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    before = names(db, "index")

    def on_agent_tool() -> int:
        with closing(sqlite3.connect(db)) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = 'agent_tool_uses' AND sql LIKE '%(agent_name, tool_name)'"
            ).fetchone()[0])

    migrate(db, 1)
    assert on_agent_tool() == 1  # adopted, not duplicated
    migrate(db)
    # step 2 drops it: idx_tool_uses_agent starts with the same two columns
    assert on_agent_tool() == 0
    assert migrations.REDUNDANT_ORIGINAL_INDEX not in names(db, "index")
    assert "idx_tool_uses_agent" in names(db, "index")
    migrate(db, 0)
    # agent_usage (kept by its down: it holds recorded rows) keeps its UNIQUE key's index
    assert names(db, "index") - {"sqlite_autoindex_agent_usage_1"} == before


class FailAfterFirstStatement:
    """Wraps a connection: the first statement runs, the second raises (a step dying half-way)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements = 0

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        self.statements += 1
        if self.statements > 1:
            raise sqlite3.OperationalError("injected failure after the first statement")
        return self.conn.execute(sql, *args)


@pytest.mark.parametrize("failing", [1, 2, 3, 4])
def test_a_step_failing_half_way_leaves_version_and_schema_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: int) -> None:
    db = build_original_db(tmp_path / "a.db", sessions_columns=4, with_tool_uses=True)
    if failing > 1:
        migrate(db, failing - 1)
    before = full_dump(db)
    step = migrations.STEPS[failing - 1]
    original_up = step.up

    def half_way(conn: sqlite3.Connection) -> None:
        original_up(FailAfterFirstStatement(conn))  # type: ignore[arg-type]

    patched = tuple(replace(s, up=half_way) if s is step else s for s in migrations.STEPS)
    monkeypatch.setattr(migrations, "STEPS", patched)
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        migrate(db, backup_dir=tmp_path / "b")
    assert full_dump(db) == before
    monkeypatch.undo()
    assert migrate(db).to_version == migrations.LATEST


def test_a_down_failing_half_way_changes_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = build_original_db(tmp_path / "a.db")
    migrate(db)
    before = full_dump(db)
    step = migrations.STEPS[-1]  # the first down a migration to 0 runs
    original_down = step.down
    patched = tuple(replace(s, down=lambda c: original_down(FailAfterFirstStatement(c)))
                    if s is step else s for s in migrations.STEPS)
    monkeypatch.setattr(migrations, "STEPS", patched)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, 0)
    assert full_dump(db) == before


def test_two_migrate_processes_at_once_apply_each_step_once(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db", with_tool_uses=True)
    before = original_dump(db)
    cmd = [sys.executable, "-m", "agentmon.cli", "migrate", "--db", str(db), "--json",
           "--backup-dir", str(tmp_path / "b")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(out) for out, _ in outs]
    applied = sorted(step for r in results for step in r["steps"])
    assert applied == sorted(f"up {s.version - 1}->{s.version} ({s.name})"
                             for s in migrations.STEPS)
    assert all(r["to_version"] == migrations.LATEST for r in results)
    assert version(db) == migrations.LATEST
    assert same_rows(db, before)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM agentmon_meta WHERE key = 'db_id'"
                        ).fetchone()[0] == 1
    conn.close()


def test_a_writer_during_the_migration_loses_nothing(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        conn = connect_writer(db)
        try:
            for i in range(100_000):  # bounded; stops when the migration is done
                if stop.is_set() and i > 50:
                    break
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO agent_tool_uses (agent_name, tool_name, status)"
                             " VALUES ('tester', 'Bash', 'completed')")
                conn.execute("COMMIT")
                written.append(i)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        migrate(db, backup_dir=tmp_path / "b")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors
    conn = sqlite3.connect(db)
    count = conn.execute("SELECT count(*) FROM agent_tool_uses WHERE tool_name = 'Bash'"
                         " AND agent_name = 'tester'").fetchone()[0]
    conn.close()
    assert count == len(written) > 50


def test_ensure_latest_backs_up_and_migrates_a_database_that_is_behind(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    conn = connect_writer(db)
    ensure_latest(conn, db)
    ensure_latest(conn, db)  # at the latest: nothing more
    conn.close()
    assert version(db) == migrations.LATEST
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_ensure_latest_refuses_a_newer_database_without_a_backup(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    before = full_dump(db)
    conn = connect_writer(db)
    with pytest.raises(steps_plan.NewerSchemaError, match="newer than this agentmon knows"):
        ensure_latest(conn, db)
    assert not conn.in_transaction
    conn.close()
    assert full_dump(db) == before
    assert not (tmp_path / "backups").exists()


def frozen_sql(conn: sqlite3.Connection) -> dict[str, str]:
    return {name: sql for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%frozen'")}


def test_step_4_freezes_interrupted_rows_and_down_restores_step_3(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db", sessions_columns=4)
    migrate(db, 3)
    with closing(sqlite3.connect(db)) as conn:
        step3 = frozen_sql(conn)
    assert len(step3) == 2
    assert all("IN ('completed', 'error')" in sql for sql in step3.values())
    migrate(db, 4)
    with closing(connect_writer(db)) as conn:
        step4 = frozen_sql(conn)
        assert set(step4) == set(step3)
        assert all("IN ('completed', 'error', 'interrupted')" in sql for sql in step4.values())
        assert "agent_id" in table_columns(conn, "agent_invocations")
        cur = conn.execute("INSERT INTO agent_tool_uses (status) VALUES ('interrupted')")
        conn.execute("UPDATE agent_tool_uses SET status = 'completed' WHERE id = ?",
                     (cur.lastrowid,))
        assert conn.execute("SELECT status FROM agent_tool_uses WHERE id = ?",
                            (cur.lastrowid,)).fetchone() == ("interrupted",)
        # agent_id is not a metric column: it may be filled in on a finished row
        cur = conn.execute("INSERT INTO agent_invocations (status) VALUES ('completed')")
        conn.execute("UPDATE agent_invocations SET agent_id = 'a1' WHERE id = ?",
                     (cur.lastrowid,))
        assert conn.execute("SELECT agent_id FROM agent_invocations WHERE id = ?",
                            (cur.lastrowid,)).fetchone() == ("a1",)
    migrate(db, 3)
    with closing(sqlite3.connect(db)) as conn:
        assert frozen_sql(conn) == step3
        # the column holds hook-written values: it stays
        assert "agent_id" in table_columns(conn, "agent_invocations")
    assert migrate(db).to_version == migrations.LATEST
    with closing(sqlite3.connect(db)) as conn:
        assert {k: v for k, v in frozen_sql(conn).items() if k in step4} == step4


def test_plan_refuses_unknown_versions() -> None:
    with pytest.raises(ValueError, match="outside"):
        steps_plan.plan(0, migrations.LATEST + 1)
    with pytest.raises(ValueError, match="outside"):
        steps_plan.plan(0, -1)
    with pytest.raises(ValueError, match="newer than this agentmon knows"):
        steps_plan.plan(migrations.LATEST + 1, 0)
    assert steps_plan.plan(2, 2) == []


# ---------------------------------------------------------------- change tracking (step 3)


@pytest.fixture
def tracked(tmp_path: Path) -> Path:
    db = build_original_db(tmp_path / "a.db", sessions_columns=4)
    migrate(db)
    return db


def seq_of(conn: sqlite3.Connection, table: str, key: str, value: object) -> int | None:
    column = "session_id" if table == "sessions" else "id"
    row = conn.execute(f"SELECT {key} FROM {table} WHERE {column} = ?", (value,)).fetchone()  # noqa: S608
    return row[0]


def sequence(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM agentmon_sequence").fetchone()[0])


def test_inserts_and_metric_updates_bump_the_sequence(tracked: Path) -> None:
    conn = connect_writer(tracked)
    start = sequence(conn)
    cur = conn.execute("INSERT INTO agent_tool_uses (agent_name, tool_name, status, start_time)"
                       " VALUES ('tester', 'Bash', 'running', '2026-01-01T00:00:00+00:00')")
    row = cur.lastrowid
    assert seq_of(conn, "agent_tool_uses", "agentmon_seq", row) == start + 1
    # a column the metrics do not read: no bump
    conn.execute("UPDATE agent_tool_uses SET tool_output = '{}', tool_input = '{}' WHERE id = ?",
                 (row,))
    assert sequence(conn) == start + 1
    # completion: bumps
    conn.execute("UPDATE agent_tool_uses SET status = 'completed', duration_seconds = 1.5,"
                 " end_time = '2026-01-01T00:00:01.5+00:00' WHERE id = ?", (row,))
    assert seq_of(conn, "agent_tool_uses", "agentmon_seq", row) == start + 2 == sequence(conn)
    for column, value in (("agent_name", "x"), ("tool_name", "y"), ("start_time", "z"),
                          ("duration_seconds", 9.0), ("end_time", "w")):
        cur = conn.execute("INSERT INTO agent_tool_uses (status) VALUES ('running')")
        before = sequence(conn)
        conn.execute(f"UPDATE agent_tool_uses SET {column} = ? WHERE id = ?",  # noqa: S608
                     (value, cur.lastrowid))
        assert sequence(conn) == before + 1, column
    conn.close()


def test_finished_rows_are_frozen(tracked: Path) -> None:
    conn = connect_writer(tracked)
    for status in ("completed", "error", "interrupted"):
        cur = conn.execute("INSERT INTO agent_invocations (agent_name, phase, status,"
                           " duration_seconds) VALUES ('planner', 'planning', ?, 2.0)", (status,))
        row = cur.lastrowid
        seq = sequence(conn)
        conn.execute("UPDATE agent_invocations SET status = 'running', duration_seconds = 99,"
                     " raw_output = 'late' WHERE id = ?", (row,))
        assert conn.execute("SELECT status, duration_seconds, raw_output FROM agent_invocations"
                            " WHERE id = ?", (row,)).fetchone() == (status, 2.0, None)
        assert sequence(conn) == seq
        # columns outside the metric set may still change (no bump)
        conn.execute("UPDATE agent_invocations SET raw_output = 'ok' WHERE id = ?", (row,))
        assert seq_of(conn, "agent_invocations", "raw_output", row) == "ok"
        assert sequence(conn) == seq
    conn.close()


def test_sessions_get_created_seq_once_and_are_not_frozen(tracked: Path) -> None:
    conn = connect_writer(tracked)
    conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'active')")
    created = seq_of(conn, "sessions", "agentmon_created_seq", "s1")
    assert created == seq_of(conn, "sessions", "agentmon_seq", "s1") == sequence(conn)
    conn.execute("UPDATE sessions SET status = 'completed' WHERE session_id = 's1'")
    conn.execute("UPDATE sessions SET status = 'active' WHERE session_id = 's1'")  # resumed
    assert seq_of(conn, "sessions", "agentmon_created_seq", "s1") == created
    assert seq_of(conn, "sessions", "agentmon_seq", "s1") == created + 2 == sequence(conn)
    assert seq_of(conn, "sessions", "status", "s1") == "active"
    conn.execute("UPDATE sessions SET end_time = 'x' WHERE session_id = 's1'")  # not tracked
    assert sequence(conn) == created + 2
    conn.close()


# ---------------------------------------------------------------- removals (step 5)


def removals(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM agentmon_removals").fetchone()[0])


@pytest.mark.parametrize("table", ["agent_invocations", "agent_tool_uses"])
def test_removing_a_row_that_may_be_counted_bumps_removals(tracked: Path, table: str) -> None:
    conn = connect_writer(tracked)
    insert = f"INSERT INTO {table} (agent_name, status) VALUES ('a', ?)"  # noqa: S608
    done = conn.execute(insert, ("completed",)).lastrowid
    running = conn.execute(insert, ("running",)).lastrowid
    assert removals(conn) == 0  # inserts without an id (the hook's) are not removals
    conn.execute(f"DELETE FROM {table} WHERE id = ?", (running,))  # noqa: S608 - a gauge row
    assert removals(conn) == 0
    conn.execute(f"INSERT OR REPLACE INTO {table} (id, agent_name, status)"  # noqa: S608
                 " VALUES (?, 'b', 'completed')", (done,))
    assert removals(conn) == 1
    conn.execute(f"DELETE FROM {table} WHERE id = ?", (done,))  # noqa: S608
    assert removals(conn) == 2
    # a statement that fails takes its bump with it
    other = conn.execute(insert, ("error",)).lastrowid
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(f"INSERT INTO {table} (id, status) VALUES (?, 'x')", (other,))  # noqa: S608
    assert removals(conn) == 2
    conn.close()


def test_deleting_a_session_bumps_removals_and_upserts_do_not(tracked: Path) -> None:
    conn = connect_writer(tracked)
    conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'active')")
    for _ in range(2):  # the hook's upserts, on every event
        conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'active')"
                     " ON CONFLICT (session_id) DO NOTHING")
        conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'completed')"
                     " ON CONFLICT (session_id) DO UPDATE SET status = 'completed'")
    assert removals(conn) == 0
    conn.execute("DELETE FROM sessions WHERE session_id = 's1'")
    assert removals(conn) == 1
    conn.close()


def test_removals_survive_the_down_and_up_of_their_step(tracked: Path) -> None:
    step = next(s.version for s in migrations.STEPS if s.name == "removals")
    migrate(tracked, step - 1)
    conn = sqlite3.connect(tracked)
    conn.execute("DELETE FROM agent_invocations")  # no counter: nothing to bump, no error
    conn.commit()
    conn.close()
    assert f"up {step - 1}->{step} (removals)" in migrate(tracked).steps
    conn = connect_writer(tracked)
    assert removals(conn) == 0
    conn.execute("DELETE FROM agent_tool_uses WHERE status IS NOT 'running'")
    assert removals(conn) == conn.execute("SELECT changes()").fetchone()[0] > 0
    conn.close()


def test_rows_from_before_step_3_keep_null_until_they_change(tracked: Path) -> None:
    conn = connect_writer(tracked)
    assert conn.execute("SELECT count(*) FROM agent_invocations WHERE agentmon_seq IS NULL"
                        ).fetchone()[0] == 5
    # the running original row completes: now it is tracked
    conn.execute("UPDATE agent_invocations SET status = 'completed' WHERE id = 3")
    assert seq_of(conn, "agent_invocations", "agentmon_seq", 3) == sequence(conn)
    conn.close()


def test_sequence_numbers_follow_commit_order(tracked: Path) -> None:
    order: list[list[int]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = connect_writer(tracked)
        try:
            for _ in range(20):
                conn.execute("BEGIN IMMEDIATE")
                ids = []
                for _ in range(3):
                    ids.append(conn.execute(
                        "INSERT INTO agent_tool_uses (agent_name, status) VALUES (?, 'running')",
                        (f"w{n}",)).lastrowid)
                with lock:  # we hold the write lock: this is the commit order
                    order.append(ids)
                conn.execute("COMMIT")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    conn = sqlite3.connect(tracked)
    seqs = [[seq_of(conn, "agent_tool_uses", "agentmon_seq", i) for i in ids] for ids in order]
    conn.close()
    flat = [s for group in seqs for s in group]
    assert len(order) == 80
    assert flat == sorted(flat)
    assert len(set(flat)) == len(flat)


def test_upgrade_of_a_seeded_original_database(tmp_path: Path) -> None:
    """80k original rows of the seeder's realistic shapes reach the latest schema, every row
    kept; at 800k and 4M rows, with the time it takes: bench/bench_migrate.py."""
    from agentmon.seed.load import seed
    from agentmon.seed.options import SeedOptions

    db = tmp_path / "big.db"
    seed(db, SeedOptions(invocations=20_000, schema="original", jobs=2))
    conn = sqlite3.connect(db)
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
              for t in ("agent_invocations", "agent_tool_uses")]
    conn.close()
    result = migrate(db, backup_dir=tmp_path / "b")
    assert result.to_version == migrations.LATEST
    assert counts == [20_000, 60_000]
    conn = sqlite3.connect(db)
    after = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
             for t in ("agent_invocations", "agent_tool_uses")]
    conn.close()
    assert after == counts


def test_a_step_another_process_already_applied_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    stale = steps_plan.plan(0, 1)[0]  # planned at version 0 ...
    migrate(db, 1)  # ... but someone else got there first
    conn = connect_writer(db)
    assert steps_plan.apply_step(conn, stale) is False
    assert not conn.in_transaction
    conn.close()
    assert version(db) == 1


# ---------------------------------------------------------------- usage (step "usage")

USAGE_STEP = next(s.version for s in migrations.STEPS if s.name == "usage")


def _usage_row(conn: sqlite3.Connection, key: str, tokens: int = 10) -> int:
    cur = conn.execute(
        "INSERT INTO agent_usage (session_id, kind, agent_name, model, input_tokens, dedup_key)"
        " VALUES ('s1', 'tokens', 'main', 'claude-x', ?, ?)", (tokens, key))
    return int(cur.lastrowid or 0)


def test_usage_rows_are_stamped_frozen_and_their_removal_counted(tracked: Path) -> None:
    conn = connect_writer(tracked)
    start = sequence(conn)
    row = _usage_row(conn, "m1")
    assert seq_of(conn, "agent_usage", "agentmon_seq", row) == start + 1 == sequence(conn)
    conn.execute("UPDATE agent_usage SET input_tokens = 99, model = 'y' WHERE id = ?", (row,))
    assert conn.execute("SELECT input_tokens, model FROM agent_usage").fetchall() == [
        (10, "claude-x")]
    assert sequence(conn) == start + 1
    # a duplicate key is refused by UNIQUE; the hook looks it up first, so OR IGNORE is rare
    with pytest.raises(sqlite3.IntegrityError):
        _usage_row(conn, "m1")
    conn.execute("INSERT OR REPLACE INTO agent_usage (kind, dedup_key) VALUES ('tokens', 'm1')")
    assert removals(conn) == 1
    conn.execute("DELETE FROM agent_usage")
    assert removals(conn) == 2
    conn.close()


def test_usage_down_keeps_rows_and_columns_and_up_adopts_them(tracked: Path) -> None:
    conn = connect_writer(tracked)
    _usage_row(conn, "m1", 7)
    conn.execute("INSERT INTO agent_invocations (agent_name, status, prompt_id, background)"
                 " VALUES ('a', 'running', 'p1', 1)")
    conn.execute("INSERT INTO agent_tool_uses (tool_name, status, prompt_id, agent_id)"
                 " VALUES ('Bash', 'running', 'p1', 'ag1')")
    conn.execute("INSERT INTO agentmon_transcripts (path, offset) VALUES ('/t', 5)")
    conn.close()
    down = migrate(tracked, USAGE_STEP - 1)
    assert f"down {USAGE_STEP}->{USAGE_STEP - 1} (usage)" in down.steps
    assert version(tracked) == USAGE_STEP - 1
    assert not {n for n in names(tracked, "trigger") if "agent_usage" in n}
    assert "agentmon_transcripts" not in names(tracked, "table")
    conn = connect_writer(tracked)
    assert "agentmon_seq" not in table_columns(conn, "agent_usage")
    assert conn.execute("SELECT kind, input_tokens, dedup_key FROM agent_usage").fetchall() == [
        ("tokens", 7, "m1")]
    assert conn.execute("SELECT prompt_id, background FROM agent_invocations"
                        " WHERE prompt_id IS NOT NULL").fetchall() == [("p1", 1)]
    assert conn.execute("SELECT prompt_id, agent_id FROM agent_tool_uses"
                        " WHERE prompt_id IS NOT NULL").fetchall() == [("p1", "ag1")]
    conn.close()
    assert migrate(tracked).to_version == migrations.LATEST
    conn = connect_writer(tracked)
    # the row from before the step: no sequence number, counted by a cold start
    assert conn.execute("SELECT agentmon_seq FROM agent_usage").fetchall() == [(None,)]
    before = sequence(conn)
    _usage_row(conn, "m2")
    assert sequence(conn) == before + 1
    conn.close()


# ---------------------------------------------------------------- removal token (step 8)

TOKEN_STEP = next(s.version for s in migrations.STEPS if s.name == "removal_token")


def token(conn: sqlite3.Connection) -> bytes:
    value = conn.execute("SELECT token FROM agentmon_removals").fetchone()[0]
    assert isinstance(value, bytes)
    assert len(value) == 16
    return value


def test_every_removal_writes_a_new_token_and_the_hooks_writes_none(tracked: Path) -> None:
    conn = connect_writer(tracked)
    seen = [token(conn)]
    # what the hook does: inserts without an id, updates, session upserts, usage rows
    done = conn.execute("INSERT INTO agent_invocations (agent_name, status)"
                        " VALUES ('a', 'completed')").lastrowid
    running = conn.execute("INSERT INTO agent_tool_uses (agent_name, status)"
                           " VALUES ('a', 'running')").lastrowid
    conn.execute("UPDATE agent_tool_uses SET status = 'completed' WHERE id = ?", (running,))
    conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'active')"
                 " ON CONFLICT (session_id) DO UPDATE SET status = 'active'")
    conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s2', 'active')")
    _usage_row(conn, "m1")
    _usage_row(conn, "m2")
    gauge = conn.execute("INSERT INTO agent_invocations (agent_name, status)"
                         " VALUES ('a', 'running')").lastrowid
    conn.execute("DELETE FROM agent_invocations WHERE id = ?", (gauge,))  # a running row
    assert (removals(conn), token(conn)) == (0, seen[0])
    for removal in (
        ("INSERT OR REPLACE INTO agent_invocations (id, agent_name, status)"
         " VALUES (?, 'b', 'completed')", (done,)),
        ("DELETE FROM agent_tool_uses WHERE id = ?", (running,)),
        ("DELETE FROM sessions WHERE session_id = 's1'", ()),
        ("INSERT OR REPLACE INTO agent_usage (kind, dedup_key) VALUES ('tokens', 'm1')", ()),
        ("DELETE FROM agent_usage WHERE dedup_key = 'm2'", ()),
    ):
        conn.execute(*removal)
        seen.append(token(conn))
        assert removals(conn) == len(seen) - 1, removal
    assert len(set(seen)) == len(seen)  # each one new
    conn.close()


def test_the_token_step_down_restores_step_5s_triggers_and_up_writes_a_new_token(
        tracked: Path, tmp_path: Path) -> None:
    conn = connect_writer(tracked)
    conn.execute("INSERT INTO agent_invocations (agent_name, status) VALUES ('a', 'completed')")
    conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s1', 'active')")
    conn.execute("DELETE FROM agent_invocations WHERE agent_name = 'a'")
    first = token(conn)
    conn.close()
    rows = full_dump(tracked)["data"]
    assert migrate(tracked, TOKEN_STEP - 1).steps == [
        f"down {TOKEN_STEP}->{TOKEN_STEP - 1} (removal_token)"]
    # the triggers are step 5's and 6's again, as a database that never had the step holds
    reference = migrate(build_original_db(tmp_path / "ref.db", sessions_columns=4),
                        TOKEN_STEP - 1)
    assert reference.to_version == TOKEN_STEP - 1

    def triggers(path: Path) -> list[tuple[str, str]]:
        return [row[1:4:2] for row in full_dump(path)["schema"] if row[0] == "trigger"]

    assert triggers(tracked) == triggers(tmp_path / "ref.db")
    conn = connect_writer(tracked)
    assert table_columns(conn, "agentmon_removals") == ["id", "value"]
    assert removals(conn) == 1
    conn.execute("DELETE FROM sessions WHERE session_id = 's1'")  # still counted, no token
    assert removals(conn) == 2
    conn.close()
    assert migrate(tracked).to_version == migrations.LATEST
    conn = connect_writer(tracked)
    second = token(conn)
    assert second != first  # a backup from before the step, migrated again, is not the same
    assert removals(conn) == 2
    conn.close()
    after = full_dump(tracked)["data"]
    rows["sessions"] = [row for row in rows["sessions"] if row[0] != "s1"]  # deleted above
    for table in rows:
        if table != "agentmon_removals":
            assert after[table] == rows[table], table


# ---------------------------------------------------------------- one schema truth


@pytest.mark.parametrize(("width", "with_tool_uses"), [(4, False), (6, False), (4, True)])
def test_the_schema_module_builds_what_the_tests_copy_of_the_original_has(
        tmp_path: Path, width: int, with_tool_uses: bool) -> None:
    """agentmon.schema.original against the tests' own, independent copy: columns and types."""
    ours = sqlite3.connect(tmp_path / "ours.db")
    for ddl in original.ddl(width, with_tool_uses=with_tool_uses):
        ours.execute(ddl)
    theirs = sqlite3.connect(build_original_db(tmp_path / "theirs.db", sessions_columns=width,
                                               with_tool_uses=with_tool_uses, rows=False))

    def shape(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str, int]]]:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")]
        # name, type, primary key (a DEFAULT is not compared: the copy's 4-column shape has none)
        return {t: [(r[1], r[2], r[5]) for r in conn.execute(f"PRAGMA table_info({t})")]
                for t in tables}

    assert shape(ours) == shape(theirs)
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    assert ours.execute(indexes).fetchall() == theirs.execute(indexes).fetchall()
    ours.close()
    theirs.close()


def test_the_schema_module_refuses_a_sessions_shape_that_never_existed() -> None:
    with pytest.raises(ValueError, match="4 or 6 columns"):
        original.ddl(5)
