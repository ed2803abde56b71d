"""``agentmon seed``: realistic, deterministic, and indistinguishable from hook-written data."""

from __future__ import annotations

import io
import json
import math
import re
import sqlite3
import statistics
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from original_schema import build_original_db, full_dump, original_dump

from agentmon.cli import main as cli
from agentmon.schema import migrations, original
from agentmon.schema.migrate import migrate
from agentmon.seed import cli as seed_cli
from agentmon.seed import generate, load
from agentmon.seed import plan as seed_plan
from agentmon.seed.options import SeedError, SeedOptions

END = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
ISO_LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def opts(n: int = 400, **kw: Any) -> SeedOptions:
    return SeedOptions(invocations=n, end=kw.pop("end", END), jobs=kw.pop("jobs", 1), **kw)


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def data_dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    dump = full_dump(db)["data"]
    dump.pop("agentmon_meta")  # random identities
    # ... and the random removal token (id, value, token)
    dump["agentmon_removals"] = [row[:2] for row in dump["agentmon_removals"]]
    return dump


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("seed") / "agent_workflow.db"
    load.seed(db, opts(3000))
    return db


# ---------------------------------------------------------------- shape of the data


def test_counts_ids_and_running_rows(seeded: Path) -> None:
    (n_inv, lo, hi), = rows(seeded, "SELECT count(*), min(id), max(id) FROM agent_invocations")
    (n_tools, tlo, thi), = rows(seeded, "SELECT count(*), min(id), max(id) FROM agent_tool_uses")
    assert (n_inv, lo, hi) == (3000, 1, 3000)
    assert (n_tools, tlo, thi) == (9000, 1, 9000)  # exactly N * k, contiguous ids
    per_inv = Counter(r[0] for r in rows(seeded, "SELECT agent_invocation_id FROM agent_tool_uses"))
    assert set(per_inv) == set(range(1, 3001))
    assert min(per_inv.values()) >= 1
    assert max(per_inv.values()) <= 5
    assert len(set(per_inv.values())) > 1  # it varies around k
    running = rows(seeded, "SELECT 'inv', id FROM agent_invocations WHERE status = 'running'"
                   " UNION ALL SELECT 'tool', id FROM agent_tool_uses WHERE status = 'running'")
    assert 2 <= len(running) <= 10
    active = rows(seeded, "SELECT session_id FROM sessions WHERE status = 'active'")
    assert len(active) == len(running) // 2
    # the running rows are the newest: they started within the last hours before --end
    newest = rows(seeded, "SELECT max(start_time) FROM agent_tool_uses")[0][0]
    for (start,) in rows(seeded, "SELECT start_time FROM agent_tool_uses WHERE status ="
                         " 'running'"):
        assert datetime.fromisoformat(start) > END - timedelta(hours=12)
        assert datetime.fromisoformat(start) <= END
    assert datetime.fromisoformat(newest) <= END
    unfinished = rows(seeded, "SELECT count(*) FROM agent_tool_uses WHERE end_time IS NULL AND"
                      " status <> 'running'")
    assert unfinished == [(0,)]


def test_roster_tools_failures_and_durations(seeded: Path) -> None:
    agents = dict(rows(seeded, "SELECT agent_name, count(*) FROM agent_invocations GROUP BY 1"))
    assert len(agents) >= 12
    assert {"planner", "architect", "developer", "tester", "reviewer", "documenter", "debugger",
            "security-auditor"} <= set(agents)
    phases = {r[0] for r in rows(seeded, "SELECT DISTINCT phase FROM agent_invocations")}
    assert {"planning", "development", "testing", "review", "documentation"} <= phases
    tools = {r[0] for r in rows(seeded, "SELECT DISTINCT tool_name FROM agent_tool_uses")}
    assert {"Read", "Write", "Edit", "Bash", "Grep", "Glob", "WebFetch", "TodoWrite"} <= tools
    assert any(re.fullmatch(r"mcp__[a-z0-9-]+__[a-z_-]+", t) for t in tools)
    for table in ("agent_invocations", "agent_tool_uses"):
        (share,), = rows(seeded, f"SELECT avg(status = 'error') FROM {table}")  # noqa: S608
        assert 0.03 < share < 0.07, table
        assert rows(seeded, f"SELECT count(*) FROM {table} WHERE status = 'error'"  # noqa: S608
                    " AND (error IS NULL OR error = '')") == [(0,)]
    # log-normal: log(duration) roughly symmetric, mean well above the median
    durations = [r[0] for r in rows(seeded, "SELECT duration_seconds FROM agent_tool_uses"
                                    " WHERE tool_name = 'Bash' AND duration_seconds > 0")]
    logs = [math.log(d) for d in durations]
    assert statistics.mean(durations) > 1.5 * statistics.median(durations)
    assert abs(statistics.mean(logs) - statistics.median(logs)) < 0.25
    # durations agree with the timestamps
    for start, end, dur in rows(seeded, "SELECT start_time, end_time, duration_seconds FROM"
                                " agent_tool_uses WHERE end_time IS NOT NULL LIMIT 500"):
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
        assert abs(delta.total_seconds() - dur) < 0.0015


