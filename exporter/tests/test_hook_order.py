"""Events in any order: async hooks let a Post land before its Pre, a stop before its start.

Every permutation of the events of a tool use and of a subagent invocation is replayed through
the hook (validation, the real store, a real SQLite file), then read by the collector: no order
may leave a row running or count it twice, and the exported counts must be the same for all.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from collector_db import make_db, samples, value
from hook_events import event, rows, run_hook

from agentmon.collector.collector import ExporterCollector
from agentmon.schema import migrations

TASK_INPUT = {"subagent_type": "code-reviewer", "description": "review", "prompt": "look"}


def tool_use_events(finish: str) -> list[dict[str, Any]]:
    extra = {"error": "exit 1"} if finish == "PostToolUseFailure" else {}
    return [event("PreToolUse", tool_use_id="toolu_b"),
            event(finish, tool_use_id="toolu_b", **extra)]


def subagent_events(finish: str) -> list[dict[str, Any]]:
    extra = ({"error": "interrupted"} if finish == "PostToolUseFailure"
             else {"tool_response": {"content": [{"type": "text", "text": "ok"}],
                                     "totalDurationMs": 2500}})
    return [
        event("SubagentStart", agent_id="agent-7", agent_type="code-reviewer"),
        event("PreToolUse", tool_name="Task", tool_use_id="toolu_t", tool_input=TASK_INPUT),
        event("SubagentStop", agent_id="agent-7", agent_type="code-reviewer"),
        event(finish, tool_name="Task", tool_use_id="toolu_t", tool_input=TASK_INPUT, **extra),
    ]


def replay(db: Path, events: list[dict[str, Any]]) -> None:
    for item in events:
        assert run_hook(item, db) == (0, ""), item["hook_event_name"]


def exported(db: Path) -> dict[str, float]:
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    return {
        "invocations_completed": value(snap, "agentmon_invocations_total", agent="code-reviewer",
                                       phase="none", status="completed"),
        "invocations_error": value(snap, "agentmon_invocations_total", agent="code-reviewer",
                                   phase="none", status="error"),
        "invocations_running": sum(v for (name, _), v in snap.items()
                                   if name == "agentmon_invocations_running"),
        "tools_completed": value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                                 status="completed"),
        "tools_error": value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                             status="error"),
        "tools_running": sum(v for (name, _), v in snap.items()
                             if name == "agentmon_tool_uses_running"),
        "sessions_active": value(snap, "agentmon_sessions_active"),
    }


@pytest.mark.parametrize("finish", ["PostToolUse", "PostToolUseFailure"])
def test_every_order_of_a_tool_use_and_a_subagent_counts_once(tmp_path: Path,
                                                               finish: str) -> None:
    status = "completed" if finish == "PostToolUse" else "error"
    other = "error" if status == "completed" else "completed"
    expected = {f"invocations_{status}": 1, f"invocations_{other}": 0, "invocations_running": 0,
                f"tools_{status}": 1, f"tools_{other}": 0, "tools_running": 0,
                "sessions_active": 0}
    orders = [(tools, agents)
              for tools in itertools.permutations(tool_use_events(finish))
              for agents in itertools.permutations(subagent_events(finish))]
    assert len(orders) == 2 * 24
    for n, (tools, agents) in enumerate(orders):
        db = make_db(tmp_path / f"order-{n}.db", migrations.LATEST)
        order = [e["hook_event_name"] for e in (*tools, *agents)]
        replay(db, [*tools, *agents])
        assert rows(db, "SELECT tool_use_id, status FROM agent_tool_uses") == [
            ("toolu_b", status)], order
        assert rows(db, "SELECT tool_use_id, status, agent_name FROM agent_invocations") == [
            ("toolu_t", status, "code-reviewer")], order
        assert exported(db) == expected, order
        # replaying the whole lot again (duplicates, in the same order) changes nothing
        sequence = rows(db, "SELECT value FROM agentmon_sequence")
        replay(db, [*tools, *agents])
        assert rows(db, "SELECT value FROM agentmon_sequence") == sequence, order
        assert exported(db) == expected, order


def test_a_pre_after_its_post_neither_inserts_nor_reopens(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    post, pre = event("PostToolUse", tool_use_id="u1"), event("PreToolUse", tool_use_id="u1")
    replay(db, [post])
    before = rows(db, "SELECT * FROM agent_tool_uses")
    replay(db, [pre])
    assert rows(db, "SELECT * FROM agent_tool_uses") == before
    assert [r[0] for r in rows(db, "SELECT status FROM agent_tool_uses")] == ["completed"]


def test_interrupted_rows_are_counted_once_in_the_metrics(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db", migrations.LATEST)
    replay(db, [event("PreToolUse", tool_use_id="u1"),
                event("PreToolUse", tool_name="Task", tool_use_id="t1", tool_input=TASK_INPUT)])
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_tool_uses_running", agent="main", tool="Bash") == 1
    assert value(snap, "agentmon_sessions_active") == 1
    replay(db, [event("SessionEnd")])
    # late finishes of the interrupted work change nothing: the rows were counted
    replay(db, [event("PostToolUse", tool_use_id="u1"),
                event("PostToolUse", tool_name="Task", tool_use_id="t1", tool_input=TASK_INPUT)])
    for _ in range(2):
        collector.refresh()
        snap = samples(collector)
        assert value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                     status="interrupted") == 1
        assert value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                     status="completed") == 0
        assert value(snap, "agentmon_invocations_total", agent="code-reviewer", phase="none",
                     status="interrupted") == 1
        assert value(snap, "agentmon_sessions_active") == 0
        assert not [k for k in snap if k[0].endswith("_running") and snap[k]]
        # not observed: the time until the interruption is not the work's duration
        assert value(snap, "agentmon_tool_use_duration_seconds_count", tool="Bash") == 0
    # a cold start (no checkpoint) agrees
    fresh = ExporterCollector(db)
    fresh.refresh()
    assert value(samples(fresh), "agentmon_tool_uses_total", agent="main", tool="Bash",
                 status="interrupted") == 1
