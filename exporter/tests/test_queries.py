"""EXPLAIN QUERY PLAN for every statement the exporter runs: each uses its intended index.

No incremental or gauge query may SCAN a whole history table, and the cold-start aggregation
must read only covering indexes. Checked on an empty database and after ANALYZE on a filled
one, because the planner's choice depends on statistics.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from collector_db import add_invocation, add_session, add_tool_use, make_db, writer

from agentmon.collector import queries
from agentmon.schema.migrations import INDEXES

# query name -> (substrings every plan must contain, substrings it must not contain)
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "meta": (("agentmon_sequence USING INTEGER PRIMARY KEY",
              "agentmon_meta USING INDEX sqlite_autoindex_agentmon_meta_1",
              "agentmon_removals USING INTEGER PRIMARY KEY"), ()),
    "removal_token": (("SEARCH agentmon_removals USING INTEGER PRIMARY KEY (rowid=?)",), ()),
    # schema step "pruned": one row, then one per pruned label combination (cold start only)
    "prune_mark": (("SEARCH agentmon_prune_mark USING INTEGER PRIMARY KEY (rowid=?)",), ()),
    "pruned": (("SCAN agentmon_pruned",), ()),
    "active_sessions": (("SCAN agent_invocations USING COVERING INDEX idx_invocations_running",
                         "SCAN agent_tool_uses USING COVERING INDEX idx_tool_uses_running"), ()),
    "sessions_changed": (("SEARCH sessions USING INDEX idx_sessions_agentmon_seq "
                          "(agentmon_seq>? AND agentmon_seq<?)",), ("TEMP B-TREE",)),
    "cold_sessions": (("SCAN sessions",), ()),  # cold start only; sessions are few
    "cold_open_sessions": (("SCAN sessions",), ()),
    # only after a refresh read a new session; the narrowest index holds just the ids
    "session_count": (("SCAN sessions USING COVERING INDEX sqlite_autoindex_sessions_1",), ()),
    "session_last_changed": (("SEARCH sessions USING INDEX idx_sessions_agentmon_seq "
                              "(agentmon_seq<?)",), ("TEMP B-TREE",)),
    "session_row_at": (("SEARCH sessions USING INTEGER PRIMARY KEY (rowid=?)",), ()),
    "session_top_stamp": (("SEARCH sessions USING COVERING INDEX idx_sessions_agentmon_seq "
                           "(agentmon_seq<?)",), ("TEMP B-TREE",)),
    # agent_usage (schema step "usage"): append-only rows, read by sequence number
    "usage_changed": (("SEARCH agent_usage USING INDEX idx_agent_usage_agentmon_seq "
                       "(agentmon_seq>? AND agentmon_seq<?)",), ("TEMP B-TREE",)),
    "usage_cold": (("SEARCH agent_usage USING COVERING INDEX idx_agent_usage_labels (kind=?)",),
                   ("TEMP B-TREE",)),
    "usage_last_counted": (("SEARCH agent_usage USING COVERING INDEX"
                            " idx_agent_usage_agentmon_seq (agentmon_seq<?)",), ("TEMP B-TREE",)),
    "usage_row_at": (("SEARCH agent_usage USING INTEGER PRIMARY KEY (rowid=?)",), ()),
    "usage_top_stamp": (("SEARCH agent_usage USING COVERING INDEX idx_agent_usage_agentmon_seq "
                         "(agentmon_seq<?)",), ("TEMP B-TREE",)),
}
for table, key2, agg, untimed, running in (
    ("agent_invocations", "phase", "idx_invocations_agent", "idx_invocations_untimed",
     "idx_invocations_running"),
    ("agent_tool_uses", "tool_name", "idx_tool_uses_agent", "idx_tool_uses_untimed",
     "idx_tool_uses_running"),
):
    combo = f"agent_name=? AND {key2}=? AND status=?"
    EXPECTED.update({
        f"{table}.changed": ((f"SEARCH {table} USING INDEX idx_{table}_agentmon_seq "
                              "(agentmon_seq>? AND agentmon_seq<?)",), ("TEMP B-TREE",)),
        f"{table}.running": ((f"SCAN {table} USING COVERING INDEX {running}",), ("TEMP B-TREE",)),
        f"{table}.cold_groups": ((f"SCAN {table} USING COVERING INDEX {agg}",), ("TEMP B-TREE",)),
        f"{table}.cold_range": ((f"SEARCH {table} USING COVERING INDEX {agg} ({combo} AND "
                                 "duration_seconds>? AND duration_seconds<?)",), ()),
        f"{table}.cold_zero": ((f"SEARCH {table} USING COVERING INDEX {agg} ({combo} AND "
                                "duration_seconds=?)",), ()),
        f"{table}.cold_timestamps": ((f"SEARCH {table} USING COVERING INDEX {untimed} "
                                      f"({combo})",),
                                     ("TEMP B-TREE",)),
        f"{table}.last_counted": ((f"SEARCH {table} USING INDEX idx_{table}_agentmon_seq "
                                   "(agentmon_seq<?)",), ("TEMP B-TREE",)),
        f"{table}.row_at": ((f"SEARCH {table} USING INTEGER PRIMARY KEY (rowid=?)",), ()),
        f"{table}.top_stamp": ((f"SEARCH {table} USING COVERING INDEX idx_{table}_agentmon_seq "
                                "(agentmon_seq<?)",), ("TEMP B-TREE",)),
    })

FULL_SCAN = re.compile(r"^SCAN (agent_invocations|agent_tool_uses)$")


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    params = (None,) * sql.count("?")
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.fixture(params=["empty", "analyzed"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> sqlite3.Connection:
    db = make_db(tmp_path / "agent_workflow.db")
    w = writer(db)
    if request.param == "analyzed":
        for i in range(300):
            add_invocation(w, agent=f"a{i % 7}", status="running" if i % 50 == 0 else "completed",
                           duration=i / 10, session=f"s{i % 9}")
            add_tool_use(w, agent=f"a{i % 7}", tool=f"t{i % 11}", duration=i / 100)
            add_session(w, f"s{i}", "completed" if i % 3 else "active")
        w.execute("ANALYZE")
    return w


def test_every_query_is_checked() -> None:
    assert set(EXPECTED) == set(queries.ALL_QUERIES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_query_plan_uses_intended_index(conn: sqlite3.Connection, name: str) -> None:
    lines = plan(conn, queries.ALL_QUERIES[name])
    text = "\n".join(lines)
    wanted, unwanted = EXPECTED[name]
    for piece in wanted:
        assert piece in text, f"{name}: {piece!r} not in plan:\n{text}"
    for piece in unwanted:
        assert piece not in text, f"{name}: {piece!r} in plan:\n{text}"
    assert not any(FULL_SCAN.match(line) for line in lines), f"{name} scans a table:\n{text}"


def test_every_index_serves_a_query(conn: sqlite3.Connection) -> None:
    """Step 2 creates only indexes a query uses (tool_use_id ones serve the hook's pairing)."""
    used = "\n".join("\n".join(plan(conn, sql)) for sql in queries.ALL_QUERIES.values())
    hook_pairing = {"idx_invocations_tool_use_id", "idx_tool_uses_tool_use_id"}
    for name in set(INDEXES) - hook_pairing:
        assert name in used, f"{name} serves no exporter query"
    for name in hook_pairing:
        table = "agent_invocations" if "invocations" in name else "agent_tool_uses"
        text = "\n".join(plan(conn, f"SELECT id FROM {table} WHERE tool_use_id = ?"))  # noqa: S608
        assert name in text


def test_timestamp_subquery_is_not_flattened(conn: sqlite3.Connection) -> None:
    """Flattening would evaluate the duration expression once per bucket instead of once."""
    text = "\n".join(plan(conn, queries.INVOCATIONS.cold_timestamps))
    assert "CO-ROUTINE" in text


def test_untimed_condition_matches_the_duration_rule() -> None:
    """The partial indexes hold exactly the rows the duration rule sends to the timestamps."""
    assert f"BETWEEN 0 AND {queries.MAX_DURATION:.0f}" in queries.UNTIMED
