"""What the hook writes: sessions, invocations and tool uses, paired and attributed."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hook_events import EVENT_NAMES, event, rows, run_hook
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentmon.collector.labels import LabelFolder
from agentmon.collector.prices import parse as parse_prices
from agentmon.hook import values as hook_values
from agentmon.hook.store import Store
from agentmon.schema import labels, migrations, original
from agentmon.schema.db import connect_writer
from agentmon.schema.migrate import migrate


def send(db_path: Path, *events: dict[str, Any], env: dict[str, str] | None = None) -> None:
    for item in events:
        code, err = run_hook(item, db_path, env=env)
        assert (code, err) == (0, ""), err


def task(name: str, tool_use_id: str, session: str = "sess-1", agent: str = "code-reviewer",
         **fields: Any) -> dict[str, Any]:
    tool_input = {"subagent_type": agent, "description": "review", "prompt": "look at it"}
    return event(name, session, tool_name="Task", tool_use_id=tool_use_id,
                 tool_input=tool_input, **fields)


def tool(name: str, tool_use_id: str, session: str = "sess-1", tool_name: str = "Bash",
         **fields: Any) -> dict[str, Any]:
    return event(name, session, tool_name=tool_name, tool_use_id=tool_use_id, **fields)


def test_new_database_is_created_at_the_latest_schema(db_path: Path) -> None:
    send(db_path, event("Stop"))
    assert rows(db_path, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert rows(db_path, "SELECT session_id, status FROM sessions") == [("sess-1", "active")]
    start = rows(db_path, "SELECT start_time FROM sessions")[0][0]
    assert datetime.fromisoformat(start).utcoffset() == timedelta(0)


def test_tool_use_pre_then_post(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "toolu_a", tool_input={"command": "ls", "token": "s3cr3t"}))
    (row,) = rows(db_path, "SELECT status, tool_name, agent_name, sequence_number, tool_input,"
                      " end_time FROM agent_tool_uses")
    assert row[:4] == ("running", "Bash", "main", 1)
    assert json.loads(row[4]) == {"command": "ls", "token": "[REDACTED]"}
    assert row[5] is None
    send(db_path, tool("PostToolUse", "toolu_a", tool_response={"stdout": "ok"}))
    (row,) = rows(db_path, "SELECT status, duration_seconds, tool_output, error, end_time"
                      " FROM agent_tool_uses")
    assert row[0] == "completed"
    assert 0 <= row[1] < 60
    assert json.loads(row[2]) == {"stdout": "ok"}
    assert row[3] is None
    assert row[4] is not None


def test_failure_stores_its_error(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "toolu_a"),
         tool("PostToolUseFailure", "toolu_a", error="Command failed: exit 1", is_interrupt=False))
    assert rows(db_path, "SELECT status, error, tool_output FROM agent_tool_uses") == [
        ("error", "Command failed: exit 1", None)]


def test_a_user_interrupt_is_interrupted_not_an_error(db_path: Path) -> None:
    # Esc during a tool: PostToolUseFailure with is_interrupt true (SDK PostToolUseFailureHookInput)
    send(db_path, tool("PreToolUse", "toolu_a"),
         tool("PostToolUseFailure", "toolu_a", error="Interrupted by user", is_interrupt=True))
    assert rows(db_path, "SELECT status, error FROM agent_tool_uses") == [
        ("interrupted", "Interrupted by user")]


def test_duplicate_events_change_nothing(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "toolu_a"), tool("PreToolUse", "toolu_a"),
         tool("PostToolUse", "toolu_a"))
    before = rows(db_path, "SELECT * FROM agent_tool_uses")
    seq = rows(db_path, "SELECT value FROM agentmon_sequence")
    send(db_path, tool("PostToolUse", "toolu_a", tool_response={"other": 1}),
         tool("PostToolUseFailure", "toolu_a"))
    assert rows(db_path, "SELECT * FROM agent_tool_uses") == before
    assert len(before) == 1
    assert rows(db_path, "SELECT value FROM agentmon_sequence") == seq


def test_duplicate_subagent_posts_change_nothing(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "toolu_t"), task("PostToolUse", "toolu_t"))
    before = rows(db_path, "SELECT * FROM agent_invocations")
    send(db_path, task("PostToolUseFailure", "toolu_t", error="late"),
         task("PostToolUse", "toolu_t", tool_response={"totalDurationMs": 5}))
    assert rows(db_path, "SELECT * FROM agent_invocations") == before


def test_frozen_rows_ignore_even_a_direct_update(db_path: Path) -> None:
    # The reason a finish must be one UPDATE: the step-3 trigger freezes finished rows.
    send(db_path, tool("PreToolUse", "toolu_a"), tool("PostToolUse", "toolu_a"))
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE agent_tool_uses SET status = 'error', duration_seconds = 99")
    conn.commit()
    conn.close()
    assert rows(db_path, "SELECT status FROM agent_tool_uses") == [("completed",)]


def test_post_without_pre_keeps_a_finished_row(db_path: Path) -> None:
    send(db_path, tool("PostToolUse", "toolu_b"), tool("PostToolUseFailure", "toolu_c"))
    assert rows(db_path, "SELECT tool_use_id, status, start_time, duration_seconds"
                    " FROM agent_tool_uses ORDER BY id") == [
        ("toolu_b", "completed", None, None), ("toolu_c", "error", None, None)]
    send(db_path, task("PostToolUse", "toolu_t",
                  tool_response={"totalDurationMs": 30_000, "content": []}))
    (row,) = rows(db_path, "SELECT status, duration_seconds, start_time, end_time, event_type"
                      " FROM agent_invocations")
    assert row[:2] == ("completed", 30.0)
    start, end = datetime.fromisoformat(row[2]), datetime.fromisoformat(row[3])
    assert abs((end - start).total_seconds() - 30.0) < 0.01
    assert row[4] == "PostToolUse"


def test_subagent_invocation_lifecycle(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "toolu_t"))
    (row,) = rows(db_path, "SELECT status, agent_name, agent_type, prompt, parent_agent, model,"
                      " phase, event_type, raw_input FROM agent_invocations")
    assert row[:8] == ("running", "code-reviewer", "code-reviewer", "look at it", "main", None,
                       None, "PreToolUse")
    assert json.loads(row[8])["subagent_type"] == "code-reviewer"
    send(db_path, tool("PreToolUse", "toolu_1"), event("SubagentStop", agent_type="code-reviewer"))
    assert rows(db_path, "SELECT status, end_time IS NOT NULL FROM agent_invocations") == [
        ("running", 1)]
    response = {"content": [{"type": "text", "text": "Looks good; api_key=abc"}],
                "totalDurationMs": 1500, "totalTokens": 900}
    send(db_path, task("PostToolUse", "toolu_t", tool_response=response))
    (row,) = rows(db_path, "SELECT status, duration_seconds, result_summary, raw_output"
                      " FROM agent_invocations")
    assert row[:3] == ("completed", 1.5, "Looks good; api_key=[REDACTED]")
    assert json.loads(row[3])["totalTokens"] == 900
    assert rows(db_path, "SELECT agent_name, agent_invocation_id FROM agent_tool_uses") == [
        ("code-reviewer", 1)]


def test_agent_tool_name_and_failure(db_path: Path) -> None:
    pre = event("PreToolUse", tool_name="Agent", tool_use_id="toolu_x",
                tool_input={"subagent_type": "bad name/../x", "model": "sonnet", "prompt": 7})
    send(db_path, pre, {**pre, "hook_event_name": "PostToolUseFailure", "error": "interrupted"})
    assert rows(db_path, "SELECT agent_name, model, prompt, status, error, duration_seconds >= 0"
                    " FROM agent_invocations") == [
        ("bad_name_.._x", "sonnet", None, "error", "interrupted", 1)]


def test_a_model_id_with_an_at_sign_is_stored_as_the_collector_and_prices_name_it(
        db_path: Path) -> None:
    """Vertex AI's model ids carry ``@``: the hook used to write ``_`` where the collector and the
    price file keep ``@``, so such a model's tokens never met their price."""
    model = "claude-sonnet-4@20250514"
    pre = event("PreToolUse", tool_name="Agent", tool_use_id="toolu_at",
                tool_input={"subagent_type": "reviewer@team", "model": model, "prompt": "go"})
    send(db_path, pre)
    stored = rows(db_path, "SELECT agent_name, model FROM agent_invocations")
    assert stored == [("reviewer@team", model)]
    folder = LabelFolder("model", cap=10)
    assert [folder.fold(value) for value in stored[0]] == list(stored[0])
    assert parse_prices({"models": {model: {"input": 3}}}).per_token == {
        (model, "input"): 3e-6}


