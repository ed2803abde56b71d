"""Shared helpers for the hook tests: realistic events and an in-process runner."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from agentmon.hook import main as hook

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
    }[name]
    return {**BASE, "hook_event_name": name, "session_id": session, **extra, **fields}


EVENT_NAMES = ["PreToolUse", "PostToolUse", "PostToolUseFailure", "UserPromptSubmit",
               "SessionStart", "SessionEnd", "Stop", "SubagentStop", "Notification", "PreCompact"]


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
