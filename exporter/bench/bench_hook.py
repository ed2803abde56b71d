"""Whole-process latency of `agentmon hook`, one process per event, as Claude Code runs it.

Runs the installed console script N times over a realistic event mix (sessions, prompts,
built-in and MCP tool calls with Pre/Post pairs, a few failures, subagents via Task/Agent)
against a migrated database holding some history, and prints p50/p90/p99/max wall time per
event next to the floor, `python -c pass` with the same interpreter, plus the CPU time of each
process (user + sys), which shows the cost without the noise of other work on the machine.

    ../.venv/bin/python bench/bench_hook.py [-n 300] [--secrets] [--json FILE]

--secrets makes every fifth tool call carry credentials and config text (synthetic values), so
every redaction pattern is compiled and run in those processes.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import agentmon
from agentmon.hook.store import Store
from agentmon.schema.migrate import migrate

TOOLS = ["Read", "Bash", "Edit", "Grep", "Glob", "Write", "mcp__github__get_issue",
         "mcp__filesystem__read_file"]


# Synthetic credentials in the shapes agents handle: a token in a header, a URL password, a
# .env file, a key block. Not real secrets.
SECRET_COMMANDS = [
    "curl -H 'Authorization: Bearer ghp_4kQw8ZpR2mN7vX1cL9sT3yB6hJ0dF5gA2eU8' https://api.github.com/user",
    "psql postgres://app:Harbor2291!xQe@db:5432/app -c 'select 1' && mysql -u root -pMarble8812",
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY && aws s3 ls",
]
_KEY = "PRIVATE" + " KEY"
SECRET_CONTENT = (
    "# local settings\nDATABASE_URL=postgres://app:Quartz7713#pLm@localhost/app\n"
    "SECRET_KEY='x9Lm2Qv8Zr4Tn6Wp1Ks3Yb7Hd5Fg0Ja'\nSTRIPE_SECRET_KEY=sk_live_51Hx9Zq8Lm2Nv4Rt6Yw\n"
    # A synthetic key block, its markers assembled so no scanner takes this file for a real key.
    f"-----BEGIN OPENSSH {_KEY}-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n"
    f"-----END OPENSSH {_KEY}-----\n"
)


def tool_input(tool: str, i: int, secrets: bool = False) -> dict:
    if secrets and i % 5 == 0:
        if tool in ("Edit", "Write"):
            return {"file_path": f"/home/dev/project/.env.{i % 7}", "old_string": "DEBUG=1\n",
                    "new_string": SECRET_CONTENT}
        return {"command": SECRET_COMMANDS[i % len(SECRET_COMMANDS)], "description": "deploy"}
    if tool == "Bash":
        return {"command": f"pytest -q tests/test_{i % 40}.py", "description": "run tests"}
    if tool in ("Edit", "Write"):
        return {"file_path": f"/home/dev/project/src/module_{i % 50}.py",
                "old_string": "def f():\n    return 1\n" * 4,
                "new_string": "def f():\n    return 2\n" * 4}
    return {"file_path": f"/home/dev/project/src/module_{i % 50}.py", "pattern": "TODO"}


def event_mix(count: int, secrets: bool = False) -> list[dict]:
    """Events in a plausible order: sessions open, tools run in pairs, subagents start/stop."""
    events: list[dict] = []
    base = {"transcript_path": "/home/dev/.claude/projects/p/t.jsonl", "cwd": "/home/dev/p",
            "permission_mode": "default"}
    i = 0
    while len(events) < count:
        sid = f"bench-session-{i // 60}"
        step = i % 60
        i += 1
        if step == 0:
            events.append({**base, "hook_event_name": "SessionStart", "session_id": sid,
                           "source": "startup"})
            events.append({**base, "hook_event_name": "UserPromptSubmit", "session_id": sid,
                           "prompt": "Please fix the failing tests in the parser module."})
            continue
        if step % 20 == 1:
            tool, tid = ("Task" if step == 1 else "Agent"), f"toolu_task_{i}"
            ti = {"subagent_type": "code-reviewer", "description": "review",
                  "prompt": "Review the parser change for correctness. " * 5}
            events.append({**base, "hook_event_name": "PreToolUse", "session_id": sid,
                           "tool_name": tool, "tool_use_id": tid, "tool_input": ti})
            for k in range(3):
                name = TOOLS[(i + k) % len(TOOLS)]
                uid = f"toolu_{i}_{k}"
                common = {**base, "session_id": sid, "tool_name": name, "tool_use_id": uid,
                          "tool_input": tool_input(name, i, secrets),
                          "agent_type": "code-reviewer"}
                events.append({**common, "hook_event_name": "PreToolUse"})
                events.append({**common, "hook_event_name": "PostToolUse",
                               "tool_response": {"stdout": "ok\n" * 200, "exitCode": 0}})
            events.append({**base, "hook_event_name": "SubagentStop", "session_id": sid,
                           "stop_hook_active": False, "agent_type": "code-reviewer"})
            events.append({**base, "hook_event_name": "PostToolUse", "session_id": sid,
                           "tool_name": tool, "tool_use_id": tid, "tool_input": ti,
                           "tool_response": {"content": [{"type": "text", "text": "LGTM"}],
                                             "totalDurationMs": 48_000, "totalTokens": 9000}})
            continue
        name = TOOLS[i % len(TOOLS)]
        common = {**base, "session_id": sid, "tool_name": name, "tool_use_id": f"toolu_{i}",
                  "tool_input": tool_input(name, i, secrets)}
        events.append({**common, "hook_event_name": "PreToolUse"})
        if i % 19 == 0:
            events.append({**common, "hook_event_name": "PostToolUseFailure",
                           "error": "Command failed with exit code 1", "is_interrupt": False})
        else:
            events.append({**common, "hook_event_name": "PostToolUse",
                           "tool_response": {"stdout": "line of output\n" * 100}})
        if step == 59:
            events.append({**base, "hook_event_name": "Stop", "session_id": sid,
                           "stop_hook_active": False})
            events.append({**base, "hook_event_name": "SessionEnd", "session_id": sid,
                           "reason": "exit"})
    return events[:count]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def per_event(mix: list[dict], hook: list[tuple[float, float]],
              floor: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Wall p50/p99 per hook event name, beside the `python -c pass` runs made after each."""
    rows: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(e["hook_event_name"] for e in mix):
        picked = [i for i, e in enumerate(mix) if e["hook_event_name"] == name]
        mine = percentiles([hook[i][0] for i in picked])
        base = percentiles([floor[i][0] for i in picked])
        rows[name] = {"n": len(picked), "hook_p50": mine["p50"], "hook_p99": mine["p99"],
                      "pass_p50": base["p50"], "pass_p99": base["p99"]}
    return rows


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def timed(cmd: list[str], payload: bytes, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one process. CPU time barely depends on what else the machine runs."""
    cpu = cpu_ms()
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=payload, capture_output=True, env=env, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0 or proc.stderr:
        raise SystemExit(f"hook failed: rc={proc.returncode} {proc.stderr.decode()[:200]}")
    return elapsed, cpu_ms() - cpu


def prefill(db: Path, events: int) -> None:
    """History so the database is not empty: written in-process, one transaction per event."""
    from agentmon.schema.db import connect_writer

    conn = connect_writer(db)
    try:
        for event in event_mix(events):
            event = {**event, "session_id": "old-" + event["session_id"]}
            Store(conn, max_payload_bytes=16384).record(event)
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="events (processes), default 300")
    parser.add_argument("--prefill", type=int, default=5000,
                        help="history events written first, default 5000")
    parser.add_argument("--agentmon", default=None, help="console script (default: beside python)")
    parser.add_argument("--secrets", action="store_true",
                        help="every fifth tool call carries credentials to redact")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    # An installed wheel ships byte-compiled modules; a checkout under PYTHONDONTWRITEBYTECODE
    # would otherwise compile agentmon's sources in every process (~8 ms).
    compileall.compile_dir(os.path.dirname(agentmon.__file__), quiet=1)
    script = args.agentmon or str(Path(sys.executable).with_name("agentmon"))
    if not Path(script).exists():
        script = shutil.which("agentmon") or sys.exit("agentmon console script not found")
    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        db = Path(tmp) / "agent_workflow.db"
        migrate(db)
        prefill(db, args.prefill)
        env = {**os.environ, "AGENTMON_DB": str(db)}
        mix = event_mix(args.n, args.secrets)
        payloads = [json.dumps(e).encode() for e in mix]
        hook: list[tuple[float, float]] = []
        floor: list[tuple[float, float]] = []
        for payload in payloads:  # interleaved, so both see the same machine load
            hook.append(timed([script, "hook"], payload, env))
            floor.append(timed([sys.executable, "-c", "pass"], b"", env))
    result = {
        "events": args.n, "secrets": args.secrets, "script": script,
        "loadavg_1m": os.getloadavg()[0],
        "hook_ms": percentiles([w for w, _ in hook]),
        "python_pass_ms": percentiles([w for w, _ in floor]),
        "hook_cpu_ms": percentiles([c for _, c in hook]),
        "python_pass_cpu_ms": percentiles([c for _, c in floor]),
        "per_event": per_event(mix, hook, floor),
    }
    print(f"agentmon hook, {args.n} events{' (with secrets)' if args.secrets else ''}, one "
          f"process each; load average "
          f"{result['loadavg_1m']:.2f} on {os.cpu_count()} CPUs")
    print(f"{'':>6} {'hook wall':>10} {'pass wall':>10} {'hook cpu':>10} {'pass cpu':>10}   (ms)")
    for key in ("p50", "p90", "p99", "max", "mean"):
        cells = [result[name][key] for name in
                 ("hook_ms", "python_pass_ms", "hook_cpu_ms", "python_pass_cpu_ms")]
        print(f"{key:>6} " + " ".join(f"{cell:>10.1f}" for cell in cells))
    print(f"\nper event (wall ms; `pass` ran right after each):\n{'event':<20} {'n':>4}"
          f" {'hook p50':>9} {'hook p99':>9} {'pass p50':>9} {'pass p99':>9}")
    for name, row in result["per_event"].items():
        print(f"{name:<20} {row['n']:>4} {row['hook_p50']:>9.1f} {row['hook_p99']:>9.1f}"
              f" {row['pass_p50']:>9.1f} {row['pass_p99']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
