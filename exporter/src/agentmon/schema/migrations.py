"""Versioned schema migrations, kept in ``PRAGMA user_version``.

Version 0 is any database agentmon has not touched yet: an empty file, or one written by the
original agent-workflow hooks (whose shape depends on which hook created it first). Each step
has an ``up`` and a ``down`` and runs in one ``BEGIN IMMEDIATE`` transaction together with the
``user_version`` bump, so a step either happens whole or not at all, and hook processes writing
at the same time simply wait on the lock.

1. adopt   - create the original tables (``agentmon.schema.original``) when missing, add the
             columns agentmon writes (``sessions.cwd``/``metadata`` for the 4-column shape,
             ``tool_use_id`` for pairing)
             and the ``agentmon_meta`` table holding this database's identity. Changes no row.
2. indexes - the indexes the exporter's queries use (see ``agentmon.collector.queries``).
3. changes - change tracking for the incremental exporter (see ``CHANGE_TRACKING`` below).
4. interrupted - the freeze triggers re-created with the final status ``interrupted`` (rows the
             hook closes when their session ends), and ``agent_invocations.agent_id`` (the
             subagent's id from SubagentStart / SubagentStop and the events it makes).
5. removals - a counter of removed rows, so the exporter notices deletes and replaces (see "Step 5"
             below).
6. usage   - correlation columns (``prompt_id``, ``agent_id``, ``background``) and the
             append-only ``agent_usage`` table: tokens, lines changed, API errors and permission
             denials, one row per counted fact (see "Step 6" below).
7. pruned  - what ``agentmon prune`` removed, as aggregates the exporter adds to what the tables
             hold (see "Step 7" below).
8. removal_token - a random token beside step 5's counter, written by the same triggers, so a
             restored backup followed by as many deletes is not taken for the history counted
             (see "Step 8" below).

No ``down`` drops a table or a column that holds user rows: it removes only what agentmon
derived (indexes, triggers, sequence columns, its own metadata).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from agentmon.schema import original
from agentmon.schema.db import has_table, quote_ident, table_columns

# Statuses after which a row no longer changes, as step 3's freeze triggers were written. A
# step is history and never changes: a later step that adds a final status to
# agentmon.schema.statuses.FINAL re-creates the triggers with it.
FINAL_STATUSES = ("completed", "error")
# ... and as step 4 re-wrote them (its own copy, for the same reason).
STEP4_FINAL_STATUSES = ("completed", "error", "interrupted")

# Columns agentmon adds to adopted tables (table -> [(column, type)]).
ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "sessions": [("cwd", "TEXT"), ("metadata", "JSON")],
    "agent_invocations": [("tool_use_id", "TEXT")],
    "agent_tool_uses": [("tool_use_id", "TEXT")],
}

# Step 2. Each index serves a query in agentmon.collector.queries (tests check EXPLAIN QUERY PLAN).
# Of the review's P1.3 list, the timestamp and session indexes serve no query we run: the
# exporter never scans by time window or by session, so they would only slow every insert.
# Rows whose duration must come from their timestamps (legacy rows; the hook always fills
# duration_seconds). agentmon.collector.queries uses the very same text, so the partial
# indexes apply.
UNTIMED = "duration_seconds IS NULL OR NOT duration_seconds BETWEEN 0 AND 1000000000"

INDEXES: dict[str, str] = {
    # cold-start aggregation over finished invocations: covering, so the table is never read
    "idx_invocations_agent": "ON agent_invocations(agent_name, phase, status, duration_seconds)",
    # ... and for the rows without a usable duration, their timestamps: a partial index that
    # holds only those rows, so new data does not pay for two timestamps per index entry
    "idx_invocations_untimed": "ON agent_invocations(agent_name, phase, status,"
    f" duration_seconds, start_time, end_time) WHERE {UNTIMED}",
    # running-now gauges and sessions active now: only the running rows are in this index, so
    # it stays tiny; session_id and status (SQLite 3.40 needs the WHERE column in the index)
    # make it covering
    "idx_invocations_running": "ON agent_invocations(agent_name, phase, session_id, status)"
    " WHERE status = 'running'",
    # the same two for tool uses
    "idx_tool_uses_agent": "ON agent_tool_uses(agent_name, tool_name, status, duration_seconds)",
    "idx_tool_uses_untimed": "ON agent_tool_uses(agent_name, tool_name, status,"
    f" duration_seconds, start_time, end_time) WHERE {UNTIMED}",
    "idx_tool_uses_running": "ON agent_tool_uses(agent_name, tool_name, session_id, status)"
    " WHERE status = 'running'",
    # the hook pairs PreToolUse / PostToolUse / PostToolUseFailure by tool_use_id (sessions need
    # no index: the exporter follows their changes through idx_sessions_agentmon_seq)
    "idx_invocations_tool_use_id": "ON agent_invocations(tool_use_id)"
    " WHERE tool_use_id IS NOT NULL",
    "idx_tool_uses_tool_use_id": "ON agent_tool_uses(tool_use_id) WHERE tool_use_id IS NOT NULL",
}

# Step 3: change tracking.
#
# Rows are updated after they are inserted (a tool use is inserted 'running' at PreToolUse and
# completed at PostToolUse), so "id > last id" misses completions. Instead a single counter row
# (agentmon_sequence) is bumped by triggers on every insert and on every update of a column
# the metrics read, and the new value is written into the row's ``agentmon_seq``. SQLite has
# one writer at a time, so sequence values become visible in commit order: a reader that has
# seen everything up to N and asks for ``agentmon_seq > N`` misses nothing.
#
# Finished rows (status completed or error) are frozen: an update that touches a metric column
# of such a row is ignored (RAISE(IGNORE)), so each row is counted exactly once, at the moment
# it finished, and counters never have to go down. Sessions can be resumed, so they are not
# frozen; ``agentmon_created_seq`` (set on insert only) tells a new session from a changed one.
# Rows that existed before this step keep NULL sequence values: a cold start counts them.
TRACKED: dict[str, tuple[str, str]] = {
    # table -> (row key, metric columns whose change bumps the sequence)
    "agent_invocations": (
        "id",
        "agent_name, phase, status, duration_seconds, start_time, end_time",
    ),
    "agent_tool_uses": (
        "id",
        "agent_name, tool_name, status, duration_seconds, start_time, end_time",
    ),
    "sessions": ("session_id", "status"),
}
FROZEN_TABLES = ("agent_invocations", "agent_tool_uses")
_NEXT_SEQ = "(SELECT value FROM agentmon_sequence WHERE id = 1)"
_BUMP = "UPDATE agentmon_sequence SET value = value + 1 WHERE id = 1;"


def change_tracking_triggers(final_statuses: tuple[str, ...] | None = None) -> list[str]:
    """The CREATE TRIGGER statements of change tracking, freezing rows in ``final_statuses``.

    Step 3 passes its own FINAL_STATUSES; the default is what the latest step installs, which is
    what the seeder re-creates after a bulk load.
    """
    if final_statuses is None:
        final_statuses = CURRENT_FINAL_STATUSES
    final = ", ".join(f"'{s}'" for s in final_statuses)
    stmts = []
    for table, (key, columns) in TRACKED.items():
        created = ", agentmon_created_seq = " + _NEXT_SEQ if table == "sessions" else ""
        # Table and column names come from TRACKED, never from input.
        stmts.append(
            f"CREATE TRIGGER IF NOT EXISTS agentmon_{table}_ins AFTER INSERT ON {table} BEGIN "  # noqa: S608
            f"{_BUMP} UPDATE {table} SET agentmon_seq = {_NEXT_SEQ}{created}"
            f" WHERE {key} = NEW.{key}; END"
        )
        stmts.append(
            f"CREATE TRIGGER IF NOT EXISTS agentmon_{table}_upd AFTER UPDATE OF {columns} "  # noqa: S608
            f"ON {table} BEGIN {_BUMP} "
            f"UPDATE {table} SET agentmon_seq = {_NEXT_SEQ} WHERE {key} = NEW.{key}; END"
        )
        if table in FROZEN_TABLES:
            stmts.append(
                f"CREATE TRIGGER IF NOT EXISTS agentmon_{table}_frozen BEFORE UPDATE OF {columns} "
                f"ON {table} WHEN OLD.status IN ({final}) BEGIN SELECT RAISE(IGNORE); END"
            )
    return stmts


def drop_change_tracking_triggers(conn: sqlite3.Connection) -> None:
    for table in TRACKED:
        for suffix in ("ins", "upd", "frozen"):
            conn.execute(f"DROP TRIGGER IF EXISTS agentmon_{table}_{suffix}")


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    up: Callable[[sqlite3.Connection], None]
    down: Callable[[sqlite3.Connection], None]


def _adopt_up(conn: sqlite3.Connection) -> None:
    for ddl in (*original.TABLES.values(), *original.INDEXES):
        conn.execute(ddl)
    for table, columns in ADDED_COLUMNS.items():
        present = set(table_columns(conn, table))
        for column, sql_type in columns:
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agentmon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    # A random identity: the exporter's checkpoint belongs to this file, not to a path that
    # may later hold another database.
    conn.execute(
        "INSERT OR IGNORE INTO agentmon_meta (key, value) VALUES ('db_id', ?)", (uuid.uuid4().hex,)
    )


def _adopt_down(conn: sqlite3.Connection) -> None:
    # Tables and added columns hold user rows (or hook-written values): they stay.
    conn.execute("DROP TABLE IF EXISTS agentmon_meta")


# The original's (agent_name, tool_name) index is a prefix of idx_tool_uses_agent: it serves
# nothing the covering index does not, and costs every insert. Step 2 drops it, down restores it.
REDUNDANT_ORIGINAL_INDEX = "idx_agent_tool_uses_agent"


def _indexes_up(conn: sqlite3.Connection) -> None:
    for name, body in INDEXES.items():
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {body}")
    conn.execute(f"DROP INDEX IF EXISTS {REDUNDANT_ORIGINAL_INDEX}")


def _indexes_down(conn: sqlite3.Connection) -> None:
    for name in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute(original.INDEXES[0])


def _changes_up(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agentmon_sequence"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)"
    )
    conn.execute("INSERT OR IGNORE INTO agentmon_sequence (id, value) VALUES (1, 0)")
    for table in TRACKED:
        present = set(table_columns(conn, table))
        wanted = ["agentmon_seq"] + (["agentmon_created_seq"] if table == "sessions" else [])
        for column in wanted:
            if column not in present:
                # ADD COLUMN with no default does not rewrite the table: O(1) at any size.
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")
            # Partial: rows from before this step (NULL) take no space in the index.
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS idx_{table}_{column} ON {table}({column})"
                f" WHERE {column} IS NOT NULL"
            )
    for stmt in change_tracking_triggers(FINAL_STATUSES):
        conn.execute(stmt)
    # A new identity for this run of change tracking: after a down and up again the sequence
    # restarts at 0, and a reader's stale checkpoint must not be mistaken for current.
    conn.execute(
        "INSERT OR REPLACE INTO agentmon_meta (key, value) VALUES ('tracking_id', ?)",
        (uuid.uuid4().hex,),
    )


def _changes_down(conn: sqlite3.Connection) -> None:
    drop_change_tracking_triggers(conn)
    for table in TRACKED:
        present = set(table_columns(conn, table))
        for column in ("agentmon_seq", "agentmon_created_seq"):
            conn.execute(f"DROP INDEX IF EXISTS idx_{table}_{column}")
            if column in present:
                # Sequence numbers are derived bookkeeping, never user data.
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {quote_ident(column)}")
    conn.execute("DROP TABLE IF EXISTS agentmon_sequence")
    conn.execute("DELETE FROM agentmon_meta WHERE key = 'tracking_id'")


def _refreeze(conn: sqlite3.Connection, final_statuses: tuple[str, ...]) -> None:
    """Re-create the freeze triggers so that rows in ``final_statuses`` stay as they are."""
    wanted = {f"agentmon_{table}_frozen" for table in FROZEN_TABLES}
    for table in FROZEN_TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS agentmon_{table}_frozen")
    for stmt in change_tracking_triggers(final_statuses):
        if any(f" {name} " in stmt for name in wanted):
            conn.execute(stmt)


def _interrupted_up(conn: sqlite3.Connection) -> None:
    if "agent_id" not in set(table_columns(conn, "agent_invocations")):
        conn.execute("ALTER TABLE agent_invocations ADD COLUMN agent_id TEXT")
    # SubagentStart / SubagentStop and a subagent's own events find its row by agent_id.
    conn.execute("CREATE INDEX IF NOT EXISTS idx_invocations_agent_id"
                 " ON agent_invocations(agent_id) WHERE agent_id IS NOT NULL")
    _refreeze(conn, STEP4_FINAL_STATUSES)


def _interrupted_down(conn: sqlite3.Connection) -> None:
    # agent_id holds values the hook wrote: the column stays (as step 1's columns do).
    conn.execute("DROP INDEX IF EXISTS idx_invocations_agent_id")
    _refreeze(conn, FINAL_STATUSES)


# Step 5: removals.
#
# Counters never go down, so a refresh cannot subtract a row it no longer sees. Instead every
# removal of a row the exporter may have counted bumps ``agentmon_removals``, and the exporter
# rebuilds its state when that value differs from the one it last read. Counted are: a DELETE
# of an invocation or tool use that is not running (running rows are only in the gauges, which
# are re-read on every refresh) and of any session; an INSERT that names the id of such an
# invocation or tool use (``INSERT OR REPLACE`` deletes the old row without firing delete
# triggers unless ``recursive_triggers`` is on; an ``OR IGNORE`` or upsert naming such an id is
# counted too, which costs a needless rebuild, never a wrong number). The condition does not
# list final statuses, so a status added later is covered without re-creating these triggers.
# A replaced session is not visible to a trigger (the hook upserts sessions on every event,
# and a BEFORE INSERT trigger cannot tell an upsert from a replace): the exporter checks the
# session count whenever it reads a new session instead. The hook inserts without an id, so
# its inserts cost one primary-key probe (of id -1). What a removal does is the triggers' body:
# step 5 wrote this one, step 8 adds a token (see there).
STEP5_REMOVED = "UPDATE agentmon_removals SET value = value + 1 WHERE id = 1;"


def removal_triggers(removed: str | None = None) -> list[str]:
    """The CREATE TRIGGER statements of step 5 with ``removed`` as their body; the default is
    what the latest step installs (the seeder re-creates them after a bulk load)."""
    body = CURRENT_REMOVED if removed is None else removed
    stmts = []
    for table in FROZEN_TABLES:
        # Table names come from FROZEN_TABLES, never from input.
        stmts.append(
            f"CREATE TRIGGER IF NOT EXISTS agentmon_{table}_del AFTER DELETE ON {table}"
            f" WHEN OLD.status IS NOT 'running' BEGIN {body} END"
        )
        stmts.append(
            f"CREATE TRIGGER IF NOT EXISTS agentmon_{table}_replace BEFORE INSERT ON {table}"  # noqa: S608
            f" WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id AND status IS NOT 'running')"
            f" BEGIN {body} END"
        )
    stmts.append(
        f"CREATE TRIGGER IF NOT EXISTS agentmon_sessions_del AFTER DELETE ON sessions"
        f" BEGIN {body} END"
    )
    return stmts


def drop_removal_triggers(conn: sqlite3.Connection) -> None:
    for table in FROZEN_TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS agentmon_{table}_del")
        conn.execute(f"DROP TRIGGER IF EXISTS agentmon_{table}_replace")
    conn.execute("DROP TRIGGER IF EXISTS agentmon_sessions_del")


def _removals_up(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agentmon_removals"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)"
    )
    conn.execute("INSERT OR IGNORE INTO agentmon_removals (id, value) VALUES (1, 0)")
    for stmt in removal_triggers(STEP5_REMOVED):
        conn.execute(stmt)


def _removals_down(conn: sqlite3.Connection) -> None:
    drop_removal_triggers(conn)
    conn.execute("DROP TABLE IF EXISTS agentmon_removals")


# Step 6: usage.
#
# Every row of ``agent_usage`` is one fact counted once: an assistant message's tokens (read
# from a transcript, ``dedup_key`` = its message id and request id), a subagent's usage from its
# Agent tool response (``dedup_key`` = the call's tool_use_id), an API error (StopFailure) or a
# permission denial. ``dedup_key`` is UNIQUE, so reading a transcript again (rewritten,
# truncated, the offset lost) never counts a message twice. Rows never change after insert: a
# BEFORE UPDATE trigger ignores any change to a counted column, the insert trigger stamps
# ``agentmon_seq`` like step 3's, and deletes bump step 5's removal counter, as does an insert
# naming an existing id or dedup key (the hook looks a key up first and never does that).
# ``agentmon_transcripts`` holds how far each transcript was read (derived: dropping it costs a
# re-read that the dedup keys make harmless).
USAGE_COUNTED = ("kind, agent_name, model, label, input_tokens, output_tokens,"
                 " cache_read_tokens, cache_creation_tokens, lines_added, lines_removed")
USAGE_TABLE = """
        CREATE TABLE IF NOT EXISTS agent_usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp TIMESTAMP,
            session_id TEXT,
            kind TEXT NOT NULL,
            agent_name TEXT,
            model TEXT,
            label TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
            lines_added INTEGER NOT NULL DEFAULT 0,
            lines_removed INTEGER NOT NULL DEFAULT 0,
            prompt_id TEXT,
            agent_id TEXT,
            tool_use_id TEXT,
            dedup_key TEXT UNIQUE
        )"""
STEP6_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "agent_invocations": [("prompt_id", "TEXT"), ("background", "INTEGER")],
    "agent_tool_uses": [("prompt_id", "TEXT"), ("agent_id", "TEXT")],
}
_USAGE_SEQ = "(SELECT value FROM agentmon_sequence WHERE id = 1)"


def usage_triggers(removed: str | None = None) -> list[str]:
    """The CREATE TRIGGER statements of step 6 with ``removed`` as what a removal does; the
    default is what the latest step installs (the seeder re-creates them after a bulk load)."""
    body = CURRENT_REMOVED if removed is None else removed
    return [
        f"CREATE TRIGGER IF NOT EXISTS agentmon_agent_usage_ins AFTER INSERT ON agent_usage"  # noqa: S608
        f" BEGIN {_BUMP} UPDATE agent_usage SET agentmon_seq = {_USAGE_SEQ}"
        " WHERE id = NEW.id; END",
        f"CREATE TRIGGER IF NOT EXISTS agentmon_agent_usage_frozen BEFORE UPDATE OF"
        f" {USAGE_COUNTED} ON agent_usage BEGIN SELECT RAISE(IGNORE); END",
        f"CREATE TRIGGER IF NOT EXISTS agentmon_agent_usage_del AFTER DELETE ON agent_usage"
        f" BEGIN {body} END",
        "CREATE TRIGGER IF NOT EXISTS agentmon_agent_usage_replace BEFORE INSERT ON agent_usage"  # noqa: S608
        " WHEN EXISTS (SELECT 1 FROM agent_usage WHERE id = NEW.id"
        " OR (NEW.dedup_key IS NOT NULL AND dedup_key = NEW.dedup_key))"
        f" BEGIN {body} END",
    ]


def _usage_up(conn: sqlite3.Connection) -> None:
    for table, columns in STEP6_COLUMNS.items():
        present = set(table_columns(conn, table))
        for column, sql_type in columns:
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.execute(USAGE_TABLE)
    if "agentmon_seq" not in set(table_columns(conn, "agent_usage")):
        conn.execute("ALTER TABLE agent_usage ADD COLUMN agentmon_seq INTEGER")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_agent_usage_agentmon_seq"
                 " ON agent_usage(agentmon_seq) WHERE agentmon_seq IS NOT NULL")
    # cold start: a covering scan per label combination
    conn.execute("CREATE INDEX IF NOT EXISTS idx_agent_usage_labels ON agent_usage(kind,"
                 " agent_name, model, label, input_tokens, output_tokens, cache_read_tokens,"
                 " cache_creation_tokens, lines_added, lines_removed)")
    conn.execute("CREATE TABLE IF NOT EXISTS agentmon_transcripts (path TEXT PRIMARY KEY,"
                 " session_id TEXT, device INTEGER, inode INTEGER, offset INTEGER NOT NULL,"
                 " head TEXT)")
    for stmt in usage_triggers(STEP5_REMOVED):
        conn.execute(stmt)


def _usage_down(conn: sqlite3.Connection) -> None:
    # agent_usage and the new columns hold what the hook recorded: they stay. The sequence
    # column is bookkeeping (as step 3's): a later up starts it afresh, the cold start counts
    # rows without one.
    for name in ("ins", "frozen", "del", "replace"):
        conn.execute(f"DROP TRIGGER IF EXISTS agentmon_agent_usage_{name}")
    conn.execute("DROP INDEX IF EXISTS idx_agent_usage_agentmon_seq")
    conn.execute("DROP INDEX IF EXISTS idx_agent_usage_labels")
    if "agentmon_seq" in set(table_columns(conn, "agent_usage")):
        conn.execute("ALTER TABLE agent_usage DROP COLUMN agentmon_seq")
    conn.execute("DROP TABLE IF EXISTS agentmon_transcripts")
# Step 7: pruned, what retention removed.
#
# ``agentmon prune`` deletes old finished rows; the exporter's counters must neither go down nor
# count a row twice. In the same transaction as each batch of deletes the prune adds the rows'
# aggregates to ``agentmon_pruned`` (per table, raw label values and status, and the histogram
# bucket's upper bound ``le``: NULL for a row without a usable duration, +Inf past the last
# bound) and bumps ``agentmon_prune_mark`` (batches so far, the highest sequence number of a
# pruned row, pruned sessions). The exporter adds the aggregates on a cold start and, on a
# new batch, needs no rebuild when every pruned row was already counted (see
# agentmon.collector.reading). The down step keeps both tables once anything was pruned:
# they are the only record of the removed rows' numbers.
PRUNED_TABLES = {
    "agentmon_pruned": "CREATE TABLE IF NOT EXISTS agentmon_pruned (tbl TEXT NOT NULL,"
    " agent_name, key2, status TEXT NOT NULL, le REAL, rows INTEGER NOT NULL,"
    " total REAL NOT NULL)",
    "agentmon_prune_mark": "CREATE TABLE IF NOT EXISTS agentmon_prune_mark"
    " (id INTEGER PRIMARY KEY CHECK (id = 1), batches INTEGER NOT NULL,"
    " max_seq INTEGER NOT NULL, sessions INTEGER NOT NULL)",
}
# each batch adds to its label combination's row, found through this index
PRUNED_INDEX = ("CREATE INDEX IF NOT EXISTS idx_agentmon_pruned"
                " ON agentmon_pruned(tbl, agent_name, key2, status, le)")


def _pruned_up(conn: sqlite3.Connection) -> None:
    for ddl in PRUNED_TABLES.values():
        conn.execute(ddl)
    conn.execute(PRUNED_INDEX)
    conn.execute("INSERT OR IGNORE INTO agentmon_prune_mark (id, batches, max_seq, sessions)"
                 " VALUES (1, 0, 0, 0)")


def _pruned_down(conn: sqlite3.Connection) -> None:
    batches = conn.execute("SELECT COALESCE(MAX(batches), 0) FROM agentmon_prune_mark").fetchone()
    if batches[0] == 0:
        for table in PRUNED_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# Step 8: removal_token.
#
# Step 5's counter is a number, and numbers repeat: a backup restored over the live file takes
# it back, and as many removals as happened since the backup bring it to the value the exporter
# last read (neither the witnesses nor the highest sequence number need change). So every
# removal also writes a fresh random ``token`` (16 bytes of ``randomblob``: SQLite's generator,
# seeded from the operating system's) beside the counter, in the same UPDATE. A token in the
# file is one that a removal in this file's own history wrote (or this step, when it ran): a
# restored backup followed by any number of removals holds a token the exporter has never read,
# unless the history the exporter read is part of the restored one. The exporter compares
# counter and token. The triggers fire on deletes and on inserts that name an existing id,
# never on the hook's inserts, so a hook write pays nothing more; ``agentmon prune`` puts both
# back after its batch, as it did the counter. The up step writes a first random token, so a
# backup from before this step, restored and migrated again, gets a new one.
STEP8_REMOVED = ("UPDATE agentmon_removals SET value = value + 1, token = randomblob(16)"
                 " WHERE id = 1;")
# step 6's triggers that count removals (the others stay as they are)
USAGE_REMOVAL_TRIGGERS = ("agentmon_agent_usage_del", "agentmon_agent_usage_replace")


def _rewrite_removal_triggers(conn: sqlite3.Connection, removed: str) -> None:
    drop_removal_triggers(conn)
    for name in USAGE_REMOVAL_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    usage = [stmt for stmt in usage_triggers(removed)
             if any(f" {name} " in stmt for name in USAGE_REMOVAL_TRIGGERS)]
    for stmt in removal_triggers(removed) + usage:
        conn.execute(stmt)


def _removal_token_up(conn: sqlite3.Connection) -> None:
    if "token" not in set(table_columns(conn, "agentmon_removals")):
        conn.execute("ALTER TABLE agentmon_removals ADD COLUMN token BLOB")
    conn.execute("UPDATE agentmon_removals SET token = randomblob(16) WHERE id = 1")
    _rewrite_removal_triggers(conn, STEP8_REMOVED)


def _removal_token_down(conn: sqlite3.Connection) -> None:
    _rewrite_removal_triggers(conn, STEP5_REMOVED)
    if "token" in set(table_columns(conn, "agentmon_removals")):
        conn.execute("ALTER TABLE agentmon_removals DROP COLUMN token")


STEPS: tuple[Step, ...] = (
    Step(1, "adopt", _adopt_up, _adopt_down),
    Step(2, "indexes", _indexes_up, _indexes_down),
    Step(3, "changes", _changes_up, _changes_down),
    Step(4, "interrupted", _interrupted_up, _interrupted_down),
    Step(5, "removals", _removals_up, _removals_down),
    Step(6, "usage", _usage_up, _usage_down),
    Step(7, "pruned", _pruned_up, _pruned_down),
    Step(8, "removal_token", _removal_token_up, _removal_token_down),
)
# What the latest step's freeze triggers hold final (the seeder re-creates the latest triggers).
CURRENT_FINAL_STATUSES = STEP4_FINAL_STATUSES
# ... and what its removal triggers do.
CURRENT_REMOVED = STEP8_REMOVED
LATEST = STEPS[-1].version


__all__ = [
    "CURRENT_FINAL_STATUSES",
    "FINAL_STATUSES",
    "LATEST",
    "PRUNED_TABLES",
    "STEPS",
    "change_tracking_triggers",
    "drop_change_tracking_triggers",
    "drop_removal_triggers",
    "has_table",
    "removal_triggers",
    "usage_triggers",
]
