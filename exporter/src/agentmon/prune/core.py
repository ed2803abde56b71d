# Only this module's own constants (table and column names) are interpolated into SQL; every
# value from outside is bound as a parameter.
# ruff: noqa: S608
"""Removing old finished rows in short write transactions, keeping their numbers.

A row is pruned when its status is final (``agentmon.schema.statuses.FINAL``), its end (or, when
it has none, its event time) is older than the cutoff, and its session has no running
invocation or tool use; a session when it is ``completed``, ended before the cutoff and has no
running work. Rows whose times cannot be read are never pruned (their age is unknown).

Each batch is one ``BEGIN IMMEDIATE`` transaction over at most ``batch`` rows of one table in
rowid order: it deletes the rows, adds their aggregates to ``agentmon_pruned`` and bumps
``agentmon_prune_mark`` (schema step "pruned"), and puts the removal counter of step 5 and its
token (step "removal_token") back where they were, since the exporter learns of these deletes
from the prune mark instead (a rebuild per batch would cost it a full scan). Writers wait for a
batch as they wait for any other write. A failure (a full disk, a lock held past the busy
timeout) rolls back the batch in progress: what committed before is consistent, nothing is lost.
"""

from __future__ import annotations

import bisect
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentmon.collector import queries
from agentmon.collector.state import usable_duration
from agentmon.schema.db import schema_version
from agentmon.schema.migrations import LATEST, STEPS
from agentmon.schema.plan import check_known
from agentmon.schema.statuses import COMPLETED, FINAL, sql_list

PRUNED_STEP = next(s.version for s in STEPS if s.name == "pruned")
TOKEN_STEP = next(s.version for s in STEPS if s.name == "removal_token")
UNIX_EPOCH_JULIAN = 2440587.5


def _jd(column: str) -> str:
    # The time rule of agentmon.collector.queries: naive text is the host's local time.
    return f"julianday({column}, 'utc')"


@dataclass(frozen=True)
class Table:
    name: str
    key2: str
    # when the row ended (or, lacking that, happened), and when it was written
    ended: str
    written: str


FROZEN = (
    Table("agent_invocations", "phase",
          f"COALESCE({_jd('end_time')}, {_jd('timestamp')})",
          f"COALESCE({_jd('timestamp')}, {_jd('start_time')}, {_jd('end_time')})"),
    Table("agent_tool_uses", "tool_name",
          f"COALESCE({_jd('end_time')}, {_jd('timestamp')})",
          f"COALESCE({_jd('timestamp')}, {_jd('start_time')}, {_jd('end_time')})"),
)
SESSIONS = Table("sessions", "", f"COALESCE({_jd('end_time')}, {_jd('start_time')})",
                 _jd("start_time"))
BUCKETS = {"agent_invocations": queries.INVOCATION_BUCKETS,
           "agent_tool_uses": queries.TOOL_USE_BUCKETS}
RUNNING_SESSIONS = (f"{queries.INVOCATIONS.running_sessions} UNION"
                    f" {queries.TOOL_USES.running_sessions}")
FINAL_SQL = sql_list(FINAL)


class PruneError(Exception):
    """A database prune cannot work on (one-line message)."""


@dataclass
class Result:
    dry_run: bool
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        [t.name for t in FROZEN] + [SESSIONS.name], 0))
    batches: int = 0
    reclaimed_bytes: int = 0
    size_before: int = 0
    size_after: int = 0
    seconds: float = 0.0


def cutoff_julian(older_than_seconds: float, now: float | None = None) -> float:
    moment = time.time() if now is None else now
    return (moment - older_than_seconds) / 86400.0 + UNIX_EPOCH_JULIAN


def check_schema(conn: sqlite3.Connection, name: object) -> None:
    try:
        version = schema_version(conn)
        check_known(version)
    except ValueError as exc:
        raise PruneError(f"{name}: {exc}") from None
    if version < PRUNED_STEP:
        raise PruneError(f"{name} is at schema version {version}, prune needs"
                         f" {PRUNED_STEP}..{LATEST}: run agentmon migrate")