def test_sessions_timestamps_and_identifiers(seeded: Path) -> None:
    sizes = [r[0] for r in rows(seeded, "SELECT count(*) FROM agent_invocations GROUP BY"
                                " session_id")]
    assert 4 <= statistics.mean(sizes) <= 12
    assert max(sizes) > 10
    assert rows(seeded, "SELECT count(*) FROM sessions") == [(len(sizes),)]
    first = datetime.fromisoformat(rows(seeded, "SELECT min(start_time) FROM sessions")[0][0])
    assert END - timedelta(days=90) <= first < END - timedelta(days=85)
    for table, column in (("sessions", "start_time"), ("agent_invocations", "timestamp"),
                          ("agent_tool_uses", "end_time")):
        for (value,) in rows(seeded, f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"  # noqa: S608
                             " LIMIT 200"):
            assert ISO_UTC.match(value), value
    ids = [r[0] for r in rows(seeded, "SELECT tool_use_id FROM agent_tool_uses")]
    ids += [r[0] for r in rows(seeded, "SELECT tool_use_id FROM agent_invocations")]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("toolu_01") for i in ids)
    for (sid,) in rows(seeded, "SELECT session_id FROM sessions LIMIT 50"):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}", sid)
    orphans = rows(seeded, "SELECT count(*) FROM agent_tool_uses t JOIN agent_invocations i"
                   " ON i.id = t.agent_invocation_id WHERE i.session_id <> t.session_id"
                   " OR i.agent_name <> t.agent_name")
    assert orphans == [(0,)]


# ---------------------------------------------------------------- indistinguishable


def test_schema_is_exactly_what_migrations_create(seeded: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    migrate(fresh)

    def schema(db: Path) -> list[tuple[Any, ...]]:
        return sorted(rows(db, "SELECT type, name, tbl_name, sql FROM sqlite_master"))

    assert schema(seeded) == schema(fresh)
    assert rows(seeded, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert rows(seeded, "PRAGMA integrity_check") == [("ok",)]
    assert rows(seeded, "PRAGMA journal_mode") == [("wal",)]
    assert len(rows(seeded, "SELECT name FROM sqlite_master WHERE type = 'trigger'")) == 13 + len(
        migrations.usage_triggers())
    keys = {r[0] for r in rows(seeded, "SELECT key FROM agentmon_meta")}
    assert {"db_id", "tracking_id"} <= keys


def test_sequence_numbers_are_unique_and_consistent(seeded: Path) -> None:
    (value,), = rows(seeded, "SELECT value FROM agentmon_sequence")
    seqs = [r[0] for r in rows(
        seeded, "SELECT agentmon_seq FROM agent_invocations UNION ALL SELECT agentmon_seq FROM"
        " agent_tool_uses UNION ALL SELECT agentmon_seq FROM sessions")]
    assert None not in seqs
    assert len(set(seqs)) == len(seqs)
    assert max(seqs) == value
    created = rows(seeded, "SELECT agentmon_created_seq, agentmon_seq, status FROM sessions")
    assert all(c <= s for c, s, _ in created)
    assert all(c == s for c, s, status in created if status == "active")
    # a tool call finishes before the invocation running it
    late = rows(seeded, "SELECT count(*) FROM agent_tool_uses t JOIN agent_invocations i ON"
                " i.id = t.agent_invocation_id WHERE i.status <> 'running' AND"
                " t.agentmon_seq > i.agentmon_seq")
    assert late == [(0,)]


def replay_through_triggers(source: Path, target: Path) -> None:
    """Write the same history event by event, as the hook would, letting the triggers number it."""
    migrate(target)
    src = sqlite3.connect(source)
    src.row_factory = sqlite3.Row
    dst = sqlite3.connect(target, isolation_level=None)

    def insert(table: str, row: sqlite3.Row, **override: Any) -> None:
        values = {k: row[k] for k in row.keys() if not k.startswith("agentmon_")}  # noqa: SIM118
        values.update(override)
        dst.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES"  # noqa: S608
                    f" ({', '.join('?' * len(values))})", list(values.values()))

    def finish(table: str, key: str, row: sqlite3.Row, columns: tuple[str, ...]) -> None:
        dst.execute(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)}"  # noqa: S608
                    f" WHERE {key} = ?", [row[c] for c in columns] + [row[key]])

    for session in src.execute("SELECT * FROM sessions ORDER BY agentmon_created_seq"):
        insert("sessions", session, status="active", end_time=None)
        for inv in src.execute("SELECT * FROM agent_invocations WHERE session_id = ? ORDER BY id",
                               (session["session_id"],)).fetchall():
            insert("agent_invocations", inv, status="running", end_time=None,
                   duration_seconds=None, error=None, result_summary=None, raw_output=None)
            for tool in src.execute("SELECT * FROM agent_tool_uses WHERE agent_invocation_id = ?"
                                    " ORDER BY id", (inv["id"],)).fetchall():
                insert("agent_tool_uses", tool, status="running", end_time=None,
                       duration_seconds=None, error=None, tool_output=None)
                if tool["status"] != "running":
                    finish("agent_tool_uses", "id", tool,
                           ("status", "end_time", "duration_seconds", "error", "tool_output"))
            if inv["status"] != "running":
                finish("agent_invocations", "id", inv, ("status", "end_time", "duration_seconds",
                                                        "error", "result_summary", "raw_output"))
        if session["status"] != "active":
            finish("sessions", "session_id", session, ("status", "end_time"))
    src.close()
    dst.close()


