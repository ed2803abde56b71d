"""Truth: after every refresh, every exported number equals a recount of the same database.

A hypothesis state machine writes rows with plain SQL (the triggers do the change tracking,
the hook is not involved), interleaving inserts, finishes, duplicate finishes, edits of
non-metric columns, session changes, deletes and ``INSERT OR REPLACE`` of rows and sessions,
backups restored over the live file (then more writes, or as many deletes as bring the removal
counter back to the value it had before the restore), exporter restarts (from the
checkpoint, or from nothing), refreshes with writes between their batches (batch sizes 1 and
2) and plain refreshes, with label caps small enough to be reached. The recount below is
written independently of the collector: GROUP BY for the counters and gauges, the documented
duration rule re-implemented with ``datetime``, and the label cap checked as a rule (a kept
value shows its own count, ``other`` the rest, at most ``cap`` kept values per label).

Like the hook, every insert writes a unique event time (``timestamp``, or a session's
``start_time``): the exporter's restore detection relies on rows written after a restore not
repeating the counted ones exactly (see docs/metrics.md, "Deletes, replaces and restores").
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import hypothesis.strategies as st
from collector_db import make_db, samples, writer
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agentmon.collector.collector import ExporterCollector
from agentmon.schema.migrate import migrate
from agentmon.schema.statuses import FINAL

INV_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
DATETIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
SELF_METRICS = ("agentmon_db_up", "agentmon_last_refresh", "agentmon_refresh_errors",
                "agentmon_rows_read", "agentmon_label_values_folded", "agentmon_state_rebuilds",
                "agentmon_build_info", "agentmon_db_file")

AGENTS = st.sampled_from(["planner", "coder", "mcp__srv__x", None, "", "bad agent/x", "a" * 65])
PHASES = st.sampled_from(["plan", "build", None, "two words"])
TOOLS = st.sampled_from(["Bash", "Read", "mcp__github__create_issue", None, "rm -rf /"])
SESSIONS = st.sampled_from(["s1", "s2", "s3", "s4"])
# The final statuses are a definition (one place), not a computation the recount must redo.
FINISHED = st.sampled_from(FINAL)
FINAL_SQL = "(" + ", ".join(f"'{status}'" for status in FINAL) + ")"
BASE = datetime(2025, 3, 1, 12, 0, 0)


def _fmt(moment: datetime, style: str) -> str:
    if style == "naive":
        return moment.isoformat(timespec="milliseconds")
    if style == "space":
        return moment.isoformat(sep=" ", timespec="milliseconds")
    if style == "utc":
        return moment.replace(tzinfo=UTC).isoformat(timespec="milliseconds")
    if style == "zulu":
        return moment.isoformat(timespec="milliseconds") + "Z"
    # +02:00: the same wall-clock text denotes an instant two hours earlier
    return moment.isoformat(timespec="milliseconds") + "+02:00"


@st.composite
def times(draw: st.DrawFn) -> tuple[object, object]:
    """(start_time, end_time): mostly valid, in several styles, sometimes garbage."""
    kind = draw(st.sampled_from(["ok", "ok", "ok", "none", "garbage", "end_missing"]))
    start = BASE + timedelta(milliseconds=draw(st.integers(0, 10**7)))
    if kind == "none":
        return None, None
    if kind == "garbage":
        return draw(st.sampled_from(["yesterday", "now", "", "2025-03-01"])), "later"
    end = start + timedelta(milliseconds=draw(st.integers(-5_000, 20_000_000)))
    styles = st.sampled_from(["naive", "space", "utc", "zulu", "plus2"])
    started = _fmt(start, draw(styles))
    return started, (None if kind == "end_missing" else _fmt(end, draw(styles)))


DURATIONS = st.one_of(
    st.none(),
    st.floats(0, 20_000, allow_nan=False),
    st.sampled_from([0, 0.005, 60, 300.0, -1.0, "garbage", 2e9]),
)


def truth_label(raw: object, missing: str = "unknown") -> str:
    if raw is None or raw == "":
        return missing
    return raw if isinstance(raw, str) and NAME.fullmatch(raw) else "invalid"


def truth_duration(duration: object, start: object, end: object) -> float | None:
    if isinstance(duration, int | float) and 0 <= duration <= 1e9:
        return float(duration)
    if not (isinstance(start, str) and isinstance(end, str)):
        return None
    if not (DATETIME.match(start) and DATETIME.match(end)):
        return None
    try:
        begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    # naive: the host's local time (the machine's times never fall in a daylight-saving change;
    # tests/test_timezones.py covers those)
    begin = begin if begin.tzinfo else begin.astimezone()
    finish = finish if finish.tzinfo else finish.astimezone()
    seconds = round((finish - begin).total_seconds(), 3)
    return seconds if 0 <= seconds <= 1e9 else None


def recount(db: Path, conn: sqlite3.Connection | None = None,
            ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The expected exposition (without self-metrics), from the database alone (through
    ``conn``, a connection of the caller's that holds no transaction, or one of its own)."""
    own = conn is None
    conn = writer(db) if conn is None else conn
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        out[key] = out.get(key, 0) + value

    for agent, phase, status, n in conn.execute(
            "SELECT agent_name, phase, status, COUNT(*) FROM agent_invocations"  # noqa: S608
            f" WHERE status IN {FINAL_SQL} GROUP BY 1, 2, 3"):
        add("agentmon_invocations_total", n, agent=truth_label(agent),
            phase=truth_label(phase, "none"), status=status)
    for agent, tool, status, n in conn.execute(
            "SELECT agent_name, tool_name, status, COUNT(*) FROM agent_tool_uses"  # noqa: S608
            f" WHERE status IN {FINAL_SQL} GROUP BY 1, 2, 3"):
        add("agentmon_tool_uses_total", n, agent=truth_label(agent), tool=truth_label(tool),
            status=status)
    for agent, phase, n in conn.execute(
            "SELECT agent_name, phase, COUNT(*) FROM agent_invocations WHERE status = 'running'"
            " GROUP BY 1, 2"):
        add("agentmon_invocations_running", n, agent=truth_label(agent),
            phase=truth_label(phase, "none"))
    for agent, tool, n in conn.execute(
            "SELECT agent_name, tool_name, COUNT(*) FROM agent_tool_uses WHERE status = 'running'"
            " GROUP BY 1, 2"):
        add("agentmon_tool_uses_running", n, agent=truth_label(agent), tool=truth_label(tool))
    for table, column, name, label, buckets in (
        ("agent_invocations", "agent_name", "agentmon_invocation_duration_seconds", "agent",
         INV_BUCKETS),
        ("agent_tool_uses", "tool_name", "agentmon_tool_use_duration_seconds", "tool",
         TOOL_BUCKETS),
    ):
        for key, duration, start, end in conn.execute(
                f"SELECT {column}, duration_seconds, start_time, end_time FROM {table}"  # noqa: S608
                f" WHERE status IN {FINAL_SQL}"):
            seconds = truth_duration(duration, start, end)
            if seconds is None:
                continue
            labels = {label: truth_label(key)}
            add(f"{name}_count", 1, **labels)
            add(f"{name}_sum", seconds, **labels)
            for bound in (*buckets, math.inf):
                le = "+Inf" if bound == math.inf else repr(float(bound))
                add(f"{name}_bucket", 1 if seconds <= bound else 0, **labels, le=le)
    for status, n in conn.execute("SELECT status, COUNT(*) FROM sessions GROUP BY status"):
        add("agentmon_sessions", n, status="completed" if status == "completed"
            else truth_label(status))
    active = conn.execute(
        "SELECT COUNT(*) FROM (SELECT session_id FROM agent_invocations WHERE status = 'running'"
        " UNION SELECT session_id FROM agent_tool_uses WHERE status = 'running')").fetchone()[0]
    add("agentmon_sessions_active", active)
    types = ("input", "output", "cache_read", "cache_creation", "added", "removed")
    for kind, agent, model, label, *counts in conn.execute(
            "SELECT kind, agent_name, model, label, input_tokens, output_tokens,"
            " cache_read_tokens, cache_creation_tokens, lines_added, lines_removed"
            " FROM agent_usage"):
        if kind == "tokens":
            for kind_name, n in zip(types, counts, strict=True):
                if kind_name in ("added", "removed"):
                    add("agentmon_lines_changed_total", n, agent=truth_label(agent),
                        type=kind_name)
                else:
                    add("agentmon_tokens_total", n, agent=truth_label(agent),
                        model=truth_label(model), type=kind_name)
        elif kind == "api_error":
            add("agentmon_api_errors_total", 1, error=truth_label(label))
        elif kind == "permission_denied":
            add("agentmon_permission_denials_total", 1, tool=truth_label(label))
    if own:
        conn.close()
    return out