@given(st.text(max_size=80))
def test_every_value_the_hook_writes_is_kept_by_the_collector_as_it_is(raw: str) -> None:
    cleaned = labels.clean(raw)
    assert cleaned is None or labels.NAME.fullmatch(cleaned)
    folder = LabelFolder("agent", cap=1)
    assert cleaned is None or folder.fold(cleaned) == cleaned


@given(st.from_regex(labels.NAME, fullmatch=True))
def test_a_name_the_collector_accepts_is_left_unchanged_by_the_hook(name: str) -> None:
    name = name.strip("_")  # the hook trims the _ it puts for dropped characters at the ends
    assume(name)
    assert labels.clean(name) == name


def test_missing_subagent_type_is_unknown(db_path: Path) -> None:
    send(db_path, event("PreToolUse", tool_name="Task", tool_use_id="toolu_x", tool_input={}))
    assert rows(
        db_path, "SELECT agent_name, agent_type FROM agent_invocations") == [("unknown", None)]


def test_phase_comes_from_the_environment(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "toolu_t"), env={"AGENTMON_PHASE": "implementation"})
    assert rows(db_path, "SELECT phase FROM agent_invocations") == [("implementation",)]


def test_subagent_stop_never_inserts_a_row(db_path: Path) -> None:
    send(db_path, event("SubagentStop"), event("SubagentStop", agent_type="code-reviewer"))
    assert rows(db_path, "SELECT count(*) FROM agent_invocations") == [(0,)]


