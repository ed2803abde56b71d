"""Loading ``agentmon seed``'s shards into the target file, in one write transaction.

Shards are generated inline or, for a big new file, by worker processes, each into an
in-memory SQLite database that the loader ``deserialize``s into an attached schema and copies
with ``INSERT ... SELECT``. The big indexes are built after the load. A new file is loaded
without a journal (if the load fails the file is deleted); an existing one keeps its journal,
so a failure rolls back. With ``--schema agentmon`` the database is first migrated to the
latest version; the change-tracking and removal triggers are dropped for the load and
re-created before the commit. With ``--schema original`` it gets the original project's DDL
(``agentmon.schema.original``, user_version 0).
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from agentmon.schema import migrations, original
from agentmon.schema.db import connect_writer, has_table, schema_version, table_columns
from agentmon.schema.files import SIDE_FILES
from agentmon.schema.migrate import ensure_latest
from agentmon.seed import plan as planning
from agentmon.seed.generate import DATA_TABLES, generate, insert_sql, no_gc, stage
from agentmon.seed.options import SeedError, SeedOptions, SeedResult, validate
from agentmon.seed.plan import Frame, Shard


def _row_count(conn: sqlite3.Connection) -> int:
    total = 0
    for table in DATA_TABLES:
        if has_table(conn, table):
            total += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    return total


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    """The next id, above both max(id) and AUTOINCREMENT's high-water mark."""
    top = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # noqa: S608
    if has_table(conn, "sqlite_sequence"):
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        if row and row[0] is not None:
            top = max(top, int(row[0]))
    return int(top) + 1


def _open_new(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    # A brand-new file: no journal and no fsync during the load (on failure we delete it)
    # and a bigger page cache; nobody else may open it until we are done.
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   "cache_size = -65536"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _check_existing(conn: sqlite3.Connection, path: Path, opts: SeedOptions) -> None:
    try:
        version = schema_version(conn)
        rows = _row_count(conn)
    except sqlite3.DatabaseError as exc:
        raise SeedError(f"{path}: cannot read it as an SQLite database ({exc})") from exc
    if rows and not opts.append:
        raise SeedError(f"{path} already holds {rows:,} rows; pass --append to add to it, "
                        "or choose a new file")
    if opts.schema == "original" and version != 0:
        raise SeedError(f"{path} is at schema version {version}; --schema original writes only "
                        "to original (version 0) databases")
    if version > migrations.LATEST:
        raise SeedError(f"{path} is at schema version {version}, newer than this agentmon "
                        f"knows ({migrations.LATEST})")


def _prepare_schema(conn: sqlite3.Connection, path: Path, opts: SeedOptions) -> None:
    if opts.schema == "agentmon":
        # Through the migrate command's path: a file holding tables is backed up first.
        ensure_latest(conn, path)
        return
    conn.execute("BEGIN IMMEDIATE")
    for ddl in original.ddl(opts.sessions_columns):
        conn.execute(ddl)
    conn.execute("COMMIT")


def _data_indexes(conn: sqlite3.Connection, partial: bool) -> list[tuple[str, str]]:
    """The data tables' full (or partial) indexes: (name, CREATE INDEX statement).

    Full indexes are dropped before a big load and built after it: a sort of the finished
    table is cheaper than maintaining them row by row (measured; inserting row by row, even
    the partial ones are). The parallel loader keeps the partial ones, though: they are tiny
    (running rows) or keyed by values that grow from shard to shard (sequence numbers,
    tool_use_id), so each shard's entries, sorted by its worker, are appended by the copy.
    """
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN ('sessions', 'agent_invocations', 'agent_tool_uses') ORDER BY rowid"
    ).fetchall()
    return [(str(name), str(sql)) for name, sql in rows
            if (" WHERE " in str(sql).upper()) == partial]


ProgressFn = Callable[[int, int, float], None]


def seed(path: str | Path, opts: SeedOptions, progress: ProgressFn | None = None) -> SeedResult:
    """Write synthetic history into ``path``; see the module docstring."""
    validate(opts)
    path = Path(path)
    if not path.parent.is_dir():
        raise SeedError(f"folder {path.parent} does not exist")
    new_file = not path.exists() or path.stat().st_size == 0
    started = time.perf_counter()
    with no_gc():
        result = _seed(path, opts, progress, new_file)
    result.seconds = time.perf_counter() - started
    return result


