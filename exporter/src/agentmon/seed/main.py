"""``agentmon seed``: fast, realistic synthetic history for demos, tests and benchmarks.

The shape follows what the hooks record in real use: sessions of several subagent
invocations (a roster of agents in phases), each running a few tool calls (built-in tools and
``mcp__server__tool`` ones) with log-normal durations, about 5% of both failing, and the newest
sessions still active with their last invocation and tool call running. The rows depend only
on ``--seed``, ``--end`` and the ids already present (when appending), not on ``--jobs``.

Speed: per-row values are picked from pools drawn once (``getrandbits``, no float maths per
row) and timestamps are assembled from cached day and second strings. The work is cut into
shards of whole sessions whose ids and sequence numbers are known up front, so worker
processes generate shards in parallel, each into an in-memory SQLite database; the loader
``deserialize``s each one into an attached schema and copies it with ``INSERT ... SELECT``,
all in one write transaction. The big indexes are built after the load. A new file is loaded
without a journal (if the load fails the file is deleted); an existing one keeps its journal,
so a failure rolls back.

With ``--schema agentmon`` the database is first migrated to the latest version; the
change-tracking and removal triggers are dropped for the load and re-created before the commit.
The seeder writes ``agentmon_seq``/``agentmon_created_seq`` itself, with exactly the values the
triggers would have given the same events written one by one (session start, each
invocation's insert, each tool call's insert and completion, each invocation's completion,
session end), so the result cannot be told apart from a database the hook wrote. With
``--schema original`` it writes the original project's DDL (user_version 0) and its local-time
timestamps.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

from agentmon.schema import migrations, original
from agentmon.schema.db import connect_writer, has_table, schema_version, table_columns
from agentmon.schema.files import SIDE_FILES
from agentmon.schema.migrate import ensure_latest

# ---------------------------------------------------------------- the synthetic world

# (agent, phase, median seconds the agent itself works besides its tool calls, weight)
AGENTS: tuple[tuple[str, str, float, int], ...] = (
    ("requirements-analyst", "requirements", 45, 4),
    ("context-analyzer", "requirements", 30, 5),
    ("planner", "planning", 60, 8),
    ("architect", "planning", 120, 5),
    ("task-planner", "planning", 40, 4),
    ("developer", "development", 240, 14),
    ("backend-developer", "development", 200, 9),
    ("frontend-developer", "development", 180, 7),
    ("database-developer", "development", 150, 3),
    ("debugger", "development", 210, 6),
    ("tester", "testing", 150, 8),
    ("test-developer", "testing", 160, 5),
    ("reviewer", "review", 90, 8),
    ("security-auditor", "review", 150, 4),
    ("performance-reviewer", "review", 120, 2),
    ("documenter", "documentation", 70, 5),
    ("changelog-writer", "documentation", 25, 2),
    ("pr-creator", "documentation", 20, 3),
)

# (tool, median seconds, log-normal sigma, weight)
TOOLS: tuple[tuple[str, float, float, int], ...] = (
    ("Read", 0.04, 0.8, 300),
    ("Edit", 0.12, 0.7, 110),
    ("MultiEdit", 0.2, 0.7, 15),
    ("Write", 0.08, 0.7, 45),
    ("Bash", 2.5, 1.4, 170),
    ("Grep", 0.25, 0.9, 90),
    ("Glob", 0.08, 0.8, 55),
    ("LS", 0.03, 0.6, 15),
    ("TodoWrite", 0.02, 0.5, 45),
    ("WebFetch", 3.0, 0.9, 20),
    ("WebSearch", 4.0, 0.6, 12),
    ("NotebookEdit", 0.3, 0.6, 3),
    ("mcp__github__get_issue", 0.9, 0.6, 12),
    ("mcp__github__create_pull_request", 2.2, 0.5, 4),
    ("mcp__github__list_commits", 1.0, 0.6, 5),
    ("mcp__context7__get-library-docs", 2.8, 0.7, 10),
    ("mcp__playwright__browser_navigate", 3.5, 0.8, 6),
    ("mcp__playwright__browser_snapshot", 1.2, 0.7, 6),
    ("mcp__postgres__query", 0.6, 1.0, 6),
    ("mcp__sentry__get_issue_details", 1.5, 0.6, 3),
)

MODELS: tuple[tuple[str, int], ...] = (
    ("claude-sonnet-4-5", 70), ("claude-opus-4-1", 18), ("claude-haiku-4-5", 12),
)

ERRORS: dict[str, tuple[str, ...]] = {
    "Bash": ("Command failed with exit code 1", "Command failed with exit code 2",
             "Command timed out after 120000ms", "npm ERR! Test failed. See above for details."),
    "Read": ("File does not exist.", "File content exceeds maximum allowed size"),
    "Edit": ("String to replace not found in file.",
             "File has been modified since read, either by the user or by a linter"),
    "WebFetch": ("Request failed with status code 404", "Request timed out"),
    "*": ("Tool use was interrupted by the user", "Permission to use this tool was denied",
          "MCP error -32603: internal error", "Input validation error"),
}
INVOCATION_ERRORS = (
    "Agent exceeded its maximum number of turns", "Request was aborted",
    "API Error: 529 overloaded_error", "Subagent failed: a required tool was denied",
)

PROJECTS = ("checkout-service", "web-frontend", "billing-api", "infra", "data-pipeline",
            "mobile-app", "auth-service", "docs-site", "search-indexer", "ml-platform")
TOPICS = ("rate limiting", "the login flow", "pagination", "CSV export", "retry logic",
          "the settings page", "input validation", "caching", "the audit log", "webhooks",
          "database migrations", "error handling", "the search endpoint", "feature flags",
          "session expiry", "file uploads")
VERBS = {"requirements": "Clarify the requirements for", "planning": "Plan the work for",
         "development": "Implement", "testing": "Write and run tests for",
         "review": "Review the changes to", "documentation": "Document"}

MEAN_INVOCATIONS_PER_SESSION = 8
MAX_INVOCATIONS_PER_SESSION = 60
SHARD_INVOCATIONS = 8_192  # a unit of parallel work: whole sessions, about 33k rows
POOL_BITS = 12  # pools of 4096 pre-drawn values, picked with getrandbits
LIVE_SESSIONS_PER = 5_000  # one session in this many (and at least one) is still running


# ---------------------------------------------------------------- options and results


@dataclass(frozen=True)
class SeedOptions:
    invocations: int
    tools_per_invocation: int = 3
    days: float = 90.0
    seed: int = 1
    end: datetime | None = None
    schema: str = "agentmon"
    error_rate: float = 0.05
    sessions_columns: int = 6
    append: bool = False
    jobs: int = 1
    usage: bool = False  # also usage facts (tokens, lines, API errors, denials) per _USAGE_SQL


@dataclass
class SeedResult:
    db: str
    schema: str = "agentmon"
    sessions: int = 0
    invocations: int = 0
    tool_uses: int = 0
    running: int = 0
    seconds: float = 0.0
    sequence: int | None = None
    jobs: int = 1
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.sessions + self.invocations + self.tool_uses

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": self.rows,
                "rows_per_second": round(self.rows_per_second)}


class SeedError(RuntimeError):
    """An expected fault (bad target file, bad option): reported as one line."""


# ---------------------------------------------------------------- pools


def _weighted_table(weights: Sequence[int], bits: int = 10) -> list[int]:
    """2**bits indexes, index i appearing in proportion to weights[i]: pick with getrandbits."""
    size = 1 << bits
    total = sum(weights)
    table: list[int] = []
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w * size / total
        table.extend([i] * (round(acc) - len(table)))
    table.extend([len(weights) - 1] * (size - len(table)))
    return table


def _lognormal_ms(rng: random.Random, median_s: float, sigma: float, cap_s: float) -> list[int]:
    mu = math.log(median_s * 1000)
    cap = int(cap_s * 1000)
    return [min(cap, max(1, round(rng.lognormvariate(mu, sigma)))) for _ in range(1 << POOL_BITS)]


# Tool mix per phase: developers edit, reviewers read and grep, testers run commands.
PHASE_TOOL_BIAS: dict[str, dict[str, float]] = {
    "requirements": {"WebFetch": 3.0, "WebSearch": 3.0, "mcp__github__get_issue": 4.0},
    "planning": {"TodoWrite": 4.0, "Glob": 1.5, "Bash": 0.4},
    "development": {"Edit": 2.0, "MultiEdit": 2.0, "Write": 1.6, "Bash": 1.3},
    "testing": {"Bash": 2.5, "Write": 1.2},
    "review": {"Read": 1.5, "Grep": 2.0, "Edit": 0.3, "Write": 0.2},
    "documentation": {"Write": 2.5, "Edit": 1.5, "Bash": 0.3},
}


def _tool_input(tool: str, i: int) -> dict[str, Any]:
    path = f"/home/dev/src/{PROJECTS[i % len(PROJECTS)]}/src/module_{i}.py"
    if tool in ("Read", "Write", "Edit", "MultiEdit", "NotebookEdit"):
        return {"file_path": path}
    if tool == "Bash":
        commands = ("pytest -q", "npm test", "git status", "make lint", "ls -la", "git diff")
        return {"command": commands[i % len(commands)], "description": "run a check"}
    if tool in ("Grep", "Glob", "LS"):
        return {"pattern": f"def handler_{i}", "path": path.rsplit("/", 2)[0]}
    if tool in ("WebFetch", "WebSearch"):
        return {"url": f"https://docs.example.org/page/{i}", "prompt": "summarize"}
    if tool == "TodoWrite":
        return {"todos": [{"content": f"step {i}", "status": "pending"}]}
    return {"query": f"item {i}"}


def _tool_output(tool: str, i: int) -> dict[str, Any]:
    if tool == "Bash":
        return {"stdout": f"{i + 3} passed in {i / 7:.2f}s", "stderr": "", "interrupted": False}
    if tool == "Read":
        return {"type": "text", "file": {"numLines": 40 + 13 * i}}
    return {"success": True}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Pools:
    """Everything drawn once per seed: pick tables, duration pools, payload texts, clock."""

    def __init__(self, seed: int, original: bool) -> None:
        rng = random.Random(f"agentmon-seed/{seed}/pools")  # noqa: S311 - synthetic data
        self.agent_table = _weighted_table([a[3] for a in AGENTS])
        self.model_table = _weighted_table([m[1] for m in MODELS])
        self.tool_tables = [
            _weighted_table([max(1, round(t[3] * PHASE_TOOL_BIAS[a[1]].get(t[0], 1.0)))
                             for t in TOOLS])
            for a in AGENTS
        ]
        self.agent_work = [_lognormal_ms(rng, a[2], 0.8, 4 * 3600) for a in AGENTS]
        self.tool_durations = [_lognormal_ms(rng, t[1], t[2], 1800) for t in TOOLS]
        self.gap_tool = _lognormal_ms(rng, 3.0, 0.7, 600)  # model turn between tool calls
        self.gap_invocation = _lognormal_ms(rng, 25.0, 1.0, 3600)  # main agent between agents
        self.prompts: list[list[tuple[str, str, str | None]]] = []
        for name, phase, _, _ in AGENTS:
            options = []
            for i in range(64):
                topic = TOPICS[i % len(TOPICS)]
                ticket = f"{('PROJ', 'WEB', 'OPS', 'DATA')[i % 4]}-{rng.randrange(100, 9999)}"
                prompt = f"{VERBS[phase]} {topic} ({ticket}). Follow the repository conventions."
                raw = _compact({"description": f"{VERBS[phase]} {topic}", "prompt": prompt,
                                "subagent_type": name})
                options.append((prompt, raw, ticket if i % 3 else None))
            self.prompts.append(options)
        self.tool_inputs = [[_compact(_tool_input(t[0], i)) for i in range(64)] for t in TOOLS]
        self.tool_outputs = [[_compact(_tool_output(t[0], i)) for i in range(16)] for t in TOOLS]
        self.tool_errors = [ERRORS.get(t[0], ()) + ERRORS["*"] for t in TOOLS]
        self.cwds = [f"/home/dev/src/{p}" for p in PROJECTS]
        self.metadata = [_compact({"source": s, "permission_mode": m})
                         for s in ("startup", "resume", "clear") for m in ("default", "plan")]
        # ISO-8601 text from epoch milliseconds, assembled from cached pieces.
        self.days: dict[int, str] = {}
        self.hms = [f"T{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60)
                    for s in range(60)]
        if original:
            # datetime.now().isoformat(): local time with microseconds and no offset
            self.frac = [f".{ms:03d}{(ms * 7919) % 1000:03d}" for ms in range(1000)]
        else:
            self.frac = [f".{ms:03d}+00:00" for ms in range(1000)]

    def day(self, d: int) -> str:
        text = self.days.get(d)
        if text is None:
            text = self.days[d] = (datetime(1970, 1, 1) + timedelta(days=d)).strftime("%Y-%m-%d")
        return text


_POOLS: dict[tuple[int, bool], _Pools] = {}


def _pools(seed: int, original: bool) -> _Pools:
    key = (seed, original)
    if key not in _POOLS:
        _POOLS.clear()
        _POOLS[key] = _Pools(seed, original)
    return _POOLS[key]


# ---------------------------------------------------------------- shards


@dataclass(frozen=True)
class _Frame:
    """What every shard shares."""

    opts: SeedOptions
    salt: str
    n_sessions: int
    live_from: int  # sessions from this global index on are still running
    t_start: int  # epoch ms
    t_end: int
    columns: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # sessions, inv, tools
    tables: tuple[str, ...] = ()  # the target's CREATE TABLE statements, for staging
    indexes: tuple[str, ...] = ()  # and the indexes it keeps during the load


@dataclass(frozen=True)
class _Shard:
    number: int
    sizes: tuple[int, ...]  # invocations per session
    first_session: int
    first_inv_id: int
    first_tool_id: int
    first_seq: int


def _seq_used(sessions: int, invocations: int, tool_uses: int, live: int, k: int) -> int:
    """Sequence values the triggers would consume for these rows.

    A finished session takes 1 at its start and 1 at its end; an invocation and a tool call
    1 at insert and 1 at completion. A live session has not ended, and its last invocation and
    (when it has any) its last tool call are still running.
    """
    return 2 * (sessions + invocations + tool_uses) - live * (3 if k else 2)


def _plan(opts: SeedOptions, first_inv_id: int, first_tool_id: int, first_seq: int,
          columns: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
          ) -> tuple[_Frame, list[_Shard], int]:
    """Cut the work into shards with known ids and sequence ranges; return the final seq."""
    salt = f"{opts.seed}/{first_inv_id}"
    rng = random.Random(f"agentmon-seed/{salt}/plan")  # noqa: S311
    sizes: list[int] = []
    left = opts.invocations
    scale = MEAN_INVOCATIONS_PER_SESSION - 1
    while left > 0:  # geometric around the mean
        size = min(left, MAX_INVOCATIONS_PER_SESSION, 1 + int(rng.expovariate(1.0) * scale))
        sizes.append(size)
        left -= size
    n_sessions = len(sizes)
    live_from = n_sessions - min(n_sessions, 1 + n_sessions // LIVE_SESSIONS_PER)
    end = opts.end or datetime.now(UTC)
    t_end = int(end.timestamp() * 1000)
    frame = _Frame(opts, salt, n_sessions, live_from, t_end - int(opts.days * 86_400_000),
                   t_end, columns)
    k = opts.tools_per_invocation
    shards = []
    inv_id, tool_id, seq, start = first_inv_id, first_tool_id, first_seq, 0
    while start < n_sessions:
        stop, count = start, 0
        while stop < n_sessions and count < SHARD_INVOCATIONS:
            count += sizes[stop]
            stop += 1
        shards.append(_Shard(len(shards), tuple(sizes[start:stop]), start, inv_id, tool_id, seq))
        live = max(0, stop - max(start, live_from))
        seq += _seq_used(stop - start, count, count * k, live, k)
        inv_id += count
        tool_id += count * k
        start = stop
    return frame, shards, seq


def _generate(frame: _Frame, shard: _Shard) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                      list[tuple[Any, ...]], int]:
    """The rows of one shard: (sessions, invocations, tool_uses, running rows)."""
    opts = frame.opts
    tracked = opts.schema == "agentmon"
    pools = _pools(opts.seed, not tracked)
    rng = random.Random(f"agentmon-seed/{frame.salt}/{shard.number}")  # noqa: S311
    bits = rng.getrandbits
    day, hms, frac = pools.day, pools.hms, pools.frac
    agent_table, model_table, tool_tables = pools.agent_table, pools.model_table, pools.tool_tables
    tool_durations, tool_inputs, tool_outputs = (
        pools.tool_durations, pools.tool_inputs, pools.tool_outputs)
    tool_errors, prompts = pools.tool_errors, pools.prompts
    agent_work, gap_tool, gap_inv = pools.agent_work, pools.gap_tool, pools.gap_invocation
    cwds, metadata = pools.cwds, pools.metadata
    six = len(frame.columns[0]) - (2 if tracked else 0) == 6
    k = opts.tools_per_invocation
    spread = max(0, k - 1)
    err_at = round(opts.error_rate * (1 << 16))
    running_status = "running" if tracked else "started"
    event_type = "PreToolUse" if tracked else "pre_invocation"
    tu_prefix = f"toolu_01{opts.seed & 0xFFFFFFFF:08x}"
    slot = (frame.t_end - frame.t_start) / frame.n_sessions
    pb = POOL_BITS
    tool_names = [t[0] for t in TOOLS]
    day_start = -1  # first second of the day in `prefix`, the last day formatted
    prefix = ""

    def ts(t_ms: int) -> str:
        nonlocal day_start, prefix
        s, ms = divmod(t_ms, 1000)
        sod = s - day_start
        if not 0 <= sod < 86400:
            day_start = s - s % 86400
            prefix = day(day_start // 86400)
            sod = s - day_start
        return prefix + hms[sod] + frac[ms]

    sessions: list[tuple[Any, ...]] = []
    invocations: list[tuple[Any, ...]] = []
    tool_uses: list[tuple[Any, ...]] = []
    running = 0
    seq = shard.first_seq
    inv_id = shard.first_inv_id
    tool_id = shard.first_tool_id
    # Tool calls per invocation vary around k; invocations are paired so that each pair
    # makes 2k and the shard exactly count * k (an unpaired last one gets k).
    pending: int | None = None
    left = sum(shard.sizes)
    for g, size in enumerate(shard.sizes, start=shard.first_session):
        live = g >= frame.live_from
        # The session on a relative time line (ms from its start); placed afterwards.
        plan = []
        t = 0
        for _ in range(size):
            a = agent_table[bits(10)]
            t += gap_inv[bits(pb)]
            inv_start = t
            left -= 1
            if pending is not None:
                n_tools, pending = k + pending, None
            elif spread and left:
                delta = bits(8) % (2 * spread + 1) - spread
                n_tools, pending = k + delta, -delta
            else:
                n_tools = k
            table = tool_tables[a]
            durations_by_tool = tool_durations
            tools = []
            for _ in range(n_tools):
                ti = table[bits(10)]
                t += gap_tool[bits(pb)]
                dur = durations_by_tool[ti][bits(pb)]
                tools.append((ti, t, dur))
                t += dur
            t += agent_work[a][bits(pb)]
            plan.append((a, inv_start, t, tools))
        session_len = t + gap_tool[bits(pb)]
        if live:
            # "now" falls inside the last tool call (or in the agent's own work).
            _, inv_start, inv_end, tools = plan[-1]
            cut = tools[-1][1] + tools[-1][2] // 2 if tools else (inv_start + inv_end) // 2
            base = frame.t_end - cut
        else:
            base = frame.t_start + int((g + rng.random()) * slot)
            base = min(base, frame.t_end - 1000 - session_len)
        sid = f"{bits(128):032x}"
        sid = f"{sid[:8]}-{sid[8:12]}-4{sid[13:16]}-a{sid[17:20]}-{sid[20:]}"
        seq += 1
        created = seq
        last = size - 1
        for j, (a, inv_start, inv_end, tools) in enumerate(plan):
            inv_running = live and j == last
            name, phase = AGENTS[a][0], AGENTS[a][1]
            prompt, raw_input, ticket = prompts[a][bits(6)]
            start_text = ts(base + inv_start)
            seq += 1
            inv_seq = seq
            n = len(tools)
            for i, (ti, t0, dur) in enumerate(tools):
                seq += 1
                t_text = ts(base + t0)
                r = bits(26)  # input 6 bits | failure 16 bits | output 4 bits
                if inv_running and i == n - 1:
                    status, error, output, end_text, dur_s = running_status, None, None, None, None
                    running += 1
                else:
                    seq += 1
                    end_text = ts(base + t0 + dur)
                    dur_s = dur / 1000
                    fail = (r >> 6) & 0xFFFF
                    if fail < err_at:
                        errors = tool_errors[ti]
                        status, error, output = "error", errors[fail % len(errors)], None
                    else:
                        status, error, output = "completed", None, tool_outputs[ti][r >> 22]
                if tracked:
                    tool_uses.append((
                        tool_id, t_text, sid, name, inv_id, tool_names[ti], tool_inputs[ti][r & 63],
                        output, dur_s, status, error, i + 1, t_text, end_text,
                        f"{tu_prefix}b{tool_id:013x}", seq))
                else:
                    tool_uses.append((
                        tool_id, t_text, sid, name, inv_id, tool_names[ti], tool_inputs[ti][r & 63],
                        output, dur_s, status, error, i + 1, t_text, end_text))
                tool_id += 1
            if inv_running:
                status, error, end_text, dur_s, summary, raw_output = (
                    running_status, None, None, None, None, None)
                running += 1
            else:
                seq += 1
                inv_seq = seq
                dur_ms = inv_end - inv_start
                end_text = ts(base + inv_end)
                dur_s = dur_ms / 1000 if tracked or bits(2) else None  # original: often empty
                raw_output = (f'{{"totalDurationMs":{dur_ms},"totalTokens":{2000 + bits(15)},'
                              f'"totalToolUseCount":{n}}}')
                if bits(16) < err_at:
                    status, error, summary = "error", INVOCATION_ERRORS[bits(2)], None
                else:
                    status, error, summary = "completed", None, f"Done: {n} tool calls"
            model = MODELS[model_table[bits(10)]][0]
            if tracked:
                invocations.append((
                    inv_id, start_text, sid, event_type, phase, name, phase, model, prompt, "main",
                    ticket, start_text, end_text, dur_s, status, error, summary, raw_input,
                    raw_output, f"{tu_prefix}a{inv_id:013x}", inv_seq))
            else:
                invocations.append((
                    inv_id, start_text, sid, event_type, phase, name, phase, model, prompt, "main",
                    ticket, start_text, end_text, dur_s, status, error, summary, raw_input,
                    raw_output))
            inv_id += 1
        if live:
            s_end, s_status, s_seq = None, "active", created
        else:
            seq += 1
            s_end, s_status, s_seq = ts(base + session_len), "completed", seq
        row: tuple[Any, ...] = (sid, ts(base), s_end, s_status)
        if six:
            row += (cwds[bits(8) % len(cwds)], metadata[bits(8) % len(metadata)])
        if tracked:
            row += (s_seq, created)
        sessions.append(row)
    return sessions, invocations, tool_uses, running


@contextmanager
def _no_gc() -> Iterator[None]:
    """Millions of short-lived tuples and no reference cycles: the cyclic GC would only rescan."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stage(frame: _Frame, shard: _Shard) -> tuple[bytes, int, int, int, int]:
    """Worker: one shard as a serialized in-memory database (plus its row counts)."""
    with _no_gc():
        sessions, invocations, tool_uses, running = _generate(frame, shard)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl, table, columns, rows in zip(frame.tables, DATA_TABLES, frame.columns,
                                             (sessions, invocations, tool_uses), strict=True):
            # The target's own table, so the copy is a raw record transfer; without
            # AUTOINCREMENT, which would rewrite sqlite_sequence after every row here.
            conn.execute(ddl.replace(" AUTOINCREMENT", ""))
            conn.executemany(_insert_sql(table, columns), rows)
        for ddl in frame.indexes:
            conn.execute(ddl)
        conn.execute("COMMIT")
        data = conn.serialize()
    finally:
        conn.close()
    return data, len(sessions), len(invocations), len(tool_uses), running


