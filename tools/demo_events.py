#!/usr/bin/env python3
"""Play realistic Claude Code sessions through the hooks Claude Code would run for this user.

Runs as a Claude Code user on a host where the hooks role registered `agentmon hook`: reads the
hooks from the settings Claude Code reads on Linux (the managed /etc/claude-code/
managed-settings.json, then managed-settings.d/*.json in alphabetical order, then
~/.claude/settings.json; their hook lists add up), for every event finds the hooks registered
for it (matcher included) and runs each command the way Claude Code does (the event as JSON on
stdin; a `command` string through the shell, or the exec form `args`). Nothing here writes the
database itself.

    demo_events.py [--sessions N] [--seed S] [--settings PATH ...]

Each session: SessionStart, a prompt, two or three subagent invocations (Task) each with a few
tool calls (Read, Grep, Edit, Bash, an MCP tool; about one in eight fails), one invocation left
running when the session ends (so it becomes interrupted), Stop, SessionEnd. Subagent responses
carry usage, model and lines changed as Claude Code's Agent tool reports them; the main thread's
transcript (JSON lines with assistant messages and their usage) is written where the events say,
for the Stop hook to read. The first session also has an API error (StopFailure) and a
permission denial; later ones now and then.
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


MANAGED = Path("/etc/claude-code")


def settings_files(home: Path, managed: Path = MANAGED) -> list[Path]:
    """The settings files Claude Code reads for hooks, in its order, those that exist."""
    files = [managed / "managed-settings.json",
             *sorted(p for p in (managed / "managed-settings.d").glob("*.json")
                     if not p.name.startswith(".")),
             home / ".claude" / "settings.json"]
    return [p for p in files if p.is_file()]


def merged_hooks(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One settings object whose hook lists are every document's, one after the other."""
    hooks: dict[str, list[Any]] = {}
    for doc in documents:
        for event, entries in (doc.get("hooks") or {}).items():
            hooks.setdefault(event, []).extend(entries or [])
    return {"hooks": hooks}


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


MAIN_MODEL = "claude-opus-4-1-20250805"
AGENT_MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]


def usage(rng: random.Random) -> dict[str, int]:
    return {"input_tokens": rng.randint(5, 400), "output_tokens": rng.randint(50, 3000),
            "cache_read_input_tokens": rng.randint(5_000, 60_000),
            "cache_creation_input_tokens": rng.randint(0, 4_000)}


def transcript(rng: random.Random, sid: str, turns: int) -> str:
    """A main-thread transcript: a user line, then assistant messages, the first streamed over
    two lines (same message id and request id), as Claude Code writes them."""
    lines = [{"type": "user", "sessionId": sid, "isSidechain": False,
              "message": {"role": "user", "content": "Make the views return lists."}}]
    for n in range(turns):
        message = {"id": f"msg_{rng.getrandbits(64):016x}", "model": MAIN_MODEL,
                   "role": "assistant", "content": [{"type": "text", "text": "Working on it."}],
                   "usage": usage(rng)}
        entry = {"type": "assistant", "sessionId": sid, "isSidechain": False,
                 "requestId": f"req_{rng.getrandbits(64):016x}", "message": message}
        lines.append(entry)
        if n == 0:
            lines.append(entry)
    return "".join(json.dumps(line) + "\n" for line in lines)


def session(rng: random.Random, cwd: str, first: bool = False) -> list[dict[str, Any]]:
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
                          {"tool_response": {
                              "status": "completed", "agentId": f"{rng.getrandbits(64):016x}",
                              "agentType": agent, "prompt": "Do your part.",
                              "content": [{"type": "text", "text": "Done."}],
                              "resolvedModel": rng.choice(AGENT_MODELS),
                              "totalDurationMs": rng.randint(20_000, 400_000),
                              "totalTokens": rng.randint(5_000, 90_000),
                              "totalToolUseCount": 4, "usage": usage(rng),
                              "toolStats": {"readCount": 1, "searchCount": 1, "bashCount": 1,
                                            "editFileCount": 1,
                                            "linesAdded": rng.randint(0, 120),
                                            "linesRemoved": rng.randint(0, 40),
                                            "otherToolCount": 0}}})})
    if first or rng.random() < 0.2:
        events.append({**base, "hook_event_name": "PermissionDenied", "tool_name": "Bash",
                       "tool_input": {"command": "curl https://example.invalid"},
                       "tool_use_id": f"toolu_{rng.getrandbits(64):016x}",
                       "reason": "denied by the auto mode classifier"})
    if first or rng.random() < 0.2:
        events.append({**base, "hook_event_name": "StopFailure", "error": "rate_limit",
                       "error_details": "429 Too Many Requests"})
    events.append({**base, "hook_event_name": "Stop", "stop_hook_active": False})
    events.append({**base, "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"})
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help="sessions to play (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--settings", type=Path, action="append",
                        help="settings file with the hooks, repeatable (default: the managed"
                             " settings and ~/.claude/settings.json, as Claude Code reads them)")
    args = parser.parse_args(argv)
    files = args.settings or settings_files(Path.home())
    try:
        settings = merged_hooks([json.loads(p.read_text(encoding="utf-8")) for p in files])
    except (OSError, ValueError) as exc:
        print(f"demo_events: cannot read the settings ({exc})", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)  # noqa: S311 (demo data, not secrets)
    events = runs = 0
    for n in range(args.sessions):
        played = session(rng, str(Path.home() / "shop"), first=n == 0)
        path = Path(played[0]["transcript_path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(transcript(rng, played[0]["session_id"], rng.randint(2, 5)),
                        encoding="utf-8")
        for event in played:
            runs += fire(settings, event)
            events += 1
    print(f"demo_events: {args.sessions} sessions, {events} events, {runs} hook runs")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
