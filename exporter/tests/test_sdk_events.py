"""Events shaped exactly as the Claude Code of today sends them, through the real hook and the
collector.

The field names are those of the published types of ``@anthropic-ai/claude-agent-sdk`` 0.3.334
(npm): ``sdk.d.ts`` (``BaseHookInput``, every ``*HookInput`` type, ``HOOK_EVENTS``) and
``sdk-tools.d.ts`` (``AgentOutput``, the Agent tool's response). Each test here failed on the
agentmon before schema step "usage": tool time taken from hook arrival gaps, user interrupts
counted as errors, background subagents finished at launch, PreSkillShellCommand refused,
StopFailure / PermissionDenied counted nowhere, agent_type alone taken for a subagent, and no
token, line or cost figures.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from collector_db import make_db, samples, value
from hook_events import rows, run_hook

from agentmon.collector.collector import ExporterCollector
from agentmon.hook.store import Store
from agentmon.schema.db import connect_writer

SID = "5f0c2d7e-1b9a-4c55-9d0e-2a7c1e3b4f60"
BASE: dict[str, Any] = {  # BaseHookInput
    "session_id": SID,
    "transcript_path": "/home/dev/.claude/projects/-home-dev-p/5f0c2d7e.jsonl",
    "cwd": "/home/dev/p",
    "prompt_id": "0d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
    "permission_mode": "default",
    "effort": {"level": "high"},
}
# HOOK_EVENTS of sdk.d.ts, in its order
HOOK_EVENTS = [
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
    "UserPromptSubmit", "UserPromptExpansion", "SessionStart", "SessionEnd", "Stop",
    "StopFailure", "SubagentStart", "SubagentStop", "PreCompact", "PostCompact",
    "PreModelSwitch", "PostModelSwitch", "PermissionRequest", "PermissionDenied", "Setup",
    "TeammateIdle", "TaskCreated", "TaskCompleted", "Elicitation", "ElicitationResult",
    "ConfigChange", "WorktreeCreate", "WorktreeRemove", "InstructionsLoaded", "CwdChanged",
    "FileChanged", "DirectoryAdded", "MessageDisplay", "PreSkillShellCommand",
]
SWITCH = {"from_model": "claude-sonnet-4-5", "to_model": "claude-opus-4-1",
          "requested_model": "opus", "source": "command", "context_tokens": 41000,
          "prompt_cache_warm": True, "cache_ttl": "5m", "estimated_cache_write_usd": 0.31,
          "pricing": "catalog"}
# One event per SDK *HookInput type: its own fields, with the SDK's names, nothing else.
SDK_FIELDS: dict[str, dict[str, Any]] = {
    "PreToolUseHookInput": {"tool_name": "Read", "tool_input": {"file_path": "/home/dev/p/a"},
                            "tool_use_id": "toolu_01A"},
    "PostToolUseHookInput": {"tool_name": "Read", "tool_input": {"file_path": "/home/dev/p/a"},
                             "tool_response": {"type": "text"}, "tool_use_id": "toolu_01A",
                             "duration_ms": 7},
    "PostToolUseFailureHookInput": {"tool_name": "Bash", "tool_input": {"command": "make"},
                                    "tool_use_id": "toolu_01B", "error": "Exit code 2",
                                    "is_interrupt": False, "duration_ms": 1200,
                                    "mcp_server": {"name": "x", "source": "user"}},
    "PostToolBatchHookInput": {"tool_calls": [{"tool_name": "Read", "tool_input": {},
                                               "tool_use_id": "toolu_01A",
                                               "tool_response": {}}]},
    "NotificationHookInput": {"message": "Claude needs your permission", "title": "Permission",
                              "notification_type": "permission_prompt"},
    "UserPromptSubmitHookInput": {"prompt": "fix the tests", "source": "user",
                                  "session_title": "tests"},
    "UserPromptExpansionHookInput": {"expansion_type": "slash_command", "command_name": "review",
                                     "command_args": "", "command_source": "project",
                                     "prompt": "/review"},
    "SessionStartHookInput": {"source": "startup", "agent_type": "code-reviewer",
                              "model": "claude-sonnet-4-5", "session_title": "t",
                              "seconds_since_last_response": 12, "context_tokens": 1000,
                              "prompt_cache_likely_expired": False,
                              "estimated_cache_write_usd": 0.01},
    "SessionEndHookInput": {"reason": "prompt_input_exit"},
    "StopHookInput": {"stop_hook_active": False, "last_assistant_message": "Done.",
                      "background_tasks": [], "session_crons": []},
    "StopFailureHookInput": {"error": "rate_limit", "error_details": "429 Too Many Requests",
                             "last_assistant_message": ""},
    "SubagentStartHookInput": {"agent_id": "a1b2c3", "agent_type": "code-reviewer"},
    "SubagentStopHookInput": {"stop_hook_active": False, "agent_id": "a1b2c3",
                              "agent_transcript_path": "/home/dev/.claude/x/agent-a1b2c3.jsonl",
                              "agent_type": "code-reviewer", "last_assistant_message": "ok",
                              "background_tasks": [], "session_crons": []},
    "PreCompactHookInput": {"trigger": "auto", "custom_instructions": None},
    "PostCompactHookInput": {"trigger": "manual", "compact_summary": "summary"},
    "PreModelSwitchHookInput": {**SWITCH, "source": "picker"},
    "PostModelSwitchHookInput": SWITCH,
    "PermissionRequestHookInput": {"tool_name": "Bash", "tool_input": {"command": "rm -r b"},
                                   "permission_suggestions": []},
    "PermissionDeniedHookInput": {"tool_name": "Bash", "tool_input": {"command": "curl x"},
                                  "tool_use_id": "toolu_01C", "reason": "auto mode classifier"},
    "SetupHookInput": {"trigger": "init"},
    "TeammateIdleHookInput": {"teammate_name": "tester", "team_name": "crew"},
    "TaskCreatedHookInput": {"task_id": "1", "task_subject": "write tests",
                             "task_description": "d", "teammate_name": "t", "team_name": "c"},
    "TaskCompletedHookInput": {"task_id": "1", "task_subject": "write tests"},
    "ElicitationHookInput": {"mcp_server_name": "github", "message": "Which repository?",
                             "mode": "form", "elicitation_id": "e1", "requested_schema": {}},
    "ElicitationResultHookInput": {"mcp_server_name": "github", "elicitation_id": "e1",
                                   "mode": "form", "action": "accept", "content": {}},
    "ConfigChangeHookInput": {"source": "user_settings",
                              "file_path": "/home/dev/.claude/settings.json"},
    "WorktreeCreateHookInput": {"name": "feature-x"},
    "WorktreeRemoveHookInput": {"worktree_path": "/home/dev/p/.claude/worktrees/feature-x"},
    "InstructionsLoadedHookInput": {"file_path": "/home/dev/p/CLAUDE.md",
                                    "memory_type": "Project", "load_reason": "session_start",
                                    "globs": ["*.py"]},
    "CwdChangedHookInput": {"old_cwd": "/home/dev/p", "new_cwd": "/home/dev/p/sub"},
    "FileChangedHookInput": {"file_path": "/home/dev/p/.envrc", "event": "change"},
    "DirectoryAddedHookInput": {"directory": "/home/dev/other", "source": "slash_command"},
    "MessageDisplayHookInput": {"turn_id": "t1", "message_id": "m1", "index": 0, "final": True,
                                "delta": "Hello"},
    "PreSkillShellCommandHookInput": {"tool_name": "Bash",
                                      "tool_input": {"command": "git status"},
                                      "tool_use_id": "toolu_01S", "command_name": "review",
                                      "command_source": "project", "invoked_by": "user"},
}


def sdk(name: str, **fields: Any) -> dict[str, Any]:
    """An event of SDK type ``<name>HookInput`` with its fields, overridable."""
    return {**BASE, "hook_event_name": name, **SDK_FIELDS[f"{name}HookInput"], **fields}


def send(db: Path, *events: dict[str, Any], args: tuple[str, ...] = ()) -> None:
    for item in events:
        assert run_hook(item, db, *args) == (0, ""), item["hook_event_name"]


def scrape(db: Path) -> dict:
    collector = ExporterCollector(db)
    collector.refresh()
    return samples(collector)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "agent_workflow.db")


# ------------------------------------------------------------------------------ event shapes


def test_one_event_of_every_sdk_hook_input_type_is_recorded(db: Path) -> None:
    assert sorted(f"{n}HookInput" for n in HOOK_EVENTS) == sorted(SDK_FIELDS)
    for name in HOOK_EVENTS:
        send(db, sdk(name))
    assert rows(db, "SELECT count(*) FROM sessions") == [(1,)]
    # Read: Pre then Post with duration_ms; Bash: a Post failure without its Pre
    assert rows(db, "SELECT tool_name, status, duration_seconds, prompt_id FROM agent_tool_uses"
                    " ORDER BY id") == [("Read", "completed", 0.007, BASE["prompt_id"]),
                                        ("Bash", "error", 1.2, BASE["prompt_id"])]
    assert rows(db, "SELECT kind, label FROM agent_usage ORDER BY id") == [
        ("api_error", "rate_limit"), ("permission_denied", "Bash")]
    assert rows(db, "SELECT status FROM sessions") == [("completed",)]


# ------------------------------------------------------------------------------ durations


@pytest.mark.parametrize("post_first", [False, True])
def test_tool_time_is_duration_ms_in_either_order(db: Path, post_first: bool) -> None:
    pre, post = sdk("PreToolUse"), sdk("PostToolUse")  # a Read that ran 7 ms
    send(db, *((post, pre) if post_first else (pre, post)))
    assert rows(db, "SELECT status, duration_seconds FROM agent_tool_uses") == [
        ("completed", 0.007)]
    snap = scrape(db)
    assert value(snap, "agentmon_tool_use_duration_seconds_count", tool="Read") == 1
    assert value(snap, "agentmon_tool_use_duration_seconds_sum", tool="Read") == 0.007
    assert value(snap, "agentmon_tool_use_duration_seconds_bucket", tool="Read", le="0.01") == 1


def test_without_duration_ms_the_clocks_are_the_fallback(db: Path) -> None:
    post = sdk("PostToolUse")
    del post["duration_ms"]
    send(db, sdk("PreToolUse"), post)
    ((status, seconds, start, end),) = rows(
        db, "SELECT status, duration_seconds, start_time, end_time FROM agent_tool_uses")
    assert status == "completed"
    assert seconds == (datetime.fromisoformat(end) - datetime.fromisoformat(start)
                       ).total_seconds()


def test_a_user_interrupt_is_interrupted_not_an_error(db: Path) -> None:
    failure = sdk("PostToolUseFailure", error="Interrupted by user", is_interrupt=True)
    send(db, sdk("PreToolUse", tool_name="Bash", tool_use_id="toolu_01B"), failure)
    snap = scrape(db)
    assert value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                 status="interrupted") == 1
    assert value(snap, "agentmon_tool_uses_total", agent="main", tool="Bash",
                 status="error") == 0


# ------------------------------------------------------------------------ background agents

AGENT_INPUT = {"description": "review", "prompt": "review the diff",
               "subagent_type": "code-reviewer", "run_in_background": True}
LAUNCHED = {"status": "async_launched", "isAsync": True, "agentId": "a1b2c3",
            "description": "review", "resolvedModel": "claude-haiku-4-5",
            "prompt": "review the diff", "outputFile": "/tmp/x.output"}


def agent_call(name: str, **fields: Any) -> dict[str, Any]:
    event = {**BASE, "hook_event_name": name, "tool_name": "Agent", "tool_input": AGENT_INPUT,
             "tool_use_id": "toolu_01G"}
    if name == "PostToolUse":
        event.update(tool_response=LAUNCHED, duration_ms=40)
    return {**event, **fields}


def assistant(mid: str, request: str, output: int, *, model: str = "claude-haiku-4-5",
              sidechain: bool = False, inp: int = 10, read: int = 100,
              created: int = 5) -> dict[str, Any]:
    return {"type": "assistant", "isSidechain": sidechain, "requestId": request,
            "uuid": f"u-{mid}-{output}", "message": {
                "id": mid, "model": model, "role": "assistant",
                "content": [{"type": "text", "text": "x"}],
                "usage": {"input_tokens": inp, "output_tokens": output,
                          "cache_read_input_tokens": read,
                          "cache_creation_input_tokens": created}}}


def write_jsonl(path: Path, entries: list[dict[str, Any] | str], mode: str = "w") -> None:
    with path.open(mode) as handle:
        for entry in entries:
            handle.write(entry if isinstance(entry, str) else json.dumps(entry) + "\n")


def tokens(snap: dict, agent: str, model: str) -> dict[str, float]:
    return {t: value(snap, "agentmon_tokens_total", agent=agent, model=model, type=t)
            for t in ("input", "output", "cache_read", "cache_creation")}


def test_a_background_agent_runs_until_its_subagent_stop_and_counts_once(
        db: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "agent-a1b2c3.jsonl"
    write_jsonl(transcript, [assistant("msg_1", "req_1", 3, sidechain=True),
                             assistant("msg_1", "req_1", 30, sidechain=True),  # streamed
                             assistant("msg_2", "req_2", 7, sidechain=True)])
    send(db, agent_call("PreToolUse"), agent_call("PostToolUse"))
    assert rows(db, "SELECT status, agent_id, background FROM agent_invocations") == [
        ("running", "a1b2c3", 1)]
    snap = scrape(db)
    assert value(snap, "agentmon_invocations_running", agent="code-reviewer", phase="none") == 1
    assert value(snap, "agentmon_sessions_active") == 1
    # the subagent's own tool call carries its agent_id
    send(db, sdk("PreToolUse", agent_id="a1b2c3", agent_type="code-reviewer"))
    assert rows(db, "SELECT agent_name, agent_invocation_id FROM agent_tool_uses") == [
        ("code-reviewer", 1)]
    stop = sdk("SubagentStop", agent_transcript_path=str(transcript))
    send(db, stop, stop)
    ((status, duration, start, end),) = rows(
        db, "SELECT status, duration_seconds, start_time, end_time FROM agent_invocations")
    assert status == "completed"
    assert duration == (datetime.fromisoformat(end) - datetime.fromisoformat(start)
                        ).total_seconds()
    snap = scrape(db)
    assert value(snap, "agentmon_invocations_total", agent="code-reviewer", phase="none",
                 status="completed") == 1
    assert value(snap, "agentmon_invocations_running", agent="code-reviewer", phase="none") == 0
    assert tokens(snap, "code-reviewer", "claude-haiku-4-5") == {
        "input": 20, "output": 37, "cache_read": 200, "cache_creation": 10}


def test_a_stop_before_the_launch_post_still_finishes_it_once(db: Path, tmp_path: Path) -> None:
    send(db, agent_call("PreToolUse"), sdk("SubagentStart"),
         sdk("SubagentStop", agent_transcript_path=str(tmp_path / "none.jsonl")),
         agent_call("PostToolUse"))
    assert rows(db, "SELECT status, duration_seconds >= 0 FROM agent_invocations") == [
        ("completed", 1)]


def test_a_background_agent_whose_stop_never_comes_ends_with_its_session(db: Path) -> None:
    send(db, agent_call("PostToolUse"))  # even without its Pre
    assert rows(db, "SELECT status FROM agent_invocations") == [("running",)]
    send(db, sdk("SessionEnd"), sdk("SubagentStop"))
    snap = scrape(db)
    assert value(snap, "agentmon_invocations_total", agent="code-reviewer", phase="none",
                 status="interrupted") == 1
    assert value(snap, "agentmon_invocations_total", agent="code-reviewer", phase="none",
                 status="completed") == 0


def test_a_background_agent_past_the_limit_is_interrupted_once(db: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conn = connect_writer(db)
    try:
        for event, at in ((agent_call("PreToolUse"), 0), (agent_call("PostToolUse"), 0),
                          (sdk("SessionStart", session_id="other"), 2),
                          (sdk("SubagentStop"), 3)):
            Store(conn, max_payload_bytes=4096, now=start + timedelta(hours=at),
                  interrupt_after=3600).record(event)
    finally:
        conn.close()
    assert rows(db, "SELECT status FROM agent_invocations") == [("interrupted",)]


def test_a_foreground_agent_counts_the_usage_of_its_response(db: Path) -> None:
    response = {"agentId": "f00", "agentType": "code-reviewer", "status": "completed",
                "content": [{"type": "text", "text": "fine"}], "prompt": "p",
                "resolvedModel": "claude-sonnet-4-5", "modelsUsed": ["claude-sonnet-4-5"],
                "totalToolUseCount": 3, "totalDurationMs": 9000, "totalTokens": 1234,
                "usage": {"input_tokens": 100, "output_tokens": 200,
                          "cache_read_input_tokens": 300, "cache_creation_input_tokens": None,
                          "server_tool_use": None, "service_tier": "standard",
                          "cache_creation": None},
                "toolStats": {"readCount": 1, "searchCount": 0, "bashCount": 1,
                              "editFileCount": 1, "linesAdded": 42, "linesRemoved": 7,
                              "otherToolCount": 0}}
    fg = {**AGENT_INPUT, "run_in_background": False}
    post = agent_call("PostToolUse", tool_input=fg, tool_response=response, duration_ms=9100)
    send(db, agent_call("PreToolUse", tool_input=fg), post, post)
    assert rows(db, "SELECT status, duration_seconds FROM agent_invocations") == [
        ("completed", 9.1)]
    snap = scrape(db)
    assert tokens(snap, "code-reviewer", "claude-sonnet-4-5") == {
        "input": 100, "output": 200, "cache_read": 300, "cache_creation": 0}
    assert value(snap, "agentmon_lines_changed_total", agent="code-reviewer", type="added") == 42
    assert value(snap, "agentmon_lines_changed_total", agent="code-reviewer",
                 type="removed") == 7


# ---------------------------------------------------------------------------- current events


def test_api_errors_and_permission_denials_are_counted(db: Path) -> None:
    denied = sdk("PermissionDenied")
    send(db, sdk("PreSkillShellCommand"), sdk("StopFailure"), sdk("StopFailure"),
         sdk("StopFailure", error="overloaded"), denied, denied,
         sdk("PermissionDenied", tool_name="WebFetch", tool_use_id="toolu_02"))
    snap = scrape(db)
    assert value(snap, "agentmon_api_errors_total", error="rate_limit") == 2
    assert value(snap, "agentmon_api_errors_total", error="overloaded") == 1
    assert value(snap, "agentmon_permission_denials_total", tool="Bash") == 1  # once per call
    assert value(snap, "agentmon_permission_denials_total", tool="WebFetch") == 1


def test_agent_type_without_agent_id_is_the_main_thread(db: Path) -> None:
    # SDK BaseHookInput.agent_type: "on the main thread of a session started with --agent
    # (without agent_id)"; a running subagent of that type must not take its tool calls.
    send(db, agent_call("PreToolUse"), agent_call("PostToolUse"),
         sdk("PreToolUse", agent_type="code-reviewer"))
    assert rows(db, "SELECT agent_name, agent_invocation_id FROM agent_tool_uses") == [
        ("main", None)]


# ----------------------------------------------------------------------------- transcripts


def test_main_thread_tokens_from_the_transcript_incrementally(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    stop = sdk("Stop", transcript_path=str(path))
    write_jsonl(path, [{"type": "user", "message": {"role": "user", "content": "hi"}},
                       assistant("m1", "r1", 5, model="claude-opus-4-1"),
                       assistant("m1", "r1", 50, model="claude-opus-4-1"),  # the same message
                       assistant("s1", "rs", 999, sidechain=True),  # a subagent's, not main's
                       "not json\n",
                       json.dumps(assistant("m2", "r2", 1, model="claude-opus-4-1"))[:40]])
    send(db, stop)
    first = tokens(scrape(db), "main", "claude-opus-4-1")
    assert first == {"input": 10, "output": 50, "cache_read": 100, "cache_creation": 5}
    # the unfinished line is finished, more is appended; a repeated Stop reads nothing new
    with path.open("r+") as handle:
        text = handle.read()
        handle.seek(text.rindex("\n") + 1)
        handle.truncate()
    write_jsonl(path, [assistant("m2", "r2", 1, model="claude-opus-4-1"),
                       assistant("m3", "r3", 2, model="claude-sonnet-4-5")], "a")
    send(db, stop, stop)
    snap = scrape(db)
    assert tokens(snap, "main", "claude-opus-4-1")["output"] == 51
    assert tokens(snap, "main", "claude-sonnet-4-5")["output"] == 2
    assert value(snap, "agentmon_tokens_total", agent="main", model="claude-haiku-4-5",
                 type="output") == 0
    # rewritten shorter (compaction, an editor): nothing counted twice, nothing goes down
    write_jsonl(path, [assistant("m3", "r3", 2, model="claude-sonnet-4-5"),
                       assistant("m4", "r4", 4, model="claude-sonnet-4-5")])
    send(db, stop)
    snap = scrape(db)
    assert tokens(snap, "main", "claude-opus-4-1")["output"] == 51
    assert tokens(snap, "main", "claude-sonnet-4-5")["output"] == 6
    assert rows(db, "SELECT sum(output_tokens) FROM agent_usage") == [(57,)]


def test_a_transcript_read_stops_at_its_budget_and_resumes(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    write_jsonl(path, [assistant(f"m{i}", f"r{i}", 1) for i in range(50)])
    line = len(path.read_bytes()) // 50
    conn = connect_writer(db)
    try:
        for _ in range(6):
            Store(conn, max_payload_bytes=4096, transcript_budget=10 * line).record(
                sdk("Stop", transcript_path=str(path)))
            assert conn.execute("SELECT count(*) FROM agent_usage").fetchone()[0] <= 50
    finally:
        conn.close()
    assert rows(db, "SELECT count(*), sum(output_tokens) FROM agent_usage") == [(50, 50)]


def test_an_overlong_line_is_skipped_not_held(db: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmon.hook import usage

    monkeypatch.setattr(usage, "MAX_LINE", 1000)
    path = tmp_path / "session.jsonl"
    big = assistant("big", "rb", 9)
    big["message"]["content"][0]["text"] = "y" * 5000
    write_jsonl(path, [assistant("m1", "r1", 1), big, assistant("m2", "r2", 2)])
    send(db, sdk("Stop", transcript_path=str(path)))
    assert rows(db, "SELECT sum(output_tokens) FROM agent_usage") == [(3,)]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_transcript_path_that_is_not_a_regular_file_is_not_read(
        db: Path, tmp_path: Path, kind: str) -> None:
    real = tmp_path / "real.jsonl"
    write_jsonl(real, [assistant("m1", "r1", 1)])
    path = tmp_path / "planted.jsonl"
    if kind == "symlink":
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    code, err = run_hook(sdk("Stop", transcript_path=str(path)), db)
    assert code == 0
    assert err.startswith("agentmon hook: transcript not read: ")
    assert err.count("\n") == 1
    # the event itself is recorded: nothing lost
    assert rows(db, "SELECT count(*) FROM sessions") == [(1,)]
    assert rows(db, "SELECT count(*) FROM agent_usage") == [(0,)]


def test_usage_rows_never_hold_ids_in_labels(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    write_jsonl(path, [assistant("m1", "r1", 1, model="claude-opus-4-1")])
    send(db, sdk("Stop", transcript_path=str(path)), sdk("StopFailure"))
    snap = scrape(db)
    text = json.dumps(list(snap))
    for secret in (SID, BASE["prompt_id"], "m1", "r1", str(path)):
        assert secret not in text
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT prompt_id FROM agent_usage").fetchall() == [
        (BASE["prompt_id"],), (BASE["prompt_id"],)]
    conn.close()
