"""Reading the database into a ``State``: SQL in, changes to the state out.

Nothing here knows about HTTP, files or health; the caller (``collector``) owns the connection
and the read transaction, and turns exceptions into fault reasons.

Divergence. Incremental reading is only right while the database's history since the last read
is a continuation of what was read. Before each incremental read, ``rebuild_reason`` compares
what the state recorded with what the database says now, with a handful of primary-key lookups:

- the removal counter (migration step 5) and the random token every removal writes beside it
  (step "removal_token"): a delete or replace of a row that may have been counted; counters
  never go down, so the state is rebuilt and the exported values equal SQL again (Prometheus
  sees a counter reset). The token also tells a restored backup from the history counted when
  as many removals followed the restore as the counter lost: the counter repeats, a token
  never does. A state without a token (a checkpoint of format 3, a database before that step)
  compares the counter alone, then takes the token it finds;
- witnesses: per frozen table the counted row with the highest sequence number, which must
  still exist with that very number (finished rows are frozen); the session changed last, which
  must still exist with the same creation number and the same or a later sequence number; and
  the row stamped with the state's sequence number (the head), which must still carry it or a
  later one. A backup restored over the live file rolls these rows back or removes them, even
  when writes after the restore have carried the sequence past the state's;
- and, whenever a refresh reads a new session, the number of sessions: an ``INSERT OR
  REPLACE`` of a session looks like a new one, and no trigger can tell it from the hook's
  upserts.

Pruning (migration step "pruned"). ``agentmon prune`` deletes old finished rows and adds their
aggregates to ``agentmon_pruned``, and puts the removal counter and token back as they were
before its batch; the exported numbers are what the tables hold plus those aggregates. A cold
start adds them; a refresh that finds new prune batches needs nothing more when every pruned
row carries a sequence number the state has read past (it was counted when it finished and is
still in the state), and rebuilds otherwise. Fewer batches than the state saw
(a restored backup, a down step) rebuild too.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmon.collector import queries
from agentmon.collector.labels import LabelFolder
from agentmon.collector.state import TABLES, State, session_key, usable_duration
from agentmon.schema.migrations import LATEST, STEPS
from agentmon.schema.statuses import COMPLETED

# Needs change tracking (step 3), the removal counter ("removals") and agent_usage ("usage").
MIN_SCHEMA = next(s.version for s in STEPS if s.name == "usage")
# From this step on agentmon prune may have removed rows (their numbers are kept).
PRUNED_SCHEMA = next(s.version for s in STEPS if s.name == "pruned")
# From this step on every removal writes a random token beside the removal counter.
TOKEN_SCHEMA = next(s.version for s in STEPS if s.name == "removal_token")
FROZEN = (queries.INVOCATIONS, queries.TOOL_USES)


class DbFault(Exception):
    """An expected database fault: a reason label and a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Head:
    """What a refresh reads first: the sequence value, identity and removal counter."""

    seq: int
    db_id: str
    removals: int
    # agentmon prune's mark: batches so far, highest sequence number pruned, sessions pruned
    prune_batches: int = 0
    prune_max_seq: int = 0
    pruned_sessions: int = 0
    # the removal token (hex), None before its step
    removal_token: str | None = None


def read_head(conn: sqlite3.Connection, name: object) -> Head:
    version = int(conn.execute(queries.USER_VERSION).fetchone()[0])
    if version < MIN_SCHEMA:
        raise DbFault("not_migrated", f"{name} is at schema version {version},"
                      f" needs {MIN_SCHEMA}..{LATEST}: run agentmon migrate")
    if version > LATEST:
        raise DbFault("not_migrated", f"{name} is at schema version {version}, newer than this"
                      f" agentmon knows ({LATEST}): upgrade agentmon")
    seq, db_id, removals = conn.execute(queries.META).fetchone()
    if not isinstance(seq, int) or not isinstance(db_id, str) or not isinstance(removals, int):
        raise DbFault("not_migrated", f"{name} lacks agentmon's sequence, id or removal counter")
    if version < PRUNED_SCHEMA:
        return Head(seq, db_id, removals)
    mark = conn.execute(queries.PRUNE_MARK).fetchone()
    if mark is None or not all(isinstance(v, int) for v in mark):
        raise DbFault("not_migrated", f"{name} lacks agentmon's prune mark")
    if version < TOKEN_SCHEMA:
        return Head(seq, db_id, removals, *mark)
    (token,) = conn.execute(queries.REMOVAL_TOKEN).fetchone()
    return Head(seq, db_id, removals, *mark, removal_token=token)