class Pruner:
    """One prune run over an open writer connection (autocommit, WAL, busy timeout set)."""

    def __init__(self, conn: sqlite3.Connection, cutoff: float, *, batch: int = 500,
                 dry_run: bool = False,
                 progress: Callable[[Result], None] | None = None) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.conn = conn
        self.cutoff = cutoff
        self.batch = batch
        self.dry_run = dry_run
        self.progress = progress
        self.result = Result(dry_run)

    def run(self, max_used_bytes: int | None = None) -> Result:
        """Prune by age; then, with ``max_used_bytes``, the oldest finished rows of any age
        until the pages in use fit (never in a dry run: its deletes are not made)."""
        started = time.monotonic()
        for table in (*FROZEN, SESSIONS):
            self._prune_table(table, self.cutoff)
        if max_used_bytes is not None and not self.dry_run:
            cursors = dict.fromkeys((t.name for t in FROZEN), 0)
            while used_bytes(self.conn) > max_used_bytes and cursors:
                for table in FROZEN:
                    if table.name in cursors:
                        cursor, removed = self._batch(table, math.inf, cursors[table.name])
                        if cursor is None or (removed == 0 and cursor == cursors[table.name]):
                            del cursors[table.name]
                        else:
                            cursors[table.name] = cursor
        self.result.seconds = time.monotonic() - started
        return self.result

    def _prune_table(self, table: Table, cutoff: float) -> None:
        cursor: int | None = 0
        while cursor is not None:
            cursor, _ = self._batch(table, cutoff, cursor)

    def _batch(self, table: Table, cutoff: float, after: int) -> tuple[int | None, int]:
        """One transaction over the next ``batch`` rows after rowid ``after``: returns the
        rowid to go on from (None: no row past it is old enough) and the rows removed."""
        conn = self.conn
        conn.execute("BEGIN" if self.dry_run else "BEGIN IMMEDIATE")
        try:
            cursor, removed = self._batch_locked(table, cutoff, after)
            conn.execute("ROLLBACK" if self.dry_run else "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.result.batches += 1
        self.result.removed[table.name] += removed
        if self.progress is not None:
            self.progress(self.result)
        return cursor, removed

    def _batch_locked(self, table: Table, cutoff: float, after: int) -> tuple[int | None, int]:
        conn = self.conn
        running = {r[0] for r in conn.execute(RUNNING_SESSIONS)}
        if table is SESSIONS:
            rows = conn.execute(
                f"SELECT rowid, session_id, status, agentmon_seq, {table.ended} < ?,"
                f" {table.written} < ? FROM sessions WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (cutoff, cutoff, after, self.batch)).fetchall()
            doomed = [r for r in rows if r[2] == COMPLETED and r[4] == 1
                      and r[1] not in running]
        else:
            rows = conn.execute(
                f"SELECT id, session_id, status, agentmon_seq, {table.ended} < ?,"
                f" {table.written} < ?, agent_name, {table.key2}, duration_seconds,"
                f" {queries.TIMESTAMP_DURATION} FROM {table.name} WHERE id > ? ORDER BY id"
                " LIMIT ?", (cutoff, cutoff, after, self.batch)).fetchall()
            doomed = [r for r in rows if r[2] in FINAL and r[4] == 1 and r[1] not in running]
        if doomed and not self.dry_run:
            self._delete(table, doomed)
        if len(rows) < self.batch or not any(r[5] == 1 for r in rows):
            return None, len(doomed)  # the end, or only rows written after the cutoff
        return rows[-1][0], len(doomed)

    def _delete(self, table: Table, doomed: list[tuple]) -> None:
        conn = self.conn
        # read under the write lock: a hook may have migrated the file since the last batch
        bookkeeping = ("value", "token") if schema_version(conn) >= TOKEN_STEP else ("value",)
        removals = conn.execute(f"SELECT {', '.join(bookkeeping)} FROM agentmon_removals"
                                " WHERE id = 1").fetchone()
        groups: dict[tuple[object, object, object, float | None], list[float]] = {}
        if table is SESSIONS:
            conn.executemany("DELETE FROM sessions WHERE rowid = ?", [(r[0],) for r in doomed])
            groups[(None, None, COMPLETED, None)] = [len(doomed), 0.0]
        else:
            conn.executemany(f"DELETE FROM {table.name} WHERE id = ?", [(r[0],) for r in doomed])
            buckets = BUCKETS[table.name]
            for row in doomed:
                duration = usable_duration(row[8], row[9])
                le = None if duration is None else _bound(buckets, duration)
                agg = groups.setdefault((row[6], row[7], row[2], le), [0, 0.0])
                agg[0] += 1
                agg[1] += duration or 0.0
        for (agent, key2, status, le), (rows, total) in groups.items():
            changed = conn.execute(
                "UPDATE agentmon_pruned SET rows = rows + ?, total = total + ?"
                " WHERE tbl = ? AND agent_name IS ? AND key2 IS ? AND status = ? AND le IS ?",
                (rows, total, table.name, agent, key2, status, le)).rowcount
            if not changed:
                conn.execute(
                    "INSERT INTO agentmon_pruned (tbl, agent_name, key2, status, le, rows,"
                    " total) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (table.name, agent, key2, status, le, rows, total))
        top = max((r[3] for r in doomed if isinstance(r[3], int)), default=0)
        sessions = len(doomed) if table is SESSIONS else 0
        conn.execute("UPDATE agentmon_prune_mark SET batches = batches + 1,"
                     " max_seq = MAX(max_seq, ?), sessions = sessions + ? WHERE id = 1",
                     (top, sessions))
        # the prune mark tells the exporter; the removal counter and token would make it rebuild
        conn.execute("UPDATE agentmon_removals SET "
                     + ", ".join(f"{column} = ?" for column in bookkeeping) + " WHERE id = 1",
                     tuple(removals))


def _bound(buckets: tuple[float, ...], duration: float) -> float:
    """The upper bound of the histogram bucket holding ``duration`` (+Inf past the last)."""
    i = bisect.bisect_left(buckets, duration)
    return buckets[i] if i < len(buckets) else math.inf


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the pages in use (the file less its free pages)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)