def test_subagent_stop_matches_by_agent_type_then_most_recent(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "t1", agent="planner"),
         task("PreToolUse", "t2", agent="tester"),
         task("PreToolUse", "t3", agent="planner"))
    send(db_path, event("SubagentStop", agent_type="planner", agent_id="a-1"))
    assert rows(
        db_path, "SELECT tool_use_id FROM agent_invocations WHERE end_time IS NOT NULL") == [
        ("t3",)]
    send(db_path, event("SubagentStop", agent_id="a-2"))  # no type: the newest one not stopped yet
    assert rows(db_path, "SELECT tool_use_id FROM agent_invocations WHERE end_time IS NOT NULL"
                    " ORDER BY id") == [("t2",), ("t3",)]
    assert rows(db_path, "SELECT DISTINCT status FROM agent_invocations") == [("running",)]


def test_attribution_is_per_session_with_parallel_sessions(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "ta", session="A", agent="planner"),
         task("PreToolUse", "tb", session="B", agent="tester"))
    send(db_path, tool("PreToolUse", "u1", session="A"), tool("PreToolUse", "u2", session="B"),
         tool("PreToolUse", "u3", session="C"))
    send(db_path, task("PostToolUse", "ta", session="A", agent="planner"))
    send(db_path, tool("PreToolUse", "u4", session="A"), tool("PreToolUse", "u5", session="B"))
    got = rows(db_path, "SELECT t.tool_use_id, t.agent_name, i.tool_use_id FROM agent_tool_uses t"
                   " LEFT JOIN agent_invocations i ON i.id = t.agent_invocation_id ORDER BY t.id")
    assert got == [("u1", "planner", "ta"), ("u2", "tester", "tb"), ("u3", "main", None),
                   ("u4", "main", None), ("u5", "tester", "tb")]
    assert rows(db_path, "SELECT session_id, group_concat(sequence_number) FROM agent_tool_uses"
                    " GROUP BY session_id ORDER BY 1") == [("A", "1,2"), ("B", "1,2"), ("C", "1")]