class Reader:
    """Cold starts and incremental reads; counts the rows it read per table."""

    def __init__(self, label_cap: int, batch_size: int) -> None:
        self.label_cap = label_cap
        self.batch = batch_size
        self.rows_read = dict.fromkeys(TABLES, 0)
        # Called between two batches' transactions (tests write to the database there).
        self.between_batches: Callable[[], None] | None = None

    # --- divergence ------------------------------------------------------------------------
    @staticmethod
    def rebuild_reason(conn: sqlite3.Connection, state: State | None, head: Head) -> str | None:
        """Why ``state`` cannot be brought forward incrementally, or None when it can."""
        if state is None:
            return "no checkpoint"
        if state.db_id != head.db_id:
            return "another database"
        if head.seq < max(state.marks.values()):
            return "sequence went backwards"
        if head.removals != state.removals:
            return "rows were deleted or replaced"
        if state.removal_token is not None and head.removal_token != state.removal_token:
            if head.removal_token is None:
                return "the removal token is gone (a down migration, or an older backup restored?)"
            return "removals differ from those counted (a restored backup, then as many deletes?)"
        state.removal_token = head.removal_token
        pruned_now = head.prune_batches != state.prune_batches
        if pruned_now:
            if head.prune_batches < state.prune_batches:
                return "fewer prune batches than counted (a restored backup?)"
            if head.prune_max_seq > min(state.marks.values()):
                return "rows were pruned before they were counted"
            state.prune_batches = head.prune_batches
        diverged = "history differs from what was counted (a restored backup?)"
        for table, q in enumerate(FROZEN):
            seen = state.witness.get(q.table)
            if seen is None:
                continue
            now = _row(conn, table, seen[0])
            if now is None and pruned_now and seen[1] <= head.prune_max_seq:
                # a new prune removed it (counted, so its numbers are in the aggregates): the
                # next row read becomes the witness
                del state.witness[q.table]
            elif now != (seen[1], seen[2], seen[2]):
                # a finished row is frozen: the same sequence number and the same values
                return diverged
        seen = state.witness.get("agent_usage")
        if seen is not None and _row(conn, USAGE, seen[0]) != (seen[1], seen[2], seen[2]):
            return diverged  # usage rows never change
        seen = state.witness.get("sessions")
        if seen is not None and pruned_now and seen[1] <= head.prune_max_seq \
                and _row(conn, SESSIONS, seen[0]) is None:
            del state.witness["sessions"]  # pruned, as above
            seen = None
        if seen is not None:
            now = _row(conn, SESSIONS, seen[0])
            # the same session, as it was or changed since (a later sequence number)
            if now is None or now[1] != seen[2] or not (
                    (now[0], now[2]) == (seen[1], seen[3]) or now[0] > state.marks["sessions"]):
                return diverged
        # Sequence numbers up to the state's are never handed out again in one history: the
        # row holding the highest of them must be the one seen then, or one that was seen
        # below it (the rows above it changed again since, or were deleted).
        top = _top_stamp(conn, state.seq)
        if top is not None and (state.head is None or top[0] > state.head[0] or (
                top[0] == state.head[0] and [*top, _fp(conn, top)] != state.head)):
            return diverged
        return None

    def _witness(self, conn: sqlite3.Connection, state: State, table: int, rowid: int) -> None:
        now = _row(conn, table, rowid)
        if now is None:  # cannot happen inside one read transaction; be safe
            state.witness.pop(TABLES[table], None)
        elif table == SESSIONS:
            state.witness[TABLES[table]] = [rowid, now[0], now[1], now[2]]
        else:
            state.witness[TABLES[table]] = [rowid, now[0], now[2]]

    # --- incremental -----------------------------------------------------------------------
    def incremental(self, conn: sqlite3.Connection, state: State, head: Head) -> str | None:
        """Bring ``state`` to snapshot ``head.seq``: sessions and gauges in the caller's
        transaction, the frozen tables in batches of short transactions (finished rows never
        change again, so a row read in a later snapshot is still the row as of ``head.seq``).

        Returns a reason to rebuild, leaving ``state`` as it was, when the sessions would not
        add up."""
        seq = head.seq
        mark = state.marks["sessions"]
        rows = conn.execute(queries.SESSIONS_CHANGED, (mark, seq)).fetchall()
        self.rows_read["sessions"] += len(rows)
        new = sum(1 for row in rows if row[2] is not None and row[2] > mark)
        # A changed session moves between statuses, a new one adds one: checked before applying.
        if rows and int(conn.execute(queries.SESSION_COUNT).fetchone()[0]) \
                + head.pruned_sessions != sum(state.sessions.values()) + new:
            return "the sessions do not add up (a replaced session, or a restored backup?)"
        for _, _, created, session_id, status in rows:
            state.session_changed(session_id, status, created is not None and created > mark)
        if rows:
            self._witness(conn, state, SESSIONS, rows[-1][1])
        state.marks["sessions"] = seq
        self.read_gauges(conn, state)
        for table, (q, finished) in enumerate(((queries.INVOCATIONS, state.finished_invocation),
                                               (queries.TOOL_USES, state.finished_tool_use))):
            while True:
                rows = conn.execute(q.changed, (state.marks[q.table], seq, self.batch)).fetchall()
                for _, _, agent, key2, status, duration, from_times in rows:
                    finished(agent, key2, status, usable_duration(duration, from_times))
                self.rows_read[q.table] += len(rows)
                if rows:  # frozen: the row as read is the row now, in this transaction too
                    self._witness(conn, state, table, rows[-1][1])
                if len(rows) < self.batch:
                    state.marks[q.table] = seq
                    break
                state.marks[q.table] = rows[-1][0]
                conn.execute("COMMIT")  # a big backlog must not hold one long read transaction
                if self.between_batches is not None:
                    self.between_batches()
                conn.execute("BEGIN")
        self._read_usage(conn, state, seq)
        state.seq = seq
        state.head = self._head(conn, seq)
        return None

    def _read_usage(self, conn: sqlite3.Connection, state: State, seq: int) -> None:
        """New agent_usage rows up to ``seq``, in batches in the caller's transaction (rows
        never change, and are few next to tool uses)."""
        while True:
            rows = conn.execute(queries.USAGE_CHANGED,
                                (state.marks["agent_usage"], seq, self.batch)).fetchall()
            for _, _, kind, agent, model, what, *counts in rows:
                state.add_usage(kind, agent, model, what, 1, tuple(counts))
            self.rows_read["agent_usage"] += len(rows)
            if rows:
                self._witness(conn, state, USAGE, rows[-1][1])
            if len(rows) < self.batch:
                state.marks["agent_usage"] = seq
                return
            state.marks["agent_usage"] = rows[-1][0]

    @staticmethod
    def read_gauges(conn: sqlite3.Connection, state: State) -> None:
        state.set_running(
            conn.execute(queries.INVOCATIONS.running).fetchall(),
            conn.execute(queries.TOOL_USES.running).fetchall(),
            int(conn.execute(queries.ACTIVE_SESSIONS).fetchone()[0]),
        )

    @staticmethod
    def _head(conn: sqlite3.Connection, seq: int) -> list[int] | None:
        """The row holding the highest sequence number up to ``seq``, as [sequence number,
        table index, rowid, fingerprint]."""
        top = _top_stamp(conn, seq)
        return None if top is None else [*top, _fp(conn, top)]

    # --- cold start ------------------------------------------------------------------------
    def cold_start(self, conn: sqlite3.Connection, head: Head) -> State:
        """One aggregated pass over the covering indexes, in the caller's read transaction."""
        state = State(self.label_cap, head.db_id, head.seq)
        state.removals = head.removals
        state.removal_token = head.removal_token
        state.prune_batches = head.prune_batches
        for q, add, histogram in (
            (queries.INVOCATIONS, state.add_invocations, state.invocation_histogram),
            (queries.TOOL_USES, state.add_tool_uses, state.tool_use_histogram),
        ):
            for agent, key2, status, rows in conn.execute(q.cold_groups).fetchall():
                label = add(agent, key2, status, rows)
                self.rows_read[q.table] += rows
                cumulative, count, total = self._cold_durations(conn, q, (agent, key2, status),
                                                                rows)
                if count:
                    histogram(label).add_cumulative(cumulative, count, total)
            last = conn.execute(q.last_counted, (head.seq,)).fetchone()
            if last is not None:
                self._witness(conn, state, TABLES.index(q.table), last[0])
        for kind, agent, model, what, rows, *counts in conn.execute(queries.USAGE_COLD):
            state.add_usage(kind, agent, model, what, rows, tuple(counts))
            self.rows_read["agent_usage"] += rows
        last = conn.execute(queries.USAGE_LAST_COUNTED, (head.seq,)).fetchone()
        if last is not None:
            self._witness(conn, state, USAGE, last[0])
        status_folder: LabelFolder = state.folders["status"]
        sessions = conn.execute(queries.COLD_SESSIONS).fetchall()
        self.rows_read["sessions"] += sum(rows for _, rows in sessions)
        if head.prune_batches:
            sessions += self._add_pruned(conn, state)
        for status, rows in sessions:
            label = COMPLETED if status == COMPLETED else status_folder.fold(status, rows)
            state.sessions[label] = state.sessions.get(label, 0) + rows
        for session_id, status in conn.execute(queries.COLD_OPEN_SESSIONS):
            state.open_sessions[session_key(session_id)] = status_folder.fold(status, 0)
        last = conn.execute(queries.SESSION_LAST_CHANGED, (head.seq,)).fetchone()
        if last is not None:
            self._witness(conn, state, SESSIONS, last[0])
        state.head = self._head(conn, head.seq)
        self.read_gauges(conn, state)
        return state

    @staticmethod
    def _add_pruned(conn: sqlite3.Connection, state: State) -> list[tuple[object, int]]:
        """Add what agentmon prune removed from the frozen tables; its sessions, returned."""
        sessions = []
        add = {queries.INVOCATIONS.table: (state.add_invocations, state.invocation_histogram),
               queries.TOOL_USES.table: (state.add_tool_uses, state.tool_use_histogram)}
        for table, agent, key2, status, le, rows, total in conn.execute(queries.PRUNED):
            if table == "sessions":
                sessions.append((status, rows))
            elif table in add:
                counter, histogram = add[table]
                label = counter(agent, key2, status, rows)
                if le is not None:
                    histogram(label).add_bucket(le, rows, total)
        return sessions

    @staticmethod
    def _cold_durations(conn: sqlite3.Connection, q: queries.TableQueries,
                        combo: tuple[object, object, object],
                        rows: int) -> tuple[list[int], int, float]:
        """Cumulative bucket counts, count and sum of the usable durations of one combination."""
        count = conn.execute(q.cold_zero, combo).fetchone()[0]
        total = 0.0
        cumulative = []
        bounds = (0.0, *q.buckets, queries.MAX_DURATION)
        for low, high in itertools.pairwise(bounds):
            n, s = conn.execute(q.cold_range, (*combo, low, high)).fetchone()
            count += n
            total += s
            cumulative.append(count)
        cumulative.pop()  # the last range is the +Inf bucket, which is the count
        if count < rows:  # some rows lack a usable duration_seconds: try their timestamps
            n, s, *at_most = conn.execute(q.cold_timestamps, combo).fetchone()
            count += n
            total += s
            cumulative = [c + (extra or 0) for c, extra in zip(cumulative, at_most, strict=True)]
        return cumulative, count, total