def _seed(path: Path, opts: SeedOptions, progress: ProgressFn | None,
          new_file: bool) -> SeedResult:
    if new_file:
        conn = _open_new(path)
    else:
        try:
            conn = connect_writer(path)
        except sqlite3.DatabaseError as exc:
            raise SeedError(f"{path}: cannot open it as an SQLite database ({exc})") from exc
    try:
        if not new_file:
            _check_existing(conn, path, opts)
        _prepare_schema(conn, path, opts)
        result = _load(conn, path, opts, progress, new_file)
        conn.close()
        if new_file and opts.schema == "agentmon":
            connect_writer(path).close()  # leave it in WAL mode, like every agentmon writer
    except BaseException:
        conn.close()
        if new_file:
            for suffix in ("", *SIDE_FILES):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise
    return result


STAGE = "agentmon_seed_stage"
Counts = tuple[int, int, int, int]  # sessions, invocations, tool uses, running rows


def _columns(conn: sqlite3.Connection, opts: SeedOptions,
             ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    present = set(table_columns(conn, "sessions"))  # 4 or 6 columns in original files
    sessions = tuple(c for c in original.SESSION_COLUMNS if c in present)
    if opts.schema == "agentmon":
        return ((*sessions, "agentmon_seq", "agentmon_created_seq"),
                (*original.INVOCATION_COLUMNS, "tool_use_id", "agentmon_seq"),
                (*original.TOOL_USE_COLUMNS, "tool_use_id", "agentmon_seq"))
    return sessions, original.INVOCATION_COLUMNS, original.TOOL_USE_COLUMNS


def _load(conn: sqlite3.Connection, path: Path, opts: SeedOptions,
          progress: ProgressFn | None, new_file: bool) -> SeedResult:
    tracked = opts.schema == "agentmon"
    result = SeedResult(str(path), schema=opts.schema)
    columns = _columns(conn, opts)
    # Parallel generation hands shards over through ATTACH, only possible between
    # transactions: a commit per shard is fine for a new file (exclusively locked, no journal,
    # deleted on failure), not for an existing one, which is loaded in one transaction.
    parallel = new_file and opts.jobs > 1 and opts.invocations > planning.SHARD_INVOCATIONS
    result.jobs = opts.jobs if parallel else 1
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    try:
        existing = 0 if new_file else _row_count(conn)
        first_seq = 0
        if tracked:
            first_seq = int(conn.execute(
                "SELECT value FROM agentmon_sequence WHERE id = 1").fetchone()[0])
            migrations.drop_change_tracking_triggers(conn)
            migrations.drop_removal_triggers(conn)  # a bulk load removes nothing
        first_inv, first_tool = (_next_id(conn, "agent_invocations"),
                                 _next_id(conn, "agent_tool_uses"))
        frame, shards, final_seq = planning.plan(opts, first_inv, first_tool, first_seq, columns)
        expected = frame.n_sessions + opts.invocations * (1 + opts.tools_per_invocation)
        # Rebuilding an index costs a sort of the whole table: worth it only when the load
        # is bigger than what is there already.
        rebuild = _data_indexes(conn, False) if expected > existing else []
        kept = _data_indexes(conn, True)
        if not parallel and rebuild:
            rebuild += kept
            kept = []
        for name, _ in rebuild:
            conn.execute(f"DROP INDEX {name}")

        def done(counts: Counts) -> None:
            result.sessions += counts[0]
            result.invocations += counts[1]
            result.tool_uses += counts[2]
            result.running += counts[3]
            if progress:
                progress(result.rows, expected, time.perf_counter() - started)

        if parallel:
            tables = tuple(str(conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()[0]) for table in DATA_TABLES)
            frame = replace(frame, tables=tables, indexes=tuple(sql for _, sql in kept))
            _run_parallel(conn, frame, shards, opts.jobs, done, result.phases)
        else:
            _run_inline(conn, frame, shards, done)
        result.phases["load_s"] = round(time.perf_counter() - started, 2)
        if new_file:
            # Measured: the sorter is faster with a small cache, and a helper thread uses the
            # core the generator workers no longer need.
            conn.execute("PRAGMA cache_size = -2000")
            conn.execute("PRAGMA threads = 2")
        for _, sql in rebuild:
            conn.execute(sql)
        result.phases["index_s"] = round(
            time.perf_counter() - started - result.phases["load_s"], 2)
        if tracked:
            conn.execute("UPDATE agentmon_sequence SET value = ? WHERE id = 1", (final_seq,))
            for stmt in migrations.change_tracking_triggers() + migrations.removal_triggers():
                conn.execute(stmt)
            if opts.usage:
                _usage(conn, first_inv, first_tool)
            result.sequence = int(conn.execute(
                "SELECT value FROM agentmon_sequence WHERE id = 1").fetchone()[0])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction and not new_file:  # a new file has no journal: it is deleted
            conn.execute("ROLLBACK")
        raise
    return result


# Usage facts derived from the loaded rows (schema step "usage"), set-based and with the
# triggers in place, so they are stamped as the hook's would be: each completed invocation's
# tokens and lines (its model one of three), one main-thread message per session, an API error
# per fourth failed invocation and a permission denial per fifth failed tool use.
USAGE_SQL = (
    "INSERT INTO agent_usage (timestamp, session_id, kind, agent_name, model, label,"
    " input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, lines_added,"
    " lines_removed, dedup_key)"
    " SELECT end_time, session_id, 'tokens', agent_name, CASE id % 3"
    " WHEN 0 THEN 'claude-sonnet-4-5-20250929' WHEN 1 THEN 'claude-haiku-4-5-20251001'"
    " ELSE 'claude-opus-4-1-20250805' END, NULL, id * 7 % 400 + 5, id * 13 % 3000 + 50,"
    " id * 31 % 60000 + 5000, id * 17 % 4000, id % 120, id % 40, 'seed:inv:' || id"
    " FROM agent_invocations WHERE id >= ? AND status = 'completed';"
    "INSERT INTO agent_usage (timestamp, session_id, kind, agent_name, model, input_tokens,"
    " output_tokens, cache_read_tokens, cache_creation_tokens, dedup_key)"
    " SELECT start_time, session_id, 'tokens', 'main', 'claude-opus-4-1-20250805',"
    " length(session_id) * 11, length(session_id) * 90, length(session_id) * 2000,"
    " length(session_id) * 50, 'seed:main:' || session_id FROM sessions WHERE true"
    " ON CONFLICT (dedup_key) DO NOTHING;"
    "INSERT INTO agent_usage (timestamp, session_id, kind, label, dedup_key)"
    " SELECT end_time, session_id, 'api_error', CASE id % 8 WHEN 0 THEN 'rate_limit'"
    " ELSE 'overloaded' END, 'seed:err:' || id FROM agent_invocations"
    " WHERE id >= ? AND status = 'error' AND id % 4 = 0;"
    "INSERT INTO agent_usage (timestamp, session_id, kind, label, dedup_key)"
    " SELECT end_time, session_id, 'permission_denied', tool_name, 'seed:deny:' || id"
    " FROM agent_tool_uses WHERE id >= ? AND status = 'error' AND id % 5 = 0"
)


def _usage(conn: sqlite3.Connection, first_inv: int, first_tool: int) -> None:
    for sql, args in zip(USAGE_SQL.split(";"), ((first_inv,), (), (first_inv,), (first_tool,)),
                         strict=True):
        conn.execute(sql, args)


def _run_inline(conn: sqlite3.Connection, frame: Frame, shards: Sequence[Shard],
                done: Callable[[Counts], None]) -> None:
    statements = [insert_sql(table, cols) for table, cols in zip(DATA_TABLES, frame.columns,
                                                                   strict=True)]
    for shard in shards:
        sessions, invocations, tool_uses, running = generate(frame, shard)
        for sql, rows in zip(statements, (sessions, invocations, tool_uses), strict=True):
            conn.executemany(sql, rows)
        done((len(sessions), len(invocations), len(tool_uses), running))


def _run_parallel(conn: sqlite3.Connection, frame: Frame, shards: Sequence[Shard], jobs: int,
                  done: Callable[[Counts], None], phases: dict[str, float]) -> None:
    """Workers build shards as in-memory databases; copy each in order, as it arrives."""
    # SELECT * between identical tables lets SQLite copy records without decoding them.
    copies = [f"INSERT INTO main.{t} SELECT * FROM {STAGE}.{t}" for t in DATA_TABLES]  # noqa: S608
    todo = iter(shards)
    window: deque[Future[tuple[bytes, int, int, int, int]]] = deque()
    # spawn, not fork: this process holds an open SQLite connection.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        for shard in todo:
            window.append(pool.submit(stage, frame, shard))
            if len(window) >= 2 * jobs:
                break
        while window:
            waited = time.perf_counter()
            data, *counts = window.popleft().result()
            phases["wait_s"] = phases.get("wait_s", 0.0) + time.perf_counter() - waited
            following = next(todo, None)
            if following is not None:
                window.append(pool.submit(stage, frame, following))
            # A fresh schema for each shard, attached between transactions: deserializing
            # into a reused one can keep its stale page cache (all shard images carry the
            # same change counter).
            conn.execute("COMMIT")
            conn.execute(f"ATTACH ':memory:' AS {STAGE}")
            conn.deserialize(data, name=STAGE)
            conn.execute("BEGIN IMMEDIATE")
            for sql in copies:
                conn.execute(sql)
            conn.execute("COMMIT")
            conn.execute(f"DETACH {STAGE}")
            conn.execute("BEGIN IMMEDIATE")
            done((counts[0], counts[1], counts[2], counts[3]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
