"""Databases as the ORIGINAL agent-workflow hooks left them, for migration tests.

The DDL below is the original project's, written out here on purpose instead of taken from
``agentmon.schema.migrations``: the tests must not trust the code under test to know what users have
on disk. Each hook ran ``CREATE TABLE IF NOT EXISTS`` for its own tables on every event, so:

* ``sessions`` has 4 columns when the agent hook created it first, 6 (``cwd``, ``metadata``)
  when the session hook did;
* ``agent_tool_uses`` (with its two indexes) exists once the tool hook ran;
* ``tool_uses`` is an older table some files still have.

Rows carry what the original wrote: local-time ``datetime.now().isoformat()`` text without a
zone, ``duration_seconds`` often NULL, running rows (``status`` 'started', no ``end_time``),
bare SubagentStop rows, and tool uses attributed to 'direct' with invocation id 0.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

SESSIONS_4 = """CREATE TABLE IF NOT EXISTS sessions (
            session_id TEXT PRIMARY KEY,
            start_time TIMESTAMP,
            end_time TIMESTAMP,
            status TEXT
        )"""

SESSIONS_6 = """CREATE TABLE IF NOT EXISTS sessions (
            session_id TEXT PRIMARY KEY,
            start_time TIMESTAMP,
            end_time TIMESTAMP,
            status TEXT DEFAULT 'active',
            cwd TEXT,
            metadata JSON
        )"""

AGENT_INVOCATIONS = """CREATE TABLE IF NOT EXISTS agent_invocations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp TIMESTAMP,
            session_id TEXT,
            event_type TEXT,
            phase TEXT,
            agent_name TEXT,
            agent_type TEXT,
            model TEXT,
            prompt TEXT,
            parent_agent TEXT,
            ticket_id TEXT,
            start_time TIMESTAMP,
            end_time TIMESTAMP,
            duration_seconds REAL,
            status TEXT,
            error TEXT,
            result_summary TEXT,
            raw_input JSON,
            raw_output JSON,
            FOREIGN KEY (session_id) REFERENCES sessions(session_id)
        )"""

TOOL_USES = """CREATE TABLE IF NOT EXISTS tool_uses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp TIMESTAMP,
            session_id TEXT,
            tool_name TEXT,
            tool_input JSON,
            tool_output JSON,
            duration_seconds REAL,
            FOREIGN KEY (session_id) REFERENCES sessions(session_id)
        )"""

AGENT_TOOL_USES = """CREATE TABLE IF NOT EXISTS agent_tool_uses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp TIMESTAMP,
            session_id TEXT,
            agent_name TEXT,
            agent_invocation_id INTEGER,
            tool_name TEXT,
            tool_input JSON,
            tool_output JSON,
            duration_seconds REAL,
            status TEXT,
            error TEXT,
            sequence_number INTEGER,
            start_time TIMESTAMP,
            end_time TIMESTAMP,
            FOREIGN KEY (session_id) REFERENCES sessions(session_id)
        )"""
AGENT_TOOL_USES_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_agent"
    " ON agent_tool_uses(agent_name, tool_name)",
    "CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_session ON agent_tool_uses(session_id)",
)

# The columns each original table has (sessions: the 4-column shape; +cwd, metadata for 6).
ORIGINAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": ("session_id", "start_time", "end_time", "status"),
    "agent_invocations": (
        "id", "timestamp", "session_id", "event_type", "phase", "agent_name", "agent_type",
        "model", "prompt", "parent_agent", "ticket_id", "start_time", "end_time",
        "duration_seconds", "status", "error", "result_summary", "raw_input", "raw_output"),
    "agent_tool_uses": (
        "id", "timestamp", "session_id", "agent_name", "agent_invocation_id", "tool_name",
        "tool_input", "tool_output", "duration_seconds", "status", "error", "sequence_number",
        "start_time", "end_time"),
    "tool_uses": ("id", "timestamp", "session_id", "tool_name", "tool_input", "tool_output",
                  "duration_seconds"),
}

SESSIONS = [
    # session_id, start_time, end_time, status, cwd, metadata (last two: 6-column shape only)
    ("3f2a9c1e-0b7d-4e55-9a51-6f0c2d9e8a11", "2025-03-14T09:12:03.123456",
     "2025-03-14T10:40:59.000001", "completed", "/home/ana/shop", '{"source": "startup"}'),
    ("8d41f6b0-5c2e-4a9b-b1c7-2e3f4a5b6c7d", "2025-03-15T22:01:00.5", None, "active",
     None, None),
    ("session-with-odd-id_42", "2025-03-16T08:00:00", None, "active", "/tmp/x", "not json"),
]

INVOCATIONS = [
    # completed, duration from totalDurationMs
    (1, "2025-03-14T09:15:00.000100", SESSIONS[0][0], "pre_invocation", "planning", "architect",
     "planning", "standard", "Design the cart (SHOP-12). Ticket in JIRA.", None, "SHOP-12",
     "2025-03-14T09:15:00.000100", "2025-03-14T09:17:30.250000", 150.25, "completed", None,
     None, '{"subagent_type": "architect", "prompt": "Design the cart"}',
     '{"totalDurationMs": 150250, "totalTokens": 5120}'),
    # completed, duration_seconds left empty: it has to come from end_time - start_time
    (2, "2025-03-14T09:20:00", SESSIONS[0][0], "pre_invocation", "development",
     "backend-developer", "development", "", "Implement it", None, None,
     "2025-03-14T09:20:00", "2025-03-14T09:31:02.5", None, "completed", None, None,
     '{"subagent_type": "backend-developer"}', "{}"),
    # still running at the time of the copy
    (3, "2025-03-15T22:05:00.999999", SESSIONS[1][0], "pre_invocation", "review",
     "security-reviewer", "review", None, "Review ünïcödé 🚀 input", None, None,
     "2025-03-15T22:05:00.999999", None, None, "started", None, None,
     '{"subagent_type": "security-reviewer"}', None),
    # a SubagentStop bare row
    (4, "2025-03-15T22:06:00", SESSIONS[1][0], "subagent_stop", None, None, None, None, None,
     None, None, None, None, None, "completed", None, None, None, None),
    # odd values the exporter must survive: negative duration, an error text, a 0 duration
    (7, "2025-03-16T08:00:01", SESSIONS[2][0], "tool_tracking_start", "development", "debugger",
     "development", "x", "", "architect", None, "2025-03-16T08:00:01", "2025-03-16T08:00:00",
     -1.0, "error", "boom", "partial", "[]", '{"error": "Failed to serialize"}'),
]

AGENT_TOOL_USE_ROWS = [
    (1, "2025-03-14T09:15:05", SESSIONS[0][0], "architect", 1, "Read",
     '{"file_path": "/home/ana/shop/cart.py"}', '{"type": "text"}', 0.012, "completed", None, 1,
     "2025-03-14T09:15:05", "2025-03-14T09:15:05.012"),
    (2, "2025-03-14T09:16:00", SESSIONS[0][0], "architect", 1, "mcp__github__get_issue",
     '{"issue": 12}', None, None, "completed", None, 2, "2025-03-14T09:16:00",
     "2025-03-14T09:16:01"),
    (3, "2025-03-15T22:05:10", SESSIONS[1][0], "security-reviewer", 3, "Bash",
     '{"command": "pytest"}', None, None, "started", None, 1, "2025-03-15T22:05:10", None),
    (4, "2025-03-16T08:00:02", SESSIONS[2][0], "direct", 0, "Edit", "{}", None, 3.5, "error",
     "String not found", 1, "2025-03-16T08:00:02", "2025-03-16T08:00:05.5"),
    (9, "2025-03-16T08:00:02", None, None, None, None, None, None, None, None, None, None, None,
     None),
]

OLD_TOOL_USE_ROWS = [
    (1, "2025-01-02T03:04:05", SESSIONS[0][0], "Read", '{"file_path": "a"}', '{"ok": 1}', 0.5),
    (2, "2025-01-02T03:04:06", None, "Bash", None, None, None),
]


def build_original_db(
    path: str | Path,
    *,
    sessions_columns: int = 6,
    with_agent_tool_uses: bool = True,
    with_tool_uses: bool = False,
    rows: bool = True,
) -> Path:
    """Create ``path`` the way the original hooks would have; return it."""
    path = Path(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute(SESSIONS_6 if sessions_columns == 6 else SESSIONS_4)
        conn.execute(AGENT_INVOCATIONS)
        if with_tool_uses:
            conn.execute(TOOL_USES)
        if with_agent_tool_uses:
            conn.execute(AGENT_TOOL_USES)
            for ddl in AGENT_TOOL_USES_INDEXES:
                conn.execute(ddl)
        if rows:
            width = 6 if sessions_columns == 6 else 4
            conn.executemany(f"INSERT INTO sessions VALUES ({', '.join('?' * width)})",  # noqa: S608
                             [row[:width] for row in SESSIONS])
            conn.executemany(f"INSERT INTO agent_invocations VALUES ({', '.join('?' * 19)})",  # noqa: S608
                             INVOCATIONS)
            if with_agent_tool_uses:
                conn.executemany(f"INSERT INTO agent_tool_uses VALUES ({', '.join('?' * 14)})",  # noqa: S608
                                 AGENT_TOOL_USE_ROWS)
            if with_tool_uses:
                conn.executemany("INSERT INTO tool_uses VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 OLD_TOOL_USE_ROWS)
        conn.commit()
    finally:
        conn.close()
    return path


def original_dump(path: str | Path, sessions_columns: int | None = None,
                  ) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every original table, original columns only, in key order: what must
    survive any migration unchanged. Sessions: the first ``sessions_columns`` columns (default:
    6 when cwd and metadata exist, else 4)."""
    conn = sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True)
    try:
        dump: dict[str, list[tuple[Any, ...]]] = {}
        for table, columns in ORIGINAL_COLUMNS.items():
            present = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if not present:
                continue
            cols = list(columns)
            if table == "sessions":
                cols += [c for c in ("cwd", "metadata") if c in present]
                cols = cols[:sessions_columns or len(cols)]
            key = "session_id" if table == "sessions" else "id"
            dump[table] = conn.execute(
                f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}"  # noqa: S608
            ).fetchall()
        return dump
    finally:
        conn.close()


def full_dump(path: str | Path) -> dict[str, Any]:
    """Schema (sqlite_master), user_version and every row of every table."""
    conn = sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True)
    try:
        schema = sorted(conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(), key=repr)
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        data = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)  # noqa: S608
                for t in tables}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return {"schema": schema, "data": data, "user_version": version}
    finally:
        conn.close()