def assert_matches(exported: dict, expected: dict, cap: int | None = None) -> None:
    got = {k: v for k, v in exported.items() if not k[0].startswith(SELF_METRICS)}
    if cap is not None:
        expected = fold_capped(got, expected, cap)
    for key in set(got) | set(expected):
        want, have = expected.get(key, 0.0), got.get(key, 0.0)
        assert math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-6), (key, have, want)


CAPPED = {"agent": "agent", "phase": "phase", "tool": "tool", "status": "status",
          "model": "model", "error": "error"}
RESERVED = {"other", "invalid", "unknown", "none"}


def fold_capped(got: dict, expected: dict, cap: int) -> dict:
    """``expected`` with each capped label folded as the rule says, given the kept values the
    exporter shows: a value is kept (shown as itself) or folded into ``other``; per label at
    most ``cap`` values are kept. Which values are kept depends on the order the exporter met
    them, so that choice is taken from the exposition and only checked against the cap.
    ``status`` is capped for sessions only (``completed`` is never folded)."""
    kept: dict[str, set[str]] = {label: set() for label in CAPPED}
    for name, labels in got:
        for label, v in labels:
            if label in kept and (label != "status" or name == "agentmon_sessions") \
                    and v not in RESERVED and v != "completed":
                kept[label].add(v)
    for label, values in kept.items():
        assert len(values) <= cap, (label, values)
    folded: dict = {}
    for (name, labels), v in expected.items():
        new = tuple(
            (label, "other" if label in kept and value not in kept[label]
             and value not in RESERVED and value != "completed"
             and (label != "status" or name == "agentmon_sessions") else value)
            for label, value in labels)
        folded[(name, new)] = folded.get((name, new), 0.0) + v
    return folded


