"""Shared helpers for the hook tests: realistic events and an in-process runner."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from agentmon.hook import cli as hook

BASE = {
    "transcript_path": "/home/dev/.claude/projects/p/0b1c.jsonl",
    "cwd": "/home/dev/project",
    "permission_mode": "default",
}


def event(name: str, session: str = "sess-1", **fields: Any) -> dict[str, Any]:
    """A valid event of type ``name`` with the documented fields, overridable."""
    extra: dict[str, Any] = {
        "PreToolUse": {"tool_name": "Bash", "tool_input": {"command": "ls"},
                       "tool_use_id": "toolu_1"},
        "PostToolUse": {"tool_name": "Bash", "tool_input": {"command": "ls"},
                        "tool_use_id": "toolu_1", "tool_response": {"stdout": "a\nb\n"}},
        "PostToolUseFailure": {"tool_name": "Bash", "tool_input": {"command": "false"},
                               "tool_use_id": "toolu_1", "error": "exit code 1",
                               "is_interrupt": False},
        "UserPromptSubmit": {"prompt": "fix the tests"},
        "SessionStart": {"source": "startup"},
        "SessionEnd": {"reason": "exit"},
        "Stop": {"stop_hook_active": False},
        "SubagentStop": {"stop_hook_active": False, "agent_id": "agent-1",
                         "agent_transcript_path": "/home/dev/.claude/a.jsonl"},
        "Notification": {"message": "Claude needs your permission"},
        "PreCompact": {"trigger": "auto", "custom_instructions": ""},
        # Events added to Claude Code after the original hooks; fields per its hooks reference.
        "PostToolBatch": {"tool_calls": [{"tool_name": "Read", "tool_use_id": "toolu_1"}]},
        "PermissionRequest": {"tool_name": "Bash", "tool_input": {"command": "rm -rf build"},
                              "permission_suggestions": []},
        "PermissionDenied": {"tool_name": "Bash", "tool_input": {"command": "curl x"},
                             "tool_use_id": "toolu_1", "reason": "denied by the classifier"},
        "UserPromptExpansion": {"prompt": "/review", "expanded_prompt": "Review the diff"},
        "StopFailure": {"error": "rate_limit", "error_details": "429"},
        "SubagentStart": {"agent_id": "agent-1", "agent_type": "code-reviewer"},
        "PostCompact": {"trigger": "auto", "compact_summary": "summary"},
        "Elicitation": {"mcp_server_name": "github", "message": "Which repository?"},
        "ElicitationResult": {"mcp_server_name": "github", "action": "accept"},
        "TeammateIdle": {"teammate_name": "tester", "team_name": "crew"},
        "TaskCreated": {"task_id": "1", "task_subject": "write tests"},
        "TaskCompleted": {"task_id": "1", "task_subject": "write tests"},
        "Setup": {"trigger": "init", "cwd": None, "agent_type": None},
        "InstructionsLoaded": {"file_path": "/home/dev/project/CLAUDE.md",
                               "memory_type": "Project", "load_reason": "session_start"},
        "CwdChanged": {"old_cwd": "/home/dev/project", "new_cwd": "/home/dev/project/sub"},
        "FileChanged": {"file_path": "/home/dev/project/.envrc", "event": "change"},
        "ConfigChange": {"source": "user_settings", "file_path": "/home/dev/.claude/s.json"},
        "WorktreeCreate": {"name": "feature-x"},
        "WorktreeRemove": {"worktree_path": "/home/dev/project/.claude/worktrees/feature-x"},
        "PreModelSwitch": {"from_model": "sonnet", "to_model": "opus"},
        "PostModelSwitch": {"from_model": "sonnet", "to_model": "opus"},
        "MessageDisplay": {"message": "Compacting..."},
        "DirectoryAdded": {"directory": "/home/dev/other"},
        "PreSkillShellCommand": {"tool_name": "Bash", "tool_input": {"command": "git status"},
                                 "tool_use_id": "toolu_s1", "command_name": "review",
                                 "invoked_by": "user"},
    }[name]
    return {**BASE, "hook_event_name": name, "session_id": session, **extra, **fields}


# Claude Code's hooks reference, in its order.
EVENT_NAMES = ["PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch",
               "PermissionRequest", "PermissionDenied", "Notification", "UserPromptSubmit",
               "UserPromptExpansion", "Stop", "StopFailure", "SubagentStart", "SubagentStop",
               "PreCompact", "PostCompact", "Elicitation", "ElicitationResult", "TeammateIdle",
               "TaskCreated", "TaskCompleted", "Setup", "InstructionsLoaded", "CwdChanged",
               "FileChanged", "ConfigChange", "WorktreeCreate", "WorktreeRemove", "SessionStart",
               "SessionEnd", "PreModelSwitch", "PostModelSwitch", "MessageDisplay",
               "DirectoryAdded", "PreSkillShellCommand"]


def run_hook(payload: bytes | dict[str, Any], db: Path | None, *args: str,
             env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``agentmon hook`` in-process; returns (exit code, stderr)."""
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    err = io.StringIO()
    out = io.StringIO()
    code = hook.run(argv, io.BytesIO(data), out, err, env or {})
    return code, err.getvalue()


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