def test_agent_id_names_a_subagent_and_agent_type_alone_is_the_main_thread(db_path: Path) -> None:
    # SDK BaseHookInput: agent_id only within a subagent; agent_type without agent_id is the
    # main thread of a session started with --agent; prompt_id marks a client that says so.
    send(db_path, task("PreToolUse", "t1", agent="planner"),
         task("PreToolUse", "t2", agent="tester"))
    send(db_path, tool("PreToolUse", "u1", agent_type="planner", agent_id="a1"),
         tool("PreToolUse", "u2", agent_type="planner"),
         tool("PreToolUse", "u3", prompt_id="p-1"),
         tool("PreToolUse", "u4", agent_id="a9"))
    assert rows(db_path, "SELECT t.agent_name, i.tool_use_id, t.agent_id, t.prompt_id"
                    " FROM agent_tool_uses t"
                    " LEFT JOIN agent_invocations i ON i.id = t.agent_invocation_id"
                    " ORDER BY t.id") == [("planner", "t1", "a1", None), ("main", None, None, None),
                                          ("main", None, None, "p-1"),
                                          ("unknown", None, "a9", None)]


def test_session_start_end_and_resume(db_path: Path) -> None:
    send(db_path, event("SessionStart", source="startup", cwd="/p", permission_mode="plan"))
    (first,) = rows(db_path, "SELECT status, start_time, end_time, cwd, metadata FROM sessions")
    assert first[0] == "active"
    assert first[2] is None
    assert first[3] == "/p"
    assert json.loads(first[4]) == {"source": "startup", "permission_mode": "plan"}
    send(db_path, event("SessionEnd", reason="logout"))
    (ended,) = rows(db_path, "SELECT status, start_time, end_time, metadata FROM sessions")
    assert ended[0] == "completed"
    assert ended[1] == first[1]
    assert ended[2] is not None
    assert json.loads(ended[3]) == {"source": "startup", "permission_mode": "plan",
                                    "reason": "logout"}
    send(db_path, event("UserPromptSubmit"))  # other events never re-open a completed session
    assert rows(db_path, "SELECT status FROM sessions") == [("completed",)]
    send(db_path, event("SessionStart", source="resume"))
    assert rows(db_path, "SELECT status, start_time, end_time, json_extract(metadata, '$.source')"
                    " FROM sessions") == [("active", first[1], None, "resume")]


def test_session_end_without_start_and_odd_metadata(db_path: Path) -> None:
    send(db_path, event("SessionEnd", session="lonely"))
    assert rows(db_path, "SELECT status, end_time IS NOT NULL FROM sessions") == [("completed", 1)]
    conn = connect_writer(db_path)
    conn.execute("UPDATE sessions SET metadata = 'not json'")
    conn.close()
    send(db_path, event("SessionStart", session="lonely"))
    assert rows(db_path, "SELECT metadata FROM sessions") == [('{"source":"startup",'
                                                         '"permission_mode":"default"}',)]


def test_other_events_only_ensure_the_session(db_path: Path) -> None:
    for name in ("UserPromptSubmit", "Stop", "Notification", "PreCompact"):
        send(db_path, event(name, session=name))
    assert rows(db_path, "SELECT count(*), min(status), max(status) FROM sessions") == [
        (4, "active", "active")]
    assert rows(db_path, "SELECT count(*) FROM agent_tool_uses") == [(0,)]


