"""agentmon prune: what it removes, what it keeps, its numbers, its errors (real SQLite files)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from collector_db import add_invocation, add_session, add_tool_use, make_db, samples, writer

from agentmon.cli import main as cli
from agentmon.collector.collector import ExporterCollector
from agentmon.prune.core import Pruner, cutoff_julian
from agentmon.schema.migrate import migrate
from agentmon.schema.migrations import LATEST, STEPS

NOW = datetime.now(UTC)
OLD = (NOW - timedelta(days=100)).isoformat()
OLDER = (NOW - timedelta(days=101)).isoformat()
NEW = (NOW - timedelta(days=1)).isoformat()
PRUNED_STEP = next(s.version for s in STEPS if s.name == "pruned")
TOKEN_STEP = next(s.version for s in STEPS if s.name == "removal_token")


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    out = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
           for t in ("agent_invocations", "agent_tool_uses", "sessions")}
    conn.close()
    return out


def removal_bookkeeping(db: Path) -> tuple[object, ...]:
    """Step 5's removal counter and, from step "removal_token" on, its token."""
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT * FROM agentmon_removals").fetchone()
    conn.close()
    return tuple(row)


def history(db: Path) -> None:
    """Old and new finished rows, an old running row, an old session with running work."""
    conn = writer(db)
    add_session(conn, "s1", "completed")
    conn.execute("UPDATE sessions SET end_time = ? WHERE session_id = 's1'", (OLD,))
    add_session(conn, "busy", "completed")
    conn.execute("UPDATE sessions SET end_time = ? WHERE session_id = 'busy'", (OLD,))
    add_session(conn, "fresh", "completed")
    conn.execute("UPDATE sessions SET end_time = ?, start_time = ? WHERE session_id = 'fresh'",
                 (NEW, NEW))
    for i in range(30):
        add_invocation(conn, "planner", "plan", "completed", 0.5 * i, OLDER, OLD)
        add_tool_use(conn, "planner", "Bash", "error" if i % 3 else "completed", i / 10, OLDER,
                     OLD)
    add_invocation(conn, "coder", "build", "interrupted", None, OLDER, None)  # no end: timestamp
    conn.execute("UPDATE agent_invocations SET timestamp = ? WHERE status = 'interrupted'",
                 (OLDER,))
    add_invocation(conn, "coder", "build", "completed", 3.0, NEW, NEW)
    add_tool_use(conn, "coder", "Read", "running", None, OLDER, None, session="s2")
    # finished long ago, but its session still runs something: kept
    add_tool_use(conn, "coder", "Edit", "completed", 1.0, OLDER, OLD, session="busy")
    add_tool_use(conn, "coder", "Edit", "running", None, OLDER, None, session="busy")
    # no readable time: its age is unknown, kept
    add_tool_use(conn, "coder", "Grep", "completed", 1.0, "junk", "junk")
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = make_db(tmp_path / "agent_workflow.db")
    history(path)
    return path


def prune(*args: str) -> int:
    return cli(["prune", *args])


def exported(collector: ExporterCollector) -> dict:
    skip = ("agentmon_rows_read", "agentmon_last_refresh", "agentmon_state_rebuilds",
            "agentmon_db_file")
    return {k: v for k, v in samples(collector).items() if not k[0].startswith(skip)}