LEGACY = [  # rows written before change tracking existed (NULL sequence numbers)
    ("agent_invocations", "planner", "plan", "completed", None, "2024-01-01T10:00:00",
     "2024-01-01T10:02:00"),
    ("agent_invocations", "coder", None, "running", None, "2024-01-01T10:00:00", None),
    ("agent_invocations", "coder", "build", "error", 12.5, None, None),
    ("agent_tool_uses", "coder", "Read", "completed", None, "2024-01-01T10:00:00.100",
     "2024-01-01T10:00:00.350"),
    ("agent_tool_uses", "coder", "Bash", "running", None, "2024-01-01T10:00:00", None),
]


_LEGACY_TEMPLATE: list[Path] = []


def legacy_db(path: Path) -> None:
    """A version 2 database holding LEGACY's rows, migrated to the latest version (with its
    verified backup): the migration is the same every time, so it runs once per process and
    each example gets a copy."""
    if not _LEGACY_TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="agentmon-truth-legacy-"))
        template = folder / "legacy.db"
        make_db(template, 2)
        conn = writer(template)
        for table, agent, key2, status, duration, start, end in LEGACY:
            column = "phase" if table == "agent_invocations" else "tool_name"
            conn.execute(
                f"INSERT INTO {table} (session_id, agent_name, {column}, status,"  # noqa: S608
                " duration_seconds, start_time, end_time) VALUES ('s0', ?, ?, ?, ?, ?, ?)",
                (agent, key2, status, duration, start, end))
        conn.execute("INSERT INTO sessions (session_id, status) VALUES ('s0', 'active')")
        conn.execute("INSERT INTO sessions (session_id, status) VALUES ('old', 'completed')")
        conn.close()
        migrate(template, backup_dir=folder / "backups")
        conn = writer(template)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _LEGACY_TEMPLATE.append(template)
    shutil.copyfile(_LEGACY_TEMPLATE[0], path)


class TruthMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="agentmon-truth-"))
        self.db = self.dir / "agent_workflow.db"
        self.ckpt = self.dir / "state.json"
        self.conn = None
        self.reader: sqlite3.Connection | None = None  # the recount's, opened once
        self.collector: ExporterCollector | None = None
        self.opened = 0

    @initialize(legacy=st.booleans(), batch=st.sampled_from([1, 2, 1000]),
                cap=st.sampled_from([1, 2, 50]))
    def start(self, legacy: bool, batch: int, cap: int) -> None:
        self.batch = batch
        self.cap = cap
        self.events = 0
        self.backups: list[Path] = []
        if legacy:
            legacy_db(self.db)
        else:
            make_db(self.db)
        self.conn = writer(self.db)
        self.reader = writer(self.db)
        self.collector = self._new_collector(with_checkpoint=True)

    def _new_collector(self, with_checkpoint: bool) -> ExporterCollector:
        return ExporterCollector(self.db, checkpoint_path=self.ckpt if with_checkpoint else None,
                                 label_cap=self.cap, batch_size=self.batch,
                                 checkpoint_interval=0)

    def _event_time(self) -> str:
        self.events += 1
        return (BASE + timedelta(microseconds=self.events)).isoformat()

    def _insert(self, table: str, agent: object, key2: object, status: str, duration: object,
                when: tuple[object, object], session: str, row_id: int | None = None,
                verb: str = "INSERT") -> None:
        column = "phase" if table == "agent_invocations" else "tool_name"
        self.conn.execute(
            f"{verb} INTO {table} (id, session_id, agent_name, {column}, status,"
            " duration_seconds, start_time, end_time, timestamp)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row_id, session, agent, key2, status, duration, *when, self._event_time()))

    def _pick(self, sql: str, pick: int) -> object:
        ids = [r[0] for r in self.conn.execute(sql)]
        return ids[pick % len(ids)] if ids else None

    @rule(agent=AGENTS, phase=PHASES, status=st.sampled_from(["running", *FINAL, "pending"]),
          duration=DURATIONS, when=times(), session=SESSIONS)
    def insert_invocation(self, agent, phase, status, duration, when, session) -> None:
        self._insert("agent_invocations", agent, phase, status, duration, when, session)

    @rule(agent=AGENTS, tool=TOOLS, status=st.sampled_from(["running", *FINAL]),
          duration=DURATIONS, when=times(), session=SESSIONS)
    def insert_tool_use(self, agent, tool, status, duration, when, session) -> None:
        self._insert("agent_tool_uses", agent, tool, status, duration, when, session)

    @rule(table=st.sampled_from(["agent_invocations", "agent_tool_uses"]), pick=st.integers(0, 50),
          status=FINISHED, duration=DURATIONS, end=st.sampled_from(
              [None, "2025-03-01T12:30:00.250", "2025-03-01T11:00:00+00:00", "junk"]))
    def finish(self, table, pick, status, duration, end) -> None:
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM {table} WHERE status NOT IN {FINAL_SQL}"  # noqa: S608
            " OR status IS NULL ORDER BY id DESC")]
        if ids:
            self.conn.execute(
                f"UPDATE {table} SET status = ?, duration_seconds = coalesce(?, duration_seconds),"  # noqa: S608
                " end_time = ? WHERE id = ?", (status, duration, end, ids[pick % len(ids)]))

    @rule(table=st.sampled_from(["agent_invocations", "agent_tool_uses"]), pick=st.integers(0, 50),
          status=st.sampled_from([*FINAL, "running"]), duration=DURATIONS)
    def finish_again(self, table, pick, status, duration) -> None:
        """A duplicate PostToolUse: the freeze trigger must make it a no-op."""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM {table} WHERE status IN {FINAL_SQL} ORDER BY id DESC")]  # noqa: S608
        if ids:
            self.conn.execute(
                f"UPDATE {table} SET status = ?, duration_seconds = ?, agent_name = 'late'"  # noqa: S608
                " WHERE id = ?", (status, duration, ids[pick % len(ids)]))

    @rule(table=st.sampled_from(["agent_invocations", "agent_tool_uses"]), pick=st.integers(0, 50))
    def edit_other_columns(self, table, pick) -> None:
        column = "result_summary" if table == "agent_invocations" else "tool_output"
        ids = [r[0] for r in self.conn.execute(f"SELECT id FROM {table} ORDER BY id DESC")]  # noqa: S608
        if ids:
            self.conn.execute(f"UPDATE {table} SET {column} = 'edited', error = 'x'"  # noqa: S608
                              " WHERE id = ?", (ids[pick % len(ids)],))

    @rule(session=st.text("abcdef", min_size=1, max_size=3),
          status=st.sampled_from(["active", "completed", None, "odd status", "paused", "x1"]),
          verb=st.sampled_from(["INSERT OR IGNORE", "INSERT OR REPLACE"]))
    def new_session(self, session, status, verb) -> None:
        """Also replaces an existing session (a delete and an insert no trigger sees whole)."""
        self.conn.execute(f"{verb} INTO sessions (session_id, status, start_time)"
                          " VALUES (?, ?, ?)", ("n" + session, status, self._event_time()))

    @rule(table=st.sampled_from(["agent_invocations", "agent_tool_uses"]), pick=st.integers(0, 50),
          running=st.booleans())
    def delete_row(self, table, pick, running) -> None:
        row = self._pick(f"SELECT id FROM {table} WHERE (status = 'running') = {int(running)}"  # noqa: S608
                         " ORDER BY id", pick)
        if row is not None:
            self.conn.execute(f"DELETE FROM {table} WHERE id = ?", (row,))  # noqa: S608

    @rule(table=st.sampled_from(["agent_invocations", "agent_tool_uses"]), pick=st.integers(0, 50),
          agent=AGENTS, key2=TOOLS, status=st.sampled_from(["running", *FINAL]),
          duration=DURATIONS, when=times(), session=SESSIONS)
    def replace_row(self, table, pick, agent, key2, status, duration, when, session) -> None:
        row = self._pick(f"SELECT id FROM {table} ORDER BY id", pick)  # noqa: S608
        if row is not None:
            self._insert(table, agent, key2, status, duration, when, session, row,
                         "INSERT OR REPLACE")

    @rule(kind=st.sampled_from(["tokens", "tokens", "api_error", "permission_denied", "newer"]),
          agent=AGENTS, model=st.sampled_from(["claude-opus-4-1", "claude-sonnet-4-5", None,
                                               "bad model/x"]),
          label=st.sampled_from(["rate_limit", "Bash", None, "two words"]),
          counts=st.tuples(*[st.integers(0, 10**7)] * 6), keyed=st.booleans())
    def insert_usage(self, kind, agent, model, label, counts, keyed) -> None:
        self.events += 1
        self.conn.execute(
            "INSERT OR IGNORE INTO agent_usage (timestamp, session_id, kind, agent_name, model,"
            " label, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,"
            " lines_added, lines_removed, dedup_key) VALUES (?, 's1', ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)", (self._event_time(), kind, agent, model, label, *counts,
                       f"k{self.events % 7}" if keyed else None))

    @rule(pick=st.integers(0, 50), action=st.sampled_from(["update", "delete", "replace"]))
    def change_usage(self, pick, action) -> None:
        """Usage rows are facts: an update is ignored, a delete or replace is a removal."""
        row = self._pick("SELECT id FROM agent_usage ORDER BY id", pick)
        if row is None:
            return
        if action == "update":
            self.conn.execute("UPDATE agent_usage SET input_tokens = input_tokens + 1,"
                              " agent_name = 'late' WHERE id = ?", (row,))
        elif action == "delete":
            self.conn.execute("DELETE FROM agent_usage WHERE id = ?", (row,))
        else:
            self.conn.execute("INSERT OR REPLACE INTO agent_usage (id, timestamp, kind,"
                              " agent_name, output_tokens) VALUES (?, ?, 'tokens', 'coder', 5)",
                              (row, self._event_time()))

    @rule(pick=st.integers(0, 50))
    def delete_session(self, pick) -> None:
        row = self._pick("SELECT rowid FROM sessions ORDER BY rowid", pick)
        if row is not None:
            self.conn.execute("DELETE FROM sessions WHERE rowid = ?", (row,))

    @rule()
    def take_backup(self) -> None:
        copy = self.dir / f"backup-{len(self.backups)}.db"
        with sqlite3.connect(copy) as dst:
            # The copy is only read back here: no journal or sync to make it survive a crash.
            dst.execute("PRAGMA journal_mode = OFF")
            dst.execute("PRAGMA synchronous = OFF")
            self.conn.backup(dst)
        dst.close()
        self.backups.append(copy)

    @precondition(lambda self: bool(self.backups))
    @rule(pick=st.integers(0, 10))
    def restore_backup(self, pick) -> None:
        """Over the live file, in place, while the exporter runs; more writes may follow."""
        with sqlite3.connect(self.backups[pick % len(self.backups)]) as src:
            src.backup(self.conn)
        src.close()

    # What each table's delete trigger counts as a removal (migration step 5).
    REMOVABLE: ClassVar[dict[str, str]] = {"agent_invocations": "status IS NOT 'running'",
                 "agent_tool_uses": "status IS NOT 'running'", "sessions": "1",
                 "agent_usage": "1"}

    @precondition(lambda self: bool(self.backups))
    @rule(pick=st.integers(0, 10), order=st.permutations(sorted(REMOVABLE)),
          refresh_first=st.booleans())
    def restore_then_as_many_removals(self, pick, order, refresh_first) -> None:
        """A restore, then removals until the removal counter reads as it did before the
        restore (what the exporter saw, when it refreshed since the last removal)."""
        if refresh_first:
            self.refresh()
        before = self._removals()
        self.restore_backup(pick)
        while self._removals() < before:
            for table in order:
                row = self._pick(f"SELECT rowid FROM {table} WHERE {self.REMOVABLE[table]}"  # noqa: S608
                                 " ORDER BY rowid", pick)
                if row is not None:
                    self.conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (row,))  # noqa: S608
                    break
            else:
                return  # nothing left to remove

    def _removals(self) -> int:
        return int(self.conn.execute("SELECT value FROM agentmon_removals").fetchone()[0])

    @rule(agent=AGENTS, tool=TOOLS, duration=DURATIONS, when=times(), session=SESSIONS,
          pick=st.integers(0, 50), delete=st.booleans())
    def refresh_with_writes_between_batches(self, agent, tool, duration, when, session, pick,
                                            delete) -> None:
        """Writers do not wait for a refresh: between its batches rows are inserted, finished
        or deleted. The numbers are checked at the next plain refresh."""
        def write() -> None:
            self._insert("agent_tool_uses", agent, tool, "completed", duration, when, session)
            self.finish("agent_invocations", pick, "completed", None, None)
            if delete:
                self.delete_row("agent_tool_uses", pick, False)

        self.collector.between_batches = write
        try:
            self.collector.refresh()
        finally:
            self.collector.between_batches = None
        assert self.collector.db_up

    @rule(pick=st.integers(0, 50), status=st.sampled_from(["active", "completed", "paused"]))
    def change_session(self, pick, status) -> None:
        """Sessions end and are resumed: they are not frozen."""
        ids = [r[0] for r in
               self.conn.execute("SELECT session_id FROM sessions ORDER BY rowid DESC")]
        if ids:
            self.conn.execute("UPDATE sessions SET status = ? WHERE session_id = ?",
                              (status, ids[pick % len(ids)]))

    def _add_session(self, session: str) -> None:
        self.conn.execute("INSERT INTO sessions (session_id, start_time, status)"
                          " VALUES (?, ?, 'active')", (session, self._event_time()))

    @rule(session=SESSIONS)
    def open_session(self, session) -> None:
        self.opened += 1
        self._add_session(f"{session}-{self.opened}")

    @rule(status=st.sampled_from(["active", "completed", "paused"]))
    def change_session_created_at_last_refresh(self, status) -> None:
        """The boundary case: a session whose insert was the last change a refresh saw."""
        self.opened += 1
        self._add_session(f"b-{self.opened}")
        self.refresh()
        self.conn.execute("UPDATE sessions SET status = ? WHERE session_id = ?",
                          (status, f"b-{self.opened}"))

    @rule(with_checkpoint=st.booleans())
    def restart(self, with_checkpoint: bool) -> None:
        self.collector.save_checkpoint()
        self.collector.close()
        if not with_checkpoint:
            self.ckpt.unlink(missing_ok=True)
        self.collector = self._new_collector(with_checkpoint)

    @rule()
    def refresh(self) -> None:
        self.collector.refresh()
        assert self.collector.db_up
        assert_matches(samples(self.collector), recount(self.db, self.reader), self.cap)

    @precondition(lambda self: self.collector is not None)
    @invariant()
    def serves_consistent_state(self) -> None:
        snap = samples(self.collector)
        for (name, labels), count in snap.items():
            if name.endswith("_count"):
                inf = (name[:-6] + "_bucket", tuple(sorted((*labels, ("le", "+Inf")))))
                assert snap[inf] == count

    def teardown(self) -> None:
        if self.collector is not None:
            self.collector.close()
        for conn in (self.conn, self.reader):
            if conn is not None:
                conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# Shared with the other truth machines (test_prune_truth).
TRUTH_SETTINGS = settings(
    max_examples=int(os.environ.get("AGENTMON_TRUTH_EXAMPLES", "300")),
    stateful_step_count=40,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TruthMachine.TestCase.settings = TRUTH_SETTINGS
TestTruth = TruthMachine.TestCase
