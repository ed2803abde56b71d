"""The hook is registered off the agent's critical path where that is safe (issue 9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

# Claude Code runs these in the background (async: true) and does not wait for them.
BACKGROUND = {"PreToolUse", "PostToolUse", "PostToolUseFailure", "SubagentStart", "SubagentStop"}
# A session's last events must be written before it exits: synchronous.
WAITED_FOR = {"SessionStart", "SessionEnd", "Stop"}


def agentmon_hooks(host: Any, user: str, event: str) -> list[dict[str, Any]]:
    doc = json.loads(host.file(f"/home/{user}/.claude/settings.json").content_string)
    return [h for entry in doc["hooks"][event] for h in entry["hooks"]
            if "agentmon" in h.get("command", "")]


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_tool_and_subagent_hooks_are_async_session_hooks_are_not(host: Any, user: str) -> None:
    for event in sorted(BACKGROUND | WAITED_FOR):
        (hook,) = agentmon_hooks(host, user, event)
        assert hook.get("async", False) is (event in BACKGROUND), (event, hook)
        assert "args" not in hook  # exec form is opt-in (agentmon_hooks_exec_form)