# ---------------------------------------------------------------- the original project's DDL

DATA_TABLES = ("sessions", "agent_invocations", "agent_tool_uses")


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    # Names come from this module's constants, never from input.
    return (f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})")


# ---------------------------------------------------------------- loading


def _row_count(conn: sqlite3.Connection) -> int:
    total = 0
    for table in DATA_TABLES:
        if has_table(conn, table):
            total += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    return total


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    """The next id, above both max(id) and AUTOINCREMENT's high-water mark."""
    top = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # noqa: S608
    if has_table(conn, "sqlite_sequence"):
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        if row and row[0] is not None:
            top = max(top, int(row[0]))
    return int(top) + 1


def _open_new(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    # A brand-new file: no journal and no fsync during the load (on failure we delete it)
    # and a bigger page cache; nobody else may open it until we are done.
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   "cache_size = -65536"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _check_existing(conn: sqlite3.Connection, path: Path, opts: SeedOptions) -> None:
    try:
        version = schema_version(conn)
        rows = _row_count(conn)
    except sqlite3.DatabaseError as exc:
        raise SeedError(f"{path}: cannot read it as an SQLite database ({exc})") from exc
    if rows and not opts.append:
        raise SeedError(f"{path} already holds {rows:,} rows; pass --append to add to it, "
                        "or choose a new file")
    if opts.schema == "original" and version != 0:
        raise SeedError(f"{path} is at schema version {version}; --schema original writes only "
                        "to original (version 0) databases")
    if version > migrations.LATEST:
        raise SeedError(f"{path} is at schema version {version}, newer than this agentmon "
                        f"knows ({migrations.LATEST})")


def _prepare_schema(conn: sqlite3.Connection, path: Path, opts: SeedOptions) -> None:
    if opts.schema == "agentmon":
        # Through the migrate command's path: a file holding tables is backed up first.
        ensure_latest(conn, path)
        return
    conn.execute("BEGIN IMMEDIATE")
    for ddl in original.ddl(opts.sessions_columns):
        conn.execute(ddl)
    conn.execute("COMMIT")


def _data_indexes(conn: sqlite3.Connection, partial: bool) -> list[tuple[str, str]]:
    """The data tables' full (or partial) indexes: (name, CREATE INDEX statement).

    Full indexes are dropped before a big load and built after it: a sort of the finished
    table is cheaper than maintaining them row by row (measured; inserting row by row, even
    the partial ones are). The parallel loader keeps the partial ones, though: they are tiny
    (running rows) or keyed by values that grow from shard to shard (sequence numbers,
    tool_use_id), so each shard's entries, sorted by its worker, are appended by the copy.
    """
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN ('sessions', 'agent_invocations', 'agent_tool_uses') ORDER BY rowid"
    ).fetchall()
    return [(str(name), str(sql)) for name, sql in rows
            if (" WHERE " in str(sql).upper()) == partial]