def test_legacy_naive_start_times_still_give_durations(db_path: Path) -> None:
    migrate(db_path)
    started = (datetime.now() - timedelta(seconds=5)).isoformat(sep=" ")  # local, no offset
    conn = connect_writer(db_path)
    conn.execute("INSERT INTO agent_tool_uses (session_id, tool_name, status, start_time,"
                 " tool_use_id) VALUES ('sess-1', 'Bash', 'running', ?, 'old')", (started,))
    conn.execute("INSERT INTO agent_tool_uses (session_id, tool_name, status, start_time,"
                 " tool_use_id) VALUES ('sess-1', 'Bash', 'running', 'yesterday', 'odd')")
    conn.close()
    send(db_path, tool("PostToolUse", "old"), tool("PostToolUse", "odd"))
    (old, odd) = rows(db_path, "SELECT duration_seconds, status FROM agent_tool_uses ORDER BY id")
    assert old[1] == "completed"
    assert 4.5 < old[0] < 30
    assert odd == (None, "completed")


def test_original_database_is_adopted_with_a_backup(tmp_path: Path) -> None:
    db_path = tmp_path / "agent_workflow.db"
    conn = sqlite3.connect(db_path)
    for ddl in original.TABLES.values():
        conn.execute(ddl)
    conn.execute("INSERT INTO sessions VALUES ('old', '2024-01-01T10:00:00', NULL, 'active',"
                 " NULL, NULL)")
    conn.execute("INSERT INTO agent_invocations (session_id, agent_name, status, start_time)"
                 " VALUES ('old', 'planner', 'running', '2024-01-01T10:00:01')")
    conn.commit()
    conn.close()
    send(db_path, tool("PreToolUse", "u1", session="old"))
    assert rows(db_path, "PRAGMA user_version") == [(migrations.LATEST,)]
    assert rows(db_path, "SELECT agent_name FROM agent_tool_uses") == [("planner",)]
    assert rows(db_path, "SELECT start_time FROM sessions") == [("2024-01-01T10:00:00",)]
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_sequence_numbers_continue_after_legacy_rows(db_path: Path) -> None:
    migrate(db_path)
    conn = connect_writer(db_path)
    conn.execute("INSERT INTO agent_tool_uses (session_id, tool_name, sequence_number)"
                 " VALUES ('sess-1', 'Read', 41), ('sess-1', 'Read', NULL)")
    conn.close()
    send(db_path, tool("PreToolUse", "u1"), tool("PreToolUse", "u2"), tool("PreToolUse", "u3",
                                                                     session="other"))
    assert rows(db_path, "SELECT sequence_number FROM agent_tool_uses WHERE tool_use_id IS NOT NULL"
                    " ORDER BY id") == [(42,), (43,), (1,)]
    plan = rows(db_path, "EXPLAIN QUERY PLAN SELECT sequence_number FROM agent_tool_uses"
                    " WHERE session_id = 'x' AND sequence_number IS NOT NULL"
                    " ORDER BY id DESC LIMIT 1")
    assert [p[-1] for p in plan] == [
        "SEARCH agent_tool_uses USING INDEX idx_agent_tool_uses_session (session_id=?)"]


def test_store_helpers() -> None:
    assert labels.clean("  a b/c ") == "a_b_c"
    assert labels.clean("///") is None
    assert labels.clean(3) is None
    assert labels.clean("x" * 100) == "x" * 64
    assert hook_values.reported_duration({"totalDurationMs": True}) is None
    assert hook_values.reported_duration({"totalDurationMs": 10**400}) is None
    assert hook_values.reported_duration({"totalDurationMs": -5}) is None
    assert hook_values.reported_duration({"totalDurationMs": 2500}) == 2.5
    assert hook_values.reported_duration("text") is None
    assert hook_values.seconds_between(None, datetime.now(UTC)) is None
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert hook_values.seconds_between(future, datetime.now(UTC)) is None
    assert hook_values.result_summary({"content": ["x", {"type": "image"}]}) is None
    assert hook_values.result_summary([]) is None
    assert hook_values.clean_text(None) is None


