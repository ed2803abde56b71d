"""The synthetic world ``agentmon seed`` draws from, and the pools drawn from it once per seed.

The shape follows what the hooks record in real use: sessions of several subagent invocations
(a roster of agents in phases), each running a few tool calls (built-in tools and
``mcp__server__tool`` ones) with log-normal durations, about 5% of both failing. For speed, the
per-row values are picked from pools drawn once (``getrandbits``, no float maths per row), and
timestamps are assembled from cached day and second strings (``Pools.day``, ``hms``, ``frac``).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

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

POOL_BITS = 12  # pools of 4096 pre-drawn values, picked with getrandbits


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


class Pools:
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


_CACHE: dict[tuple[int, bool], Pools] = {}


def pools_for(seed: int, original: bool) -> Pools:
    key = (seed, original)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = Pools(seed, original)
    return _CACHE[key]