def test_removes_old_finished_rows_only_and_the_numbers_stay(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    collector = ExporterCollector(db, checkpoint_path=tmp_path / "state.json")
    collector.refresh()
    before = exported(collector)
    bookkeeping = removal_bookkeeping(db)
    assert prune("--db", str(db), "--older-than", "90d") == 0
    assert removal_bookkeeping(db) == bookkeeping  # the prune mark tells the exporter instead
    out = capsys.readouterr().out
    assert "removed 31 agent_invocations, 30 agent_tool_uses, 1 sessions" in out
    assert counts(db) == {"agent_invocations": 1, "agent_tool_uses": 4, "sessions": 2}
    conn = sqlite3.connect(db)
    kept = {r[0] for r in conn.execute("SELECT tool_name FROM agent_tool_uses")}
    assert kept == {"Read", "Edit", "Grep"}
    assert {r[0] for r in conn.execute("SELECT session_id FROM sessions")} == {"busy", "fresh"}
    conn.close()
    collector.refresh()
    assert exported(collector) == before
    # no rebuild: every pruned row had been counted
    assert samples(collector)[("agentmon_state_rebuilds_total", ())] == 1
    # ... and a fresh exporter (cold start) says the same
    collector.close()
    fresh = ExporterCollector(db)
    fresh.refresh()
    assert exported(fresh) == before
    fresh.close()


def test_pruning_the_rows_the_exporter_last_counted_needs_no_rebuild(db: Path) -> None:
    # The exporter keeps its last counted row of each table as a witness against restored
    # backups. A prune may remove exactly that row (finished last, but long ago: the soak
    # bench's size prunes did); it was counted, so the state goes on without a cold start.
    conn = writer(db)
    add_invocation(conn, "late", "plan", "completed", 2.0, OLDER, OLD)
    add_tool_use(conn, "late", "Grep", "completed", 0.2, OLDER, OLD)
    conn.close()
    collector = ExporterCollector(db)
    collector.refresh()
    before = exported(collector)
    assert prune("--db", str(db), "--older-than", "90d") == 0
    collector.refresh()
    assert exported(collector) == before
    assert samples(collector)[("agentmon_state_rebuilds_total", ())] == 1
    conn = writer(db)
    add_invocation(conn, "late", "plan", "error", 1.0, NEW, NEW)
    conn.close()
    collector.refresh()
    snap = samples(collector)
    assert snap[("agentmon_invocations_total",
                 (("agent", "late"), ("phase", "plan"), ("status", "error")))] == 1
    assert snap[("agentmon_state_rebuilds_total", ())] == 1
    collector.close()


def test_rows_pruned_before_the_exporter_counted_them_are_counted_once(db: Path) -> None:
    collector = ExporterCollector(db)
    collector.refresh()
    conn = writer(db)
    for _ in range(3):
        add_invocation(conn, "late", "plan", "completed", 2.0, OLDER, OLD)
    conn.close()
    assert prune("--db", str(db), "--older-than", "90d") == 0
    collector.refresh()
    snap = samples(collector)
    assert snap[("agentmon_invocations_total",
                 (("agent", "late"), ("phase", "plan"), ("status", "completed")))] == 3
    assert snap[("agentmon_state_rebuilds_total", ())] == 2
    collector.close()


def test_dry_run_counts_the_same_and_changes_nothing(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(db)
    assert prune("--db", str(db), "--older-than", "90d", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would remove 31 agent_invocations, 30 agent_tool_uses, 1 sessions" in out
    assert counts(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT batches FROM agentmon_prune_mark").fetchone()[0] == 0
    conn.close()


def test_hours_and_a_second_run(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prune("--db", str(db), "--older-than", "12h") == 0
    assert "removed 32 agent_invocations" in capsys.readouterr().out
    assert prune("--db", str(db), "--older-than", "12h") == 0
    assert "removed 0 agent_invocations, 0 agent_tool_uses, 0 sessions" in capsys.readouterr().out


def test_a_reader_holding_the_wal_is_named_in_the_sizes(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An open read transaction (the exporter mid-refresh) keeps the final checkpoint from
    # truncating the WAL: the size line says so instead of a puzzling growth. (The checkpoint
    # waits the busy timeout for the reader, then gives up: half a second is enough here.)
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM agent_tool_uses").fetchone()
    try:
        assert prune("--db", str(db), "--older-than", "12h", "--busy-timeout-ms", "500") == 0
    finally:
        reader.close()
    out = capsys.readouterr().out
    assert "removed 32 agent_invocations" in out
    assert "(of which WAL " in out


def test_small_batches_and_progress(db: Path) -> None:
    seen = []
    conn = writer(db)
    result = Pruner(conn, cutoff_julian(90 * 86400), batch=1, progress=seen.append).run()
    conn.close()
    assert result.removed == {"agent_invocations": 31, "agent_tool_uses": 30, "sessions": 1}
    assert len(seen) == result.batches > 60


def test_a_size_target_removes_the_oldest_finished_rows_of_any_age(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db")
    conn = writer(db)
    for _ in range(3000):
        add_tool_use(conn, "a", "Bash", "completed", 0.1, NEW, NEW)
    conn.close()
    target = 200 * 1024
    assert prune("--db", str(db), "--older-than", "90d", "--max-size", "200K",
                 "--batch", "100") == 0
    conn = sqlite3.connect(db)
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    assert (pages - free) * size <= target
    left = conn.execute("SELECT COUNT(*) FROM agent_tool_uses").fetchone()[0]
    pruned = conn.execute("SELECT SUM(rows) FROM agentmon_pruned").fetchone()[0]
    conn.close()
    assert 0 < left < 3000
    assert left + pruned == 3000


def test_reclaim_switches_to_incremental_vacuum_and_the_file_shrinks(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db")
    conn = writer(db)
    for _ in range(4000):
        add_tool_use(conn, "a", "Bash", "completed", 0.1, OLDER, OLD)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    grown = db.stat().st_size
    assert prune("--db", str(db), "--older-than", "90d", "--reclaim") == 0
    assert db.stat().st_size < grown / 2
    conn = writer(db)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    for _ in range(4000):
        add_tool_use(conn, "a", "Bash", "completed", 0.1, OLDER, OLD)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    grown = db.stat().st_size
    # from now on every prune gives the space back (incremental vacuum, no VACUUM)
    assert prune("--db", str(db), "--older-than", "90d") == 0
    assert db.stat().st_size < grown / 2
    assert counts(db)["agent_tool_uses"] == 0


def test_a_step_down_keeps_what_was_pruned(db: Path) -> None:
    assert prune("--db", str(db), "--older-than", "90d") == 0
    migrate(db, PRUNED_STEP - 1)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT SUM(rows) FROM agentmon_pruned").fetchone()[0] == 62
    conn.close()
    assert prune("--db", str(db), "--older-than", "90d") == 1
    migrate(db)
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    assert snap[("agentmon_invocations_total",
                 (("agent", "planner"), ("phase", "plan"), ("status", "completed")))] == 30
    collector.close()


def test_a_prune_across_the_token_step_puts_back_what_the_file_holds(
        db: Path, tmp_path: Path) -> None:
    """Before the step there is no token to put back; a hook may migrate the file between
    two batches, and the batches after it put the token back too."""
    migrate(db, TOKEN_STEP - 1)
    before = removal_bookkeeping(db)
    assert len(before) == 2  # id, value
    migrated: list[tuple[object, ...]] = []

    def between_batches(_: object) -> None:
        if not migrated:
            assert migrate(db, backup_dir=tmp_path / "backups").to_version == LATEST
            migrated.append(removal_bookkeeping(db))

    conn = writer(db)
    result = Pruner(conn, cutoff_julian(90 * 86400), batch=5, progress=between_batches).run()
    conn.close()
    assert result.batches > 2
    assert migrated[0][:2] == before
    assert removal_bookkeeping(db) == migrated[0]


def test_a_step_down_without_prunes_drops_the_tables(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    migrate(db, PRUNED_STEP - 1)
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not names & {"agentmon_pruned", "agentmon_prune_mark", "idx_agentmon_pruned"}


@pytest.mark.parametrize("case", ["missing", "directory", "not_a_db", "newer", "older"])
def test_a_database_it_cannot_prune_is_a_one_line_error(
        tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "agent_workflow.db"
    want = {"missing": "cannot open", "directory": "not a regular file",
            "not_a_db": "not a database", "newer": "newer than this agentmon knows",
            "older": "run agentmon migrate"}[case]
    if case == "directory":
        db.mkdir()
    elif case == "not_a_db":
        db.write_bytes(b"hello, not sqlite" * 100)
    elif case in ("newer", "older"):
        make_db(db, PRUNED_STEP - 1 if case == "older" else LATEST)
        if case == "newer":
            conn = sqlite3.connect(db)
            conn.execute(f"PRAGMA user_version = {LATEST + 1}")
            conn.close()
    before = db.read_bytes() if db.is_file() else None
    assert prune("--db", str(db), "--older-than", "90d") == 1
    err = capsys.readouterr().err
    assert err.startswith("agentmon prune: error: ")
    assert want in err
    assert err.count("\n") == 1
    assert not (tmp_path / "agent_workflow.db-wal").exists() or case in ("newer", "older")
    if case == "not_a_db":
        assert db.read_bytes() == before
    if case == "missing":
        assert not db.exists()


@pytest.mark.parametrize("bad", [["--older-than", "90"], ["--older-than", "3w"],
                                 ["--older-than", "90d", "--max-size", "lots"]])
def test_bad_arguments_are_refused(db: Path, bad: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        prune("--db", str(db), *bad)
    assert exc.value.code == 2
    assert "agentmon prune: error:" in capsys.readouterr().err


def test_a_lock_held_past_the_busy_timeout_is_an_error_and_nothing_changes(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(db)
    holder = writer(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert prune("--db", str(db), "--older-than", "90d", "--busy-timeout-ms", "50") == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "locked" in err
    assert err.count("\n") == 1
    assert counts(db) == before


FULL_DISK = textwrap.dedent("""
    set -u
    mount -t tmpfs -o size=4m tmpfs "$1"
    cp "$2" "$1/agent_workflow.db"
    dd if=/dev/zero of="$1/fill" bs=64k 2>/dev/null
    truncate -s -64K "$1/fill"
    "$3" -m agentmon.cli prune --db "$1/agent_workflow.db" --older-than 90d --batch 5000
    echo "rc=$?"
    rm "$1/fill"
    "$3" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);
    print("rows", c.execute("SELECT COUNT(*) FROM agent_tool_uses").fetchone()[0],
          c.execute("PRAGMA integrity_check").fetchone()[0])' "$1/agent_workflow.db"
""")


def test_a_full_disk_is_a_one_line_error_and_nothing_is_lost(tmp_path: Path) -> None:
    """A real full filesystem: a 4 MB tmpfs in a private mount namespace."""
    unshare = shutil.which("unshare")
    probe = unshare and subprocess.run([unshare, "-Urm", "true"], capture_output=True,
                                       check=False)
    if not probe or probe.returncode != 0:
        pytest.skip("needs unshare -Urm (user and mount namespaces) for a small tmpfs")
    db = make_db(tmp_path / "src.db")
    conn = writer(db)
    for _ in range(6000):
        add_tool_use(conn, "a", "Bash", "completed", 0.1, OLDER, OLD)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "full.sh"
    script.write_text(FULL_DISK)
    run = subprocess.run([unshare, "-Urm", "sh", str(script), str(mnt), str(db), sys.executable],
                         capture_output=True, text=True, check=False, timeout=300)
    assert "rc=1" in run.stdout, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("agentmon prune: error: ")
    assert "disk is full" in lines[0]
    assert "nothing was lost" in lines[0]
    assert "rows 6000 ok" in run.stdout


def test_the_exporter_reports_file_size_and_free_space(db: Path) -> None:
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    collector.close()
    st = os.statvfs(db.parent)
    assert snap[("agentmon_db_file_size_bytes", ())] == db.stat().st_size + (
        Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    assert snap[("agentmon_db_filesystem_size_bytes", ())] == st.f_blocks * st.f_frsize
    assert 0 < snap[("agentmon_db_filesystem_avail_bytes", ())] \
        <= snap[("agentmon_db_filesystem_size_bytes", ())]