def test_a_failed_write_rolls_back_everything(db_path: Path) -> None:
    migrate(db_path)
    conn = connect_writer(db_path)
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON agent_tool_uses"
                 " BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(sqlite3.IntegrityError, match="disk says no"):
        Store(conn, max_payload_bytes=16384).record(tool("PreToolUse", "u1", session="new"))
    assert not conn.in_transaction
    conn.close()
    assert rows(db_path, "SELECT count(*) FROM sessions") == [(0,)]


OPS = st.lists(st.tuples(st.sampled_from(["pre", "post", "fail", "task_pre", "task_post",
                                          "stop", "start", "end"]),
                         st.integers(0, 3), st.sampled_from(["s1", "s2"])), max_size=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_any_event_order_keeps_the_invariants(tmp_path: Path, ops: list[Any]) -> None:
    db_path = tmp_path / f"prop-{abs(hash(tuple(ops)))}.db_path"
    migrate(db_path)
    conn = connect_writer(db_path)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for i, (op, n, sid) in enumerate(ops):
            kind = {"pre": "PreToolUse", "post": "PostToolUse", "fail": "PostToolUseFailure",
                    "task_pre": "PreToolUse", "task_post": "PostToolUse"}.get(op)
            if op == "stop":
                item = event("SubagentStop", sid, agent_id=f"a{n}")
            elif op == "start":
                item = event("SubagentStart", sid, agent_id=f"a{n}", agent_type="code-reviewer")
            elif op == "end":
                item = event("SessionEnd", sid)
            elif op.startswith("task"):
                item = task(str(kind), f"t{n}", session=sid)
            else:
                item = tool(str(kind), f"u{n}", session=sid)
            Store(conn, max_payload_bytes=1024, now=clock + timedelta(seconds=i)).record(item)
    finally:
        conn.close()
    for table in ("agent_tool_uses", "agent_invocations"):
        # one row per (session, tool_use_id); finished rows have an end; running ones none
        assert rows(db_path, f"SELECT count(*) = count(DISTINCT session_id || '/' || tool_use_id)"  # noqa: S608
                        f" FROM {table}") == [(1,)]
        assert rows(db_path, f"SELECT count(*) FROM {table} WHERE status IN ('completed', 'error')"  # noqa: S608
                        " AND end_time IS NULL") == [(0,)]
        # work still running at its session's end is interrupted, never left running
        assert rows(db_path, f"SELECT count(*) FROM {table} WHERE status = 'running'"  # noqa: S608
                        " AND session_id IN (SELECT session_id FROM sessions"
                        " WHERE status = 'completed')") == [(0,)]
        assert rows(db_path, f"SELECT count(*) FROM {table} WHERE duration_seconds < 0") == [(0,)]  # noqa: S608
    seqs = rows(db_path, "SELECT session_id, sequence_number FROM agent_tool_uses ORDER BY id")
    for sid in ("s1", "s2"):
        mine = [s for (x, s) in seqs if x == sid]
        assert mine == list(range(1, len(mine) + 1))


# --- work that never finishes ------------------------------------------------------------


def test_session_end_interrupts_its_running_rows_once(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "u1"), task("PreToolUse", "t1"),
         tool("PreToolUse", "u2", session="other"), tool("PreToolUse", "u3"),
         tool("PostToolUse", "u3"))
    send(db_path, event("SessionEnd", reason="prompt_input_exit"))
    got = rows(db_path, "SELECT tool_use_id, status, end_time, duration_seconds, error"
                   " FROM agent_tool_uses ORDER BY id")
    assert [g[:4] for g in got] == [("u1", "interrupted", None, None),
                                    ("u2", "running", None, None),
                                    ("u3", "completed", got[2][2], got[2][3])]
    assert got[0][4].startswith("interrupted: its session ended")
    assert rows(db_path, "SELECT status FROM agent_invocations") == [("interrupted",)]
    seq = rows(db_path, "SELECT value FROM agentmon_sequence")
    # late finishes and a repeated Pre: nothing changes, nothing is inserted
    send(db_path, tool("PostToolUse", "u1"), task("PostToolUseFailure", "t1", error="late"),
         tool("PreToolUse", "u1"))
    assert rows(db_path, "SELECT value FROM agentmon_sequence") == seq
    assert rows(
        db_path, "SELECT count(*) FROM agent_tool_uses WHERE session_id = 'sess-1'") == [(2,)]
    send(db_path, event("SessionEnd"))  # a repeated end finds nothing running
    assert rows(db_path, "SELECT status FROM agent_tool_uses WHERE tool_use_id = 'u1'") == [
        ("interrupted",)]
    # a late Pre of the ended session: its work ended with the session, never left running
    send(db_path, tool("PreToolUse", "u9"))
    assert rows(db_path, "SELECT status FROM agent_tool_uses WHERE tool_use_id = 'u9'") == [
        ("interrupted",)]
    send(db_path, event("SessionStart", source="resume"), tool("PreToolUse", "u10"))
    assert rows(db_path, "SELECT status FROM agent_tool_uses WHERE tool_use_id = 'u10'") == [
        ("running",)]