# Indexed by table number (the order of state.TABLES).
SESSIONS = TABLES.index("sessions")
USAGE = TABLES.index("agent_usage")
_ROW_AT = (queries.INVOCATIONS.row_at, queries.TOOL_USES.row_at, queries.SESSION_ROW_AT,
           queries.USAGE_ROW_AT)
_TOP_STAMP = (queries.INVOCATIONS.top_stamp, queries.TOOL_USES.top_stamp,
              queries.SESSION_TOP_STAMP, queries.USAGE_TOP_STAMP)


def _top_stamp(conn: sqlite3.Connection, seq: int) -> tuple[int, int, int] | None:
    """(sequence number, table index, rowid) of the row holding the highest number <= seq."""
    best = None
    for table, sql in enumerate(_TOP_STAMP):
        found = conn.execute(sql, (seq,)).fetchone()
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], table, found[1])
    return best


def _fp(conn: sqlite3.Connection, top: tuple[int, int, int]) -> int:
    now = _row(conn, top[1], top[2])
    return -1 if now is None else now[2]


def _row(conn: sqlite3.Connection, table: int, rowid: object) -> tuple[Any, int, int] | None:
    """A row as it is now: (sequence number, fingerprint of what never changes, fingerprint of
    everything). A finished invocation or tool use never changes its metric columns; a session
    keeps its id, creation number and start time."""
    row = conn.execute(_ROW_AT[table], (rowid,)).fetchone()
    if row is None or not isinstance(row[0], int):  # a row from before change tracking
        return None
    full = _fingerprint(row[1:])
    return row[0], (_fingerprint(row[1:4]) if table == SESSIONS else full), full


def _fingerprint(values: tuple[object, ...]) -> int:
    digest = hashlib.blake2b(repr(values).encode("utf-8", "backslashreplace"), digest_size=7)
    return int.from_bytes(digest.digest(), "big")