ProgressFn = Callable[[int, int, float], None]


def seed(path: str | Path, opts: SeedOptions, progress: ProgressFn | None = None) -> SeedResult:
    """Write synthetic history into ``path``; see the module docstring."""
    _validate(opts)
    path = Path(path)
    if not path.parent.is_dir():
        raise SeedError(f"folder {path.parent} does not exist")
    new_file = not path.exists() or path.stat().st_size == 0
    started = time.perf_counter()
    with _no_gc():
        result = _seed(path, opts, progress, new_file)
    result.seconds = time.perf_counter() - started
    return result


def _seed(path: Path, opts: SeedOptions, progress: ProgressFn | None,
          new_file: bool) -> SeedResult:
    if new_file:
        conn = _open_new(path)
    else:
        try:
            conn = connect_writer(path)
        except sqlite3.DatabaseError as exc:
            raise SeedError(f"{path}: cannot open it as an SQLite database ({exc})") from exc
    try:
        if not new_file:
            _check_existing(conn, path, opts)
        _prepare_schema(conn, path, opts)
        result = _load(conn, path, opts, progress, new_file)
        conn.close()
        if new_file and opts.schema == "agentmon":
            connect_writer(path).close()  # leave it in WAL mode, like every agentmon writer
    except BaseException:
        conn.close()
        if new_file:
            for suffix in ("", *SIDE_FILES):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise
    return result