def test_rows_running_past_the_limit_are_interrupted_at_any_session_start_or_end(
        db_path: Path) -> None:
    migrate(db_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conn = connect_writer(db_path)

    def record(item: dict[str, Any], at: timedelta, limit: float | None = 3600) -> None:
        Store(conn, max_payload_bytes=1024, now=start + at, interrupt_after=limit).record(item)

    try:
        record(tool("PreToolUse", "old", session="A"), timedelta(0))
        record(tool("PreToolUse", "young", session="B"), timedelta(minutes=50))
        record(event("Stop", session="C"), timedelta(hours=5))  # other events do not sweep
        assert rows(
            db_path, "SELECT count(*) FROM agent_tool_uses WHERE status = 'running'") == [(2,)]
        record(event("SessionStart", session="C"), timedelta(hours=5), limit=None)  # off
        assert rows(
            db_path, "SELECT count(*) FROM agent_tool_uses WHERE status = 'running'") == [(2,)]
        record(event("SessionStart", session="C"), timedelta(minutes=70))
        assert rows(
            db_path, "SELECT tool_use_id, status, error FROM agent_tool_uses ORDER BY id") == [
            ("old", "interrupted", "interrupted: still running after 3600 s"
             " (2026-01-01T01:10:00+00:00)"), ("young", "running", None)]
        record(event("SessionEnd", session="D"), timedelta(minutes=200))
        assert rows(db_path, "SELECT status FROM agent_tool_uses ORDER BY id") == [
            ("interrupted",), ("interrupted",)]
    finally:
        conn.close()


def test_interrupt_after_seconds_from_the_environment(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "u1", session="A"))
    conn = connect_writer(db_path)
    conn.execute("UPDATE agent_tool_uses SET start_time = '2020-01-01T00:00:00+00:00'")
    conn.close()
    send(db_path, event("SessionStart", session="B"), env={"AGENTMON_INTERRUPT_AFTER_SECONDS": "0"})
    assert rows(db_path, "SELECT status FROM agent_tool_uses") == [("running",)]
    send(db_path, event("SessionStart", session="B"))  # the default: a day
    assert rows(db_path, "SELECT status FROM agent_tool_uses") == [("interrupted",)]


# --- subagents: SubagentStart and agent_id ---------------------------------------------------


