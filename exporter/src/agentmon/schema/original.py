"""The original agent-workflow hooks' tables, as they left them on disk (schema version 0).

The one source for their DDL and column lists: ``migrations`` (step 1 adopts them), ``seed``
(``--schema original`` writes them) and ``tools/original_fixture.py`` (the Molecule fixture
``molecule/agent_host/files/original_schema.sql``, checked in ``make lint``) build from it.
``exporter/tests/original_schema.py`` keeps its own copy on purpose: the tests must not trust
the code under test to know what users have on disk.

Each original hook ran ``CREATE TABLE IF NOT EXISTS`` for its own tables on every event, so
``sessions`` has 4 columns when the agent hook created it first and 6 when the session hook did;
``tool_uses`` is an older table some files still have (agentmon adopts it, never creates it).
"""

from __future__ import annotations

Column = tuple[str, str]  # (name, SQL type and constraints)

SESSIONS_4: tuple[Column, ...] = (
    ("session_id", "TEXT PRIMARY KEY"), ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"),
    ("status", "TEXT DEFAULT 'active'"))
# The session hook's shape.
SESSIONS_6: tuple[Column, ...] = (*SESSIONS_4, ("cwd", "TEXT"), ("metadata", "JSON"))
AGENT_INVOCATIONS: tuple[Column, ...] = (
    ("id", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("timestamp", "TIMESTAMP"),
    ("session_id", "TEXT"), ("event_type", "TEXT"), ("phase", "TEXT"), ("agent_name", "TEXT"),
    ("agent_type", "TEXT"), ("model", "TEXT"), ("prompt", "TEXT"), ("parent_agent", "TEXT"),
    ("ticket_id", "TEXT"), ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"),
    ("duration_seconds", "REAL"), ("status", "TEXT"), ("error", "TEXT"),
    ("result_summary", "TEXT"), ("raw_input", "JSON"), ("raw_output", "JSON"))
AGENT_TOOL_USES: tuple[Column, ...] = (
    ("id", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("timestamp", "TIMESTAMP"),
    ("session_id", "TEXT"), ("agent_name", "TEXT"), ("agent_invocation_id", "INTEGER"),
    ("tool_name", "TEXT"), ("tool_input", "JSON"), ("tool_output", "JSON"),
    ("duration_seconds", "REAL"), ("status", "TEXT"), ("error", "TEXT"),
    ("sequence_number", "INTEGER"), ("start_time", "TIMESTAMP"), ("end_time", "TIMESTAMP"))
TOOL_USES: tuple[Column, ...] = (
    ("id", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("timestamp", "TIMESTAMP"),
    ("session_id", "TEXT"), ("tool_name", "TEXT"), ("tool_input", "JSON"),
    ("tool_output", "JSON"), ("duration_seconds", "REAL"))

SESSION_FOREIGN_KEY = "FOREIGN KEY (session_id) REFERENCES sessions(session_id)"


def create_table(table: str, columns: tuple[Column, ...], foreign_key: bool = True) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table``, laid out as the original hooks wrote it."""
    lines = [f"{name} {sql_type}" for name, sql_type in columns]
    if foreign_key:
        lines.append(SESSION_FOREIGN_KEY)
    body = ",\n".join(f"            {line}" for line in lines)
    return f"\n        CREATE TABLE IF NOT EXISTS {table} (\n{body}\n        )"


# The tables agentmon creates when missing, in the 6-column sessions shape.
TABLES: dict[str, str] = {
    "sessions": create_table("sessions", SESSIONS_6, foreign_key=False),
    "agent_invocations": create_table("agent_invocations", AGENT_INVOCATIONS),
    "agent_tool_uses": create_table("agent_tool_uses", AGENT_TOOL_USES),
}
# The shape the original agent hook created when it ran before the session hook.
SESSIONS_4_DDL = create_table("sessions", SESSIONS_4, foreign_key=False)
TOOL_USES_DDL = create_table("tool_uses", TOOL_USES)
# Named as the original hook named them, so adopting its files does not duplicate them.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_agent"
    " ON agent_tool_uses(agent_name, tool_name)",
    "CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_session ON agent_tool_uses(session_id)",
)


def names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(name for name, _ in columns)


SESSION_COLUMNS = names(SESSIONS_6)
INVOCATION_COLUMNS = names(AGENT_INVOCATIONS)
TOOL_USE_COLUMNS = names(AGENT_TOOL_USES)


def ddl(sessions_columns: int = 6, with_tool_uses: bool = False) -> list[str]:
    """Every original statement, in the sessions shape asked for (4 or 6 columns)."""
    if sessions_columns not in (4, 6):
        raise ValueError("the original sessions table has 4 or 6 columns")
    sessions = TABLES["sessions"] if sessions_columns == 6 else SESSIONS_4_DDL
    statements = [sessions, TABLES["agent_invocations"], TABLES["agent_tool_uses"], *INDEXES]
    return [*statements, TOOL_USES_DDL] if with_tool_uses else statements