def test_identical_to_the_same_history_written_row_by_row(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    load.seed(db, opts(300, tools_per_invocation=2))
    replayed = tmp_path / "replayed.db"
    replay_through_triggers(db, replayed)
    assert data_dump(db) == data_dump(replayed)


def test_triggers_keep_working_after_a_seed(seeded: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    src = sqlite3.connect(seeded)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    (value,), = dst.execute("SELECT value FROM agentmon_sequence").fetchall()
    cur = dst.execute("INSERT INTO agent_tool_uses (agent_name, status) VALUES ('x', 'running')")
    assert dst.execute("SELECT agentmon_seq FROM agent_tool_uses WHERE id = ?",
                       (cur.lastrowid,)).fetchone() == (value + 1,)
    assert cur.lastrowid == 9001
    done = dst.execute("SELECT id, agentmon_seq FROM agent_invocations WHERE status ="
                       " 'completed' LIMIT 1").fetchone()
    dst.execute("UPDATE agent_invocations SET status = 'running' WHERE id = ?", (done[0],))
    assert dst.execute("SELECT status, agentmon_seq FROM agent_invocations WHERE id = ?",
                       (done[0],)).fetchone() == ("completed", done[1])
    dst.close()


# ---------------------------------------------------------------- determinism and parallelism


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    load.seed(a, opts(500, seed=7))
    load.seed(b, opts(500, seed=7))
    load.seed(c, opts(500, seed=8))
    assert data_dump(a) == data_dump(b)
    assert data_dump(a)["agent_tool_uses"] != data_dump(c)["agent_tool_uses"]


def test_parallel_workers_write_the_same_rows(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_plan, "SHARD_INVOCATIONS", 300)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    first = load.seed(one, opts(2000, jobs=1))
    second = load.seed(two, opts(2000, jobs=2))
    assert (first.jobs, second.jobs) == (1, 2)
    assert "wait_s" in second.phases
    assert data_dump(one) == data_dump(two)
    assert full_dump(one)["schema"] == full_dump(two)["schema"]
    assert rows(two, "PRAGMA integrity_check") == [("ok",)]
    assert rows(two, "SELECT * FROM sqlite_sequence ORDER BY name") == [
        ("agent_invocations", 2000), ("agent_tool_uses", 6000)]


def test_a_stage_holds_exactly_the_generated_rows() -> None:
    frame, shards, _ = seed_plan.plan(opts(50, schema="original"), 1, 1, 0, (
        original.SESSION_COLUMNS, original.INVOCATION_COLUMNS, original.TOOL_USE_COLUMNS))
    tables = (
        "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, start_time, end_time, status, cwd,"
        " metadata)",
        "CREATE TABLE agent_invocations (" + ", ".join(original.INVOCATION_COLUMNS) + ")",
        "CREATE TABLE agent_tool_uses (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        + ", ".join(original.TOOL_USE_COLUMNS[1:]) + ")")
    frame = replace(frame, tables=tables)
    data, n_sessions, n_inv, n_tools, running = generate.stage(frame, shards[0])
    generated = generate.generate(frame, shards[0])
    conn = sqlite3.connect(":memory:")
    conn.deserialize(data)
    assert conn.execute("SELECT * FROM agent_tool_uses ORDER BY id").fetchall() == generated[2]
    assert (n_sessions, n_inv, n_tools, running) == (
        len(generated[0]), 50, 150, generated[3])
    conn.close()


# ---------------------------------------------------------------- the original schema


@pytest.mark.parametrize("width", [4, 6])
def test_original_schema_then_adoption(tmp_path: Path, width: int) -> None:
    db = tmp_path / "agent_workflow.db"
    result = load.seed(db, opts(600, schema="original", sessions_columns=width))
    assert result.sequence is None
    assert rows(db, "PRAGMA user_version") == [(0,)]
    assert rows(db, "PRAGMA journal_mode") == [("delete",)]
    tables = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"sessions", "agent_invocations", "agent_tool_uses", "sqlite_sequence"}
    assert len(rows(db, "PRAGMA table_info(sessions)")) == width
    assert rows(db, "SELECT count(*) FROM agent_invocations WHERE status = 'started'") != [(0,)]
    (empty,), = rows(db, "SELECT avg(duration_seconds IS NULL) FROM agent_invocations")
    assert 0.1 < empty < 0.5  # the original hooks often left it empty
    for (value,) in rows(db, "SELECT start_time FROM agent_tool_uses LIMIT 100"):
        assert ISO_LOCAL.match(value), value
    before = original_dump(db)
    migrate(db)
    assert original_dump(db, width) == before


# ---------------------------------------------------------------- existing files and --append


def test_refuses_a_database_with_rows_unless_appending(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    load.seed(db, opts(100))
    with pytest.raises(SeedError, match=r"already holds .* rows; pass --append"):
        load.seed(db, opts(100))
    more = load.seed(db, opts(50, append=True, seed=2))
    assert more.invocations == 50
    assert rows(db, "SELECT count(*), max(id) FROM agent_invocations") == [(150, 150)]
    assert rows(db, "SELECT min(id) FROM agent_tool_uses WHERE agent_invocation_id > 100"
                ) == [(301,)]
    seqs = [r[0] for r in rows(db, "SELECT agentmon_seq FROM agent_invocations UNION ALL SELECT"
                               " agentmon_seq FROM agent_tool_uses UNION ALL SELECT agentmon_seq"
                               " FROM sessions")]
    assert len(set(seqs)) == len(seqs)
    assert rows(db, "SELECT value FROM agentmon_sequence") == [(max(seqs),)]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    again = load.seed(db, opts(50, append=True, seed=2))  # same seed: new ids, no clash
    assert again.invocations == 50


def test_a_migrated_empty_database_is_seeded_without_append(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    migrate(db)
    result = load.seed(db, opts(100))
    assert result.invocations == 100


def test_appending_to_an_original_database_adopts_it_with_a_backup(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db", sessions_columns=4)
    before = original_dump(db)
    load.seed(db, opts(100, append=True))
    assert rows(db, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert len(list((tmp_path / "backups").iterdir())) == 1
    after = original_dump(db, 4)
    assert all(row in after["sessions"] for row in before["sessions"])
    assert after["agent_invocations"][:5] == before["agent_invocations"]
    assert rows(db, "SELECT min(id) FROM agent_invocations WHERE agentmon_seq IS NOT NULL"
                ) == [(8,)]


def test_appending_original_rows_to_a_4_column_original_file(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db", sessions_columns=4)
    load.seed(db, opts(100, schema="original", append=True))
    assert rows(db, "SELECT count(*) FROM agent_invocations") == [(105,)]
    assert rows(db, "PRAGMA user_version") == [(0,)]


@pytest.mark.parametrize(("options", "message"), [
    (dict(invocations=0), "--invocations must be at least 1"),
    (dict(tools_per_invocation=-1), "--tools-per-invocation"),
    (dict(days=0), "--days"),
    (dict(error_rate=1.5), "--error-rate"),
    (dict(schema="other"), "--schema"),
    (dict(sessions_columns=5), "--sessions-columns must be 4 or 6"),
    (dict(sessions_columns=4), "only for --schema original"),
    (dict(jobs=0), "--jobs"),
])
def test_bad_options(tmp_path: Path, options: dict, message: str) -> None:
    values = {"invocations": 10, **options}
    with pytest.raises(SeedError, match=re.escape(message)):
        load.seed(tmp_path / "a.db", opts(values.pop("invocations"), **values))
    assert not (tmp_path / "a.db").exists()


def test_files_that_cannot_be_seeded(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="does not exist"):
        load.seed(tmp_path / "missing" / "a.db", opts(10))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 200)
    with pytest.raises(SeedError, match="cannot"):
        load.seed(notes, opts(10))
    assert notes.read_text() == "not a database\n" * 200
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SeedError, match="newer than this agentmon knows"):
        load.seed(newer, opts(10))
    migrated = tmp_path / "migrated.db"
    migrate(migrated)
    with pytest.raises(SeedError, match="--schema original writes only"):
        load.seed(migrated, opts(10, schema="original"))


def test_a_failed_load_deletes_the_new_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("generator failed")

    monkeypatch.setattr(load, "generate", broken)
    db = tmp_path / "a.db"
    with pytest.raises(RuntimeError):
        load.seed(db, opts(10))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_append_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "a.db"
    load.seed(db, opts(100))
    before = full_dump(db)
    monkeypatch.setattr(load, "generate", lambda *_: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        load.seed(db, opts(100, append=True))
    assert full_dump(db) == before


# ---------------------------------------------------------------- command line


def test_cli_summary_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "a.db"
    code = cli(["seed", "--db", str(db), "--invocations", "200", "--tools-per-invocation", "2",
                "--days", "7", "--seed", "3", "--end", "2026-02-01T00:00:00", "--json",
                "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert result["invocations"] == 200
    assert result["tool_uses"] == 400
    assert result["rows"] == result["sessions"] + 600
    assert result["rows_per_second"] > 0
    assert re.fullmatch(r"agentmon seed: [\d,]+ rows \([\d,]+ sessions, 200 invocations, 400 "
                        r"tool uses, \d+ still running\) in [\d.]+ s, [\d,]+ rows/s -> .*\n", err)
    newest = rows(db, "SELECT max(start_time) FROM agent_tool_uses")[0][0]
    assert newest.startswith("2026-01-31T")
    assert newest.endswith("+00:00")


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "a.db"
    assert cli(["seed", "--db", str(db), "--invocations", "20"]) == 0
    capsys.readouterr()
    assert cli(["seed", "--db", str(db), "--invocations", "20"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentmon seed: error: ")
    assert err.count("\n") == 1
    assert "--append" in err
    with pytest.raises(SystemExit) as exc:
        cli(["seed", "--db", str(db), "--invocations", "20", "--end", "yesterday"])
    assert exc.value.code == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["seed", "--help"])
    out = capsys.readouterr().out
    for option in ("--invocations", "--tools-per-invocation", "--days", "--seed", "--schema",
                   "--append", "--end", "--jobs"):
        assert option in out


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTty()
    monkeypatch.setattr("sys.stderr", tty)
    assert cli(["seed", "--db", str(tmp_path / "a.db"), "--invocations", "100", "--jobs", "1"]
               ) == 0
    text = tty.getvalue()
    assert "\r[" in text
    assert "100%" in text
    assert "rows/s" in text
    assert text.splitlines()[-1].startswith("agentmon seed: ")


def test_progress_bar_throttles_and_clears() -> None:
    out = io.StringIO()
    bar = seed_cli.ProgressBar(out)
    bar(10, 100, 0.5)
    bar(20, 100, 0.6)  # within 0.1 s: not drawn
    assert out.getvalue().count("\r[") == 1
    bar(100, 100, 1.0)
    assert out.getvalue().count("\r[") == 2
    bar.close()
    assert out.getvalue().endswith("\r")
    quiet = io.StringIO()
    seed_cli.ProgressBar(quiet).close()
    assert quiet.getvalue() == ""


def test_cli_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(seed_cli, "seed", interrupted)
    assert cli(["seed", "--db", str(tmp_path / "a.db"), "--invocations", "5"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_cli_error_with_a_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTty()
    monkeypatch.setattr("sys.stderr", tty)
    assert cli(["seed", "--db", str(tmp_path / "x" / "a.db"), "--invocations", "5"]) == 1
    assert "does not exist" in tty.getvalue()


def test_default_jobs_is_bounded() -> None:
    assert 1 <= seed_cli.default_jobs() <= 4


def test_usage_facts_are_counted_as_sql_says(tmp_path: Path) -> None:
    from collector_db import samples
    from test_truth import assert_matches, recount

    from agentmon.collector.collector import ExporterCollector

    db = tmp_path / "usage.db"
    load.seed(db, opts(400, usage=True))
    kinds = dict(rows(db, "SELECT kind, count(*) FROM agent_usage GROUP BY kind"))
    assert min(kinds["tokens"], kinds["api_error"], kinds["permission_denied"]) > 0
    assert rows(db, "SELECT count(*) FROM agent_usage WHERE agentmon_seq IS NULL") == [(0,)]
    collector = ExporterCollector(db, label_cap=1000)
    collector.refresh()
    assert_matches(samples(collector), recount(db))
