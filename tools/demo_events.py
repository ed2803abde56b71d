#!/usr/bin/env python3
"""Play realistic Claude Code sessions through the hooks registered in ~/.claude/settings.json.

Runs as a Claude Code user on a host where the agentmon_hooks role registered `agentmon hook`:
for every event it finds the hooks registered for that event (matcher included) and runs each
command the way Claude Code does (the event as JSON on stdin; a `command` string through the
shell, or the exec form `args`). Nothing here writes the database itself.

    demo_events.py [--sessions N] [--seed S] [--settings PATH]

Each session: SessionStart, a prompt, two or three subagent invocations (Task) each with a few
tool calls (Read, Grep, Edit, Bash, an MCP tool; about one in eight fails), one invocation left
running when the session ends (so it becomes interrupted), Stop, SessionEnd.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

AGENTS = ["planner", "developer", "tester", "reviewer", "security-auditor"]
TOOLS: list[tuple[str, dict[str, Any]]] = [
    ("Read", {"file_path": "src/app/models.py"}),
    ("Grep", {"pattern": "def handle_", "path": "src"}),
    ("Edit", {"file_path": "src/app/views.py", "old_string": "return None",
              "new_string": "return []"}),
    ("Bash", {"command": "pytest -q tests/test_views.py", "description": "Run the view tests"}),
    ("mcp__github__get_issue", {"owner": "example", "repo": "shop", "issue_number": 42}),
]


def registered(settings: dict[str, Any], event: str, tool: str | None) -> list[dict[str, Any]]:
    """The hook entries Claude Code would run for this event (and tool, for tool events)."""
    found = []
    for group in settings.get("hooks", {}).get(event, []):
        matcher = group.get("matcher", "")
        if tool is not None and matcher not in ("", "*") and not re.fullmatch(matcher, tool):
            continue
        found += [h for h in group.get("hooks", []) if h.get("type") == "command"]
    return found


def fire(settings: dict[str, Any], event: dict[str, Any]) -> int:
    hooks = registered(settings, event["hook_event_name"], event.get("tool_name"))
    payload = json.dumps(event).encode()
    for hook in hooks:
        argv = hook.get("args")
        if argv:
            command = [hook["command"], *argv] if hook.get("command") else list(argv)
            proc = subprocess.run(command, input=payload, capture_output=True, check=False)  # noqa: S603
        else:
            proc = subprocess.run(  # noqa: S602 (Claude Code runs command hooks through a shell)
                hook["command"], shell=True, input=payload, capture_output=True, check=False
            )
        if proc.returncode != 0 or proc.stderr:
            print(f"demo_events: hook said: {proc.stderr.decode(errors='replace').strip()}",
                  file=sys.stderr)
    return len(hooks)


def session(rng: random.Random, cwd: str) -> list[dict[str, Any]]:
    sid = str(uuid.UUID(int=rng.getrandbits(128)))
    base = {"session_id": sid, "transcript_path": f"{cwd}/.claude/{sid}.jsonl", "cwd": cwd,
            "permission_mode": "default"}
    events: list[dict[str, Any]] = [
        {**base, "hook_event_name": "SessionStart", "source": "startup"},
        {**base, "hook_event_name": "UserPromptSubmit", "prompt": "Make the views return lists."},
    ]
    invocations = rng.randint(2, 3)
    for n in range(invocations):
        agent = rng.choice(AGENTS)
        task_id = f"toolu_{rng.getrandbits(64):016x}"
        task_input = {"description": f"{agent} step", "prompt": "Do your part.",
                      "subagent_type": agent}
        events.append({**base, "hook_event_name": "PreToolUse", "tool_name": "Task",
                       "tool_input": task_input, "tool_use_id": task_id})
        for _ in range(rng.randint(2, 4)):
            tool, tool_input = rng.choice(TOOLS)
            use_id = f"toolu_{rng.getrandbits(64):016x}"
            pre = {**base, "hook_event_name": "PreToolUse", "tool_name": tool,
                   "tool_input": tool_input, "tool_use_id": use_id}
            events.append(pre)
            if rng.random() < 0.125:
                events.append({**pre, "hook_event_name": "PostToolUseFailure",
                               "error": "Command failed with exit code 1", "is_interrupt": False})
            else:
                events.append({**pre, "hook_event_name": "PostToolUse",
                               "tool_response": {"stdout": "ok", "stderr": "",
                                                 "interrupted": False}})
        if n == invocations - 1 and rng.random() < 0.5:
            break  # left running: SessionEnd interrupts it
        events.append({**base, "hook_event_name": "SubagentStop", "stop_hook_active": False})
        failed = rng.random() < 0.125
        events.append({**base, "hook_event_name": "PostToolUseFailure" if failed else "PostToolUse",
                       "tool_name": "Task", "tool_input": task_input, "tool_use_id": task_id,
                       **({"error": "Agent failed", "is_interrupt": False} if failed else
                          {"tool_response": {"totalDurationMs": rng.randint(20_000, 400_000),
                                             "totalTokens": rng.randint(5_000, 90_000),
                                             "totalToolUseCount": 4}})})
    events.append({**base, "hook_event_name": "Stop", "stop_hook_active": False})
    events.append({**base, "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"})
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help="sessions to play (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--settings", type=Path, default=Path.home() / ".claude" / "settings.json",
                        help="settings with the hooks (default ~/.claude/settings.json)")
    args = parser.parse_args(argv)
    try:
        settings = json.loads(args.settings.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"demo_events: cannot read {args.settings}: {exc}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)  # noqa: S311 (demo data, not secrets)
    events = runs = 0
    for _ in range(args.sessions):
        for event in session(rng, str(Path.home() / "shop")):
            runs += fire(settings, event)
            events += 1
    print(f"demo_events: {args.sessions} sessions, {events} events, {runs} hook runs")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
