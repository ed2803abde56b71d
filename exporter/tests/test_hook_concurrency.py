"""Many hook processes at once, and a hook writing while `agentmon migrate` runs."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hook_events import event, rows, run_hook

from agentmon.schema import migrations, original
from agentmon.schema.migrate import migrate

PROCESSES = 16
# Released together by a barrier, 16 writers on a 2-core machine overlap for their whole run:
# every transaction meets the others' locks. 100 each is 1,600 contended writes; the volume
# over time is bench_soak's job (8 writers for 30 min).
EVENTS_EACH = 100
SESSIONS = 4  # shared by the workers, so sequence numbers are contended too


def writer(db: str, worker: int, count: int, start: Any, results: Any) -> None:
    """One hook 'process': each event opens its own connection, as the real command does."""
    start.wait(timeout=60)
    failures = []
    for i in range(count):
        item = event("PreToolUse", session=f"sess-{worker % SESSIONS}",
                     tool_use_id=f"toolu_{worker}_{i}", tool_input={"n": i})
        code, err = run_hook(item, Path(db))
        if code != 0 or err:
            failures.append(err or f"exit {code}")
    results.put((worker, failures))


def run_writers(db: Path, processes: int, count: int, during: Any = None) -> list[str]:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(str(db), w, count, start, results))
             for w in range(processes)]
    for proc in procs:
        proc.start()
    start.wait(timeout=60)
    if during is not None:
        during()
    failures: list[str] = []
    for _ in procs:
        _, failed = results.get(timeout=240)
        failures += failed
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return failures


@pytest.mark.slow
def test_16_processes_writing_100_events_each_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "agent_workflow.db"
    migrate(db)
    failures = run_writers(db, PROCESSES, EVENTS_EACH)
    assert failures == []  # in particular no "database is locked"
    assert rows(db, "SELECT count(*), count(DISTINCT tool_use_id) FROM agent_tool_uses") == [
        (PROCESSES * EVENTS_EACH, PROCESSES * EVENTS_EACH)]
    per_session = PROCESSES * EVENTS_EACH // SESSIONS
    assert rows(db, "SELECT count(DISTINCT sequence_number), min(sequence_number),"
                    " max(sequence_number) FROM agent_tool_uses GROUP BY session_id") == [
        (per_session, 1, per_session)] * SESSIONS
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


def original_database(db: Path, sessions: int, tool_uses: int) -> None:
    conn = sqlite3.connect(db)
    for ddl in original.TABLES.values():
        conn.execute(ddl)
    conn.executemany("INSERT INTO sessions VALUES (?, '2024-05-01T10:00:00', NULL, 'active',"
                     " '/p', NULL)", [(f"old-{i}",) for i in range(sessions)])
    conn.executemany("INSERT INTO agent_tool_uses (timestamp, session_id, agent_name, tool_name,"
                     " status, start_time, end_time, duration_seconds) VALUES ("
                     "'2024-05-01T10:00:00', ?, 'main', 'Bash', 'completed',"
                     " '2024-05-01T10:00:00', '2024-05-01T10:00:02', NULL)",
                     [(f"old-{i % sessions}",) for i in range(tool_uses)])
    conn.commit()
    conn.close()


@pytest.mark.slow
def test_hooks_writing_during_a_migration_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "agent_workflow.db"
    original_database(db, sessions=50, tool_uses=30_000)
    before = rows(db, "SELECT * FROM agent_tool_uses ORDER BY id")
    outcome: dict[str, Any] = {}

    def migrate_now() -> None:
        outcome["result"] = migrate(db, busy_timeout_ms=60_000)

    failures = run_writers(db, 4, 100, during=migrate_now)
    assert failures == []
    assert rows(db, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert rows(db, "SELECT count(*) FROM agent_tool_uses WHERE tool_use_id IS NOT NULL") == [
        (400,)]
    old_columns = len(before[0])
    after = [row[:old_columns] for row in
             rows(db, "SELECT * FROM agent_tool_uses WHERE tool_use_id IS NULL ORDER BY id")]
    assert after == before
    assert rows(db, "SELECT count(*) FROM sessions") == [(50 + 4,)]
    assert outcome["result"].to_version == migrations.LATEST


def test_first_writers_on_a_new_file_race_safely(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    assert run_writers(db, 4, 5) == []
    assert rows(db, "SELECT count(*) FROM agent_tool_uses") == [(20,)]
    assert rows(db, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert run_hook(event("Stop"), db) == (0, "")