def test_subagent_start_names_its_invocation_and_its_events_find_it(db_path: Path) -> None:
    send(db_path, task("PreToolUse", "t1"), task("PreToolUse", "t2"),
         task("PreToolUse", "t3", agent="planner"))
    send(db_path, event("SubagentStart", agent_id="a-1", agent_type="code-reviewer"),
         event("SubagentStart", agent_id="a-2", agent_type="code-reviewer"),
         event("SubagentStart", agent_id="a-2", agent_type="code-reviewer"),  # repeated
         event("SubagentStart", agent_id="a-9", agent_type="nobody-runs-this"))
    assert rows(db_path, "SELECT tool_use_id, agent_id FROM agent_invocations ORDER BY id") == [
        ("t1", "a-1"), ("t2", "a-2"), ("t3", None)]
    # parallel subagents of one type: the event's agent_id picks the right one
    send(db_path, tool("PreToolUse", "u1", agent_id="a-2", agent_type="code-reviewer"),
         tool("PreToolUse", "u2", agent_id="a-1", agent_type="code-reviewer"))
    assert rows(db_path, "SELECT t.tool_use_id, i.tool_use_id FROM agent_tool_uses t"
                    " JOIN agent_invocations i ON i.id = t.agent_invocation_id ORDER BY t.id") == [
        ("u1", "t2"), ("u2", "t1")]
    send(db_path, event("SubagentStop", agent_id="a-2", agent_type="code-reviewer"))
    assert rows(
        db_path, "SELECT tool_use_id FROM agent_invocations WHERE end_time IS NOT NULL") == [
        ("t2",)]
    # a stop arriving after the Post changes nothing (the row is frozen)
    send(db_path, task("PostToolUse", "t1"))
    done = rows(db_path, "SELECT * FROM agent_invocations WHERE tool_use_id = 't1'")
    send(db_path, event("SubagentStop", agent_id="a-1", agent_type="code-reviewer"))
    assert rows(db_path, "SELECT * FROM agent_invocations WHERE tool_use_id = 't1'") == done


def test_subagent_start_without_agent_id_or_a_running_invocation_changes_nothing(
        db_path: Path) -> None:
    send(db_path, event("SubagentStart", agent_id="a-1"), event("SubagentStart", agent_type="x"))
    send(db_path, {k: v for k, v in event("SubagentStart").items() if k != "agent_id"})
    assert rows(db_path, "SELECT count(*) FROM agent_invocations") == [(0,)]
    assert rows(db_path, "SELECT session_id FROM sessions") == [("sess-1",)]


# --- current events ---------------------------------------------------------------------


def test_known_events_the_store_does_not_use_only_ensure_their_session(db_path: Path) -> None:
    used = {"PreToolUse", "PostToolUse", "PostToolUseFailure", "SessionStart", "SessionEnd",
            "SubagentStart", "SubagentStop", "Stop", "StopFailure", "PermissionDenied"}
    names = [name for name in EVENT_NAMES if name not in used]
    assert len(names) == 24
    for name in names:
        send(db_path, event(name, session=f"s-{name}"))
    assert rows(db_path, "SELECT count(*), min(status) FROM sessions") == [(24, "active")]
    assert rows(db_path, "SELECT count(*) FROM agent_usage") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM agent_tool_uses") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM agent_invocations") == [(0,)]
    # Setup has cwd and agent_type null: accepted, the session's cwd stays unknown
    assert rows(db_path, "SELECT cwd FROM sessions WHERE session_id = 's-Setup'") == [(None,)]


def test_null_cwd_and_agent_type_are_accepted(db_path: Path) -> None:
    send(db_path, tool("PreToolUse", "u1", cwd=None, agent_type=None, transcript_path=None,
                  permission_mode=None))
    assert rows(db_path, "SELECT agent_name FROM agent_tool_uses") == [("main",)]