STAGE = "agentmon_seed_stage"
Counts = tuple[int, int, int, int]  # sessions, invocations, tool uses, running rows


def _columns(conn: sqlite3.Connection, opts: SeedOptions,
             ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    present = set(table_columns(conn, "sessions"))  # 4 or 6 columns in original files
    sessions = tuple(c for c in original.SESSION_COLUMNS if c in present)
    if opts.schema == "agentmon":
        return ((*sessions, "agentmon_seq", "agentmon_created_seq"),
                (*original.INVOCATION_COLUMNS, "tool_use_id", "agentmon_seq"),
                (*original.TOOL_USE_COLUMNS, "tool_use_id", "agentmon_seq"))
    return sessions, original.INVOCATION_COLUMNS, original.TOOL_USE_COLUMNS


def _load(conn: sqlite3.Connection, path: Path, opts: SeedOptions,
          progress: ProgressFn | None, new_file: bool) -> SeedResult:
    tracked = opts.schema == "agentmon"
    result = SeedResult(str(path), schema=opts.schema)
    columns = _columns(conn, opts)
    # Parallel generation hands shards over through ATTACH, only possible between
    # transactions: a commit per shard is fine for a new file (exclusively locked, no journal,
    # deleted on failure), not for an existing one, which is loaded in one transaction.
    parallel = new_file and opts.jobs > 1 and opts.invocations > SHARD_INVOCATIONS
    result.jobs = opts.jobs if parallel else 1
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    try:
        existing = 0 if new_file else _row_count(conn)
        first_seq = 0
        if tracked:
            first_seq = int(conn.execute(
                "SELECT value FROM agentmon_sequence WHERE id = 1").fetchone()[0])
            migrations.drop_change_tracking_triggers(conn)
            migrations.drop_removal_triggers(conn)  # a bulk load removes nothing
        first_inv, first_tool = (_next_id(conn, "agent_invocations"),
                                 _next_id(conn, "agent_tool_uses"))
        frame, shards, final_seq = _plan(opts, first_inv, first_tool, first_seq, columns)
        expected = frame.n_sessions + opts.invocations * (1 + opts.tools_per_invocation)
        # Rebuilding an index costs a sort of the whole table: worth it only when the load
        # is bigger than what is there already.
        rebuild = _data_indexes(conn, False) if expected > existing else []
        kept = _data_indexes(conn, True)
        if not parallel and rebuild:
            rebuild += kept
            kept = []
        for name, _ in rebuild:
            conn.execute(f"DROP INDEX {name}")

        def done(counts: Counts) -> None:
            result.sessions += counts[0]
            result.invocations += counts[1]
            result.tool_uses += counts[2]
            result.running += counts[3]
            if progress:
                progress(result.rows, expected, time.perf_counter() - started)

        if parallel:
            tables = tuple(str(conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()[0]) for table in DATA_TABLES)
            frame = replace(frame, tables=tables, indexes=tuple(sql for _, sql in kept))
            _run_parallel(conn, frame, shards, opts.jobs, done, result.phases)
        else:
            _run_inline(conn, frame, shards, done)
        result.phases["load_s"] = round(time.perf_counter() - started, 2)
        if new_file:
            # Measured: the sorter is faster with a small cache, and a helper thread uses the
            # core the generator workers no longer need.
            conn.execute("PRAGMA cache_size = -2000")
            conn.execute("PRAGMA threads = 2")
        for _, sql in rebuild:
            conn.execute(sql)
        result.phases["index_s"] = round(
            time.perf_counter() - started - result.phases["load_s"], 2)
        if tracked:
            conn.execute("UPDATE agentmon_sequence SET value = ? WHERE id = 1", (final_seq,))
            for stmt in migrations.change_tracking_triggers() + migrations.removal_triggers():
                conn.execute(stmt)
            if opts.usage:
                _usage(conn, first_inv, first_tool)
            result.sequence = int(conn.execute(
                "SELECT value FROM agentmon_sequence WHERE id = 1").fetchone()[0])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction and not new_file:  # a new file has no journal: it is deleted
            conn.execute("ROLLBACK")
        raise
    return result


# Usage facts derived from the loaded rows (schema step "usage"), set-based and with the
# triggers in place, so they are stamped as the hook's would be: each completed invocation's
# tokens and lines (its model one of three), one main-thread message per session, an API error
# per fourth failed invocation and a permission denial per fifth failed tool use.
_USAGE_SQL = (
    "INSERT INTO agent_usage (timestamp, session_id, kind, agent_name, model, label,"
    " input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, lines_added,"
    " lines_removed, dedup_key)"
    " SELECT end_time, session_id, 'tokens', agent_name, CASE id % 3"
    " WHEN 0 THEN 'claude-sonnet-4-5-20250929' WHEN 1 THEN 'claude-haiku-4-5-20251001'"
    " ELSE 'claude-opus-4-1-20250805' END, NULL, id * 7 % 400 + 5, id * 13 % 3000 + 50,"
    " id * 31 % 60000 + 5000, id * 17 % 4000, id % 120, id % 40, 'seed:inv:' || id"
    " FROM agent_invocations WHERE id >= ? AND status = 'completed';"
    "INSERT INTO agent_usage (timestamp, session_id, kind, agent_name, model, input_tokens,"
    " output_tokens, cache_read_tokens, cache_creation_tokens, dedup_key)"
    " SELECT start_time, session_id, 'tokens', 'main', 'claude-opus-4-1-20250805',"
    " length(session_id) * 11, length(session_id) * 90, length(session_id) * 2000,"
    " length(session_id) * 50, 'seed:main:' || session_id FROM sessions WHERE true"
    " ON CONFLICT (dedup_key) DO NOTHING;"
    "INSERT INTO agent_usage (timestamp, session_id, kind, label, dedup_key)"
    " SELECT end_time, session_id, 'api_error', CASE id % 8 WHEN 0 THEN 'rate_limit'"
    " ELSE 'overloaded' END, 'seed:err:' || id FROM agent_invocations"
    " WHERE id >= ? AND status = 'error' AND id % 4 = 0;"
    "INSERT INTO agent_usage (timestamp, session_id, kind, label, dedup_key)"
    " SELECT end_time, session_id, 'permission_denied', tool_name, 'seed:deny:' || id"
    " FROM agent_tool_uses WHERE id >= ? AND status = 'error' AND id % 5 = 0"
)


def _usage(conn: sqlite3.Connection, first_inv: int, first_tool: int) -> None:
    for sql, args in zip(_USAGE_SQL.split(";"), ((first_inv,), (), (first_inv,), (first_tool,)),
                         strict=True):
        conn.execute(sql, args)


def _run_inline(conn: sqlite3.Connection, frame: _Frame, shards: Sequence[_Shard],
                done: Callable[[Counts], None]) -> None:
    statements = [_insert_sql(table, cols) for table, cols in zip(DATA_TABLES, frame.columns,
                                                                   strict=True)]
    for shard in shards:
        sessions, invocations, tool_uses, running = _generate(frame, shard)
        for sql, rows in zip(statements, (sessions, invocations, tool_uses), strict=True):
            conn.executemany(sql, rows)
        done((len(sessions), len(invocations), len(tool_uses), running))


def _run_parallel(conn: sqlite3.Connection, frame: _Frame, shards: Sequence[_Shard], jobs: int,
                  done: Callable[[Counts], None], phases: dict[str, float]) -> None:
    """Workers build shards as in-memory databases; copy each in order, as it arrives."""
    # SELECT * between identical tables lets SQLite copy records without decoding them.
    copies = [f"INSERT INTO main.{t} SELECT * FROM {STAGE}.{t}" for t in DATA_TABLES]  # noqa: S608
    todo = iter(shards)
    window: deque[Future[tuple[bytes, int, int, int, int]]] = deque()
    # spawn, not fork: this process holds an open SQLite connection.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        for shard in todo:
            window.append(pool.submit(_stage, frame, shard))
            if len(window) >= 2 * jobs:
                break
        while window:
            waited = time.perf_counter()
            data, *counts = window.popleft().result()
            phases["wait_s"] = phases.get("wait_s", 0.0) + time.perf_counter() - waited
            following = next(todo, None)
            if following is not None:
                window.append(pool.submit(_stage, frame, following))
            # A fresh schema for each shard, attached between transactions: deserializing
            # into a reused one can keep its stale page cache (all shard images carry the
            # same change counter).
            conn.execute("COMMIT")
            conn.execute(f"ATTACH ':memory:' AS {STAGE}")
            conn.deserialize(data, name=STAGE)
            conn.execute("BEGIN IMMEDIATE")
            for sql in copies:
                conn.execute(sql)
            conn.execute("COMMIT")
            conn.execute(f"DETACH {STAGE}")
            conn.execute("BEGIN IMMEDIATE")
            done((counts[0], counts[1], counts[2], counts[3]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _validate(opts: SeedOptions) -> None:
    if opts.invocations < 1:
        raise SeedError("--invocations must be at least 1")
    if not 0 <= opts.tools_per_invocation <= 100:
        raise SeedError("--tools-per-invocation must be between 0 and 100")
    if not 0 < opts.days <= 3650:
        raise SeedError("--days must be more than 0 and at most 3650")
    if not 0 <= opts.error_rate <= 1:
        raise SeedError("--error-rate must be between 0 and 1")
    if opts.schema not in ("agentmon", "original"):
        raise SeedError("--schema must be agentmon or original")
    if opts.sessions_columns not in (4, 6):
        raise SeedError("--sessions-columns must be 4 or 6")
    if not 1 <= opts.jobs <= 64:
        raise SeedError("--jobs must be between 1 and 64")
    if opts.schema == "agentmon" and opts.sessions_columns != 6:
        raise SeedError("--sessions-columns 4 is only for --schema original")


# ---------------------------------------------------------------- command line


def _parse_end(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def default_jobs() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, usable or 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon seed",
        description="Write realistic synthetic history (sessions, subagent invocations, tool "
        "calls) into a new database, for demos and benchmarks. The same --seed and --end give "
        "the same rows.",
        epilog="example: agentmon seed --db /tmp/demo.db --invocations 1000000",
    )
    parser.add_argument("--db", required=True,
                        help="database file to create (or extend, with --append)")
    parser.add_argument("--invocations", required=True, type=int, metavar="N",
                        help="number of subagent invocations to write")
    parser.add_argument("--tools-per-invocation", type=int, default=3, metavar="K",
                        help="average tool calls per invocation; the total is exactly N*K "
                        "(default 3)")
    parser.add_argument("--days", type=float, default=90.0, metavar="D",
                        help="spread the history over the D days before --end (default 90)")
    parser.add_argument("--end", type=_parse_end, default=None, metavar="TIME",
                        help="ISO-8601 time the history ends at, where the newest rows are still "
                        "running (default: now; naive times are UTC)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="random seed (default 1)")
    parser.add_argument("--error-rate", type=float, default=0.05, metavar="P",
                        help="share of invocations and tool calls that fail (default 0.05)")
    parser.add_argument("--schema", choices=("agentmon", "original"), default="agentmon",
                        help="agentmon: latest schema with change tracking (default); original: "
                        "the original project's tables at user_version 0, local-time timestamps")
    parser.add_argument("--sessions-columns", type=int, choices=(4, 6), default=6,
                        help="with --schema original: sessions as the agent hook (4) or the "
                        "session hook (6) created it (default 6)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), metavar="J",
                        help="worker processes generating rows (default: usable CPUs, at most "
                        f"4; here {default_jobs()}); the rows do not depend on it")
    parser.add_argument("--append", action="store_true",
                        help="add to a database that already holds rows (otherwise refused)")
    parser.add_argument("--usage", action="store_true",
                        help="also write usage facts derived from the rows (tokens and lines"
                        " per completed invocation, a main-thread message per session, some API"
                        " errors and permission denials)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout")
    return parser


class _ProgressBar:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        share = min(1.0, done / total) if total else 1.0
        bar = "#" * int(share * 30)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(f"\r[{bar:<30}] {share:4.0%} {done:,}/{total:,} rows "
                          f"{rate:,.0f} rows/s ETA {eta:.0f}s ")
        self.stream.flush()

    def close(self) -> None:
        if self.last:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = SeedOptions(
        invocations=args.invocations, tools_per_invocation=args.tools_per_invocation,
        days=args.days, seed=args.seed, end=args.end, schema=args.schema,
        error_rate=args.error_rate, sessions_columns=args.sessions_columns, append=args.append,
        jobs=args.jobs, usage=args.usage)
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = seed(args.db, opts, bar)
    except (SeedError, sqlite3.Error, OSError) as exc:
        if bar:
            bar.close()
        print(f"agentmon seed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nagentmon seed: interrupted, nothing written", file=sys.stderr)
        return 130
    if bar:
        bar.close()
    print(f"agentmon seed: {result.rows:,} rows ({result.sessions:,} sessions, "
          f"{result.invocations:,} invocations, {result.tool_uses:,} tool uses, "
          f"{result.running:,} still running) in {result.seconds:.1f} s, "
          f"{result.rows_per_second:,.0f} rows/s -> {result.db}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
    return 0
