"""Whole-process latency of `agentmon hook`, one process per event, as Claude Code runs it.

Runs the installed console script over a realistic event mix (sessions, prompts, built-in and
MCP tool calls with Pre/Post pairs, a few failures, subagents via Task/Agent) in the two ways
the hook can store an event, side by side and interleaved (each event: direct, socket, then
`python -c pass`, so the three see the same machine load):

- direct: `agentmon hook --db` writes a migrated database holding some history itself (what
  the roles registered before the ingest service);
- socket: `agentmon hook --socket` hands the event to `agentmon ingest` (its own process, kept
  running, on a copy of the same database), which stores it and answers.

Prints p50/p90/p99/max wall time per event for both next to the floor, `python -c pass` with
the same interpreter, plus the CPU time of each hook process (user + sys; the ingest service's
own CPU is shown per event apart), which shows the cost without the noise of other work on the
machine. Both databases must end with the same rows (checked).

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


def ingest_cpu_ms(pid: int) -> float:
    """User + system CPU time of a running process (the ingest service), in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def start_ingest(script: str, db: Path, sock: Path) -> subprocess.Popen[bytes]:
    from agentmon.ingest import client, protocol

    proc = subprocess.Popen([script, "ingest", "--db", str(db), "--socket", str(sock),
                             "--log.level", "warning"])
    deadline = time.monotonic() + 60
    while True:
        try:
            ok, _retry, why = client.exchange(str(sock), protocol.header("ping"), timeout=5)
        except client.Unreachable:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("agentmon ingest did not start") from None
            time.sleep(0.05)
            continue
        if not ok:
            raise SystemExit(f"agentmon ingest cannot store: {why}")
        return proc


def same_rows(first: Path, second: Path) -> bool:
    import sqlite3

    counts = []
    for db in (first, second):
        conn = sqlite3.connect(db)
        counts.append([conn.execute(f"SELECT count(*), max(id) FROM {t}").fetchone()  # noqa: S608
                       for t in ("agent_invocations", "agent_tool_uses", "agent_usage")]
                      + [conn.execute("SELECT count(*) FROM sessions").fetchone()])
        conn.close()
    return counts[0] == counts[1]


MODES = ("direct", "socket")


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
        direct_db = Path(tmp) / "direct" / "agent_workflow.db"
        socket_db = Path(tmp) / "socket" / "agent_workflow.db"
        direct_db.parent.mkdir()
        socket_db.parent.mkdir()
        migrate(direct_db)
        prefill(direct_db, args.prefill)
        shutil.copyfile(direct_db, socket_db)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMON_")}
        env["XDG_STATE_HOME"] = str(Path(tmp) / "state")  # a spool of its own, if ever needed
        sock = Path(tmp) / "ingest.sock"
        ingest = start_ingest(script, socket_db, sock)
        commands = {"direct": [script, "hook", "--db", str(direct_db)],
                    "socket": [script, "hook", "--socket", str(sock)]}
        mix = event_mix(args.n, args.secrets)
        payloads = [json.dumps(e).encode() for e in mix]
        runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        floor: list[tuple[float, float]] = []
        service_cpu = ingest_cpu_ms(ingest.pid)
        try:
            for payload in payloads:  # interleaved, so all three see the same machine load
                for mode in MODES:
                    runs[mode].append(timed(commands[mode], payload, env))
                floor.append(timed([sys.executable, "-c", "pass"], b"", env))
            service_cpu = ingest_cpu_ms(ingest.pid) - service_cpu
        finally:
            ingest.terminate()
            ingest.wait(60)
        if not same_rows(direct_db, socket_db):
            raise SystemExit("the two databases differ: an event was not stored")
    result: dict[str, object] = {
        "events": args.n, "secrets": args.secrets, "script": script,
        "loadavg_1m": os.getloadavg()[0],
        **{f"{mode}_ms": percentiles([w for w, _ in runs[mode]]) for mode in MODES},
        "python_pass_ms": percentiles([w for w, _ in floor]),
        **{f"{mode}_cpu_ms": percentiles([c for _, c in runs[mode]]) for mode in MODES},
        "python_pass_cpu_ms": percentiles([c for _, c in floor]),
        "ingest_cpu_ms_per_event": service_cpu / args.n,
        "per_event": {mode: per_event(mix, runs[mode], floor) for mode in MODES},
    }
    print(f"agentmon hook, {args.n} events{' (with secrets)' if args.secrets else ''}, one "
          f"process each, direct (--db) and through the ingest socket (--socket); load average "
          f"{result['loadavg_1m']:.2f} on {os.cpu_count()} CPUs")
    columns = ("direct_ms", "socket_ms", "python_pass_ms", "direct_cpu_ms", "socket_cpu_ms",
               "python_pass_cpu_ms")
    print(f"{'':>6} {'direct':>8} {'socket':>8} {'pass':>8} {'direct':>8} {'socket':>8}"
          f" {'pass':>8}\n{'':>6} {'wall':>8} {'wall':>8} {'wall':>8} {'cpu':>8} {'cpu':>8}"
          f" {'cpu':>8}   (ms)")
    for key in ("p50", "p90", "p99", "max", "mean"):
        cells = [result[name][key] for name in columns]  # type: ignore[index]
        print(f"{key:>6} " + " ".join(f"{cell:>8.1f}" for cell in cells))
    print(f"ingest service (its own process): {result['ingest_cpu_ms_per_event']:.2f} ms CPU"
          " per event, beside the socket hook's own")
    print(f"\nper event (wall ms; `pass` ran right after each):\n{'event':<20} {'n':>4}"
          f" {'direct p50':>10} {'p99':>6} {'socket p50':>10} {'p99':>6} {'pass p50':>9}"
          f" {'p99':>6}")
    by_mode = result["per_event"]
    for name, row in by_mode["direct"].items():  # type: ignore[index]
        other = by_mode["socket"][name]  # type: ignore[index]
        print(f"{name:<20} {row['n']:>4} {row['hook_p50']:>10.1f} {row['hook_p99']:>6.1f}"
              f" {other['hook_p50']:>10.1f} {other['hook_p99']:>6.1f} {row['pass_p50']:>9.1f}"
              f" {row['pass_p99']:>6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
