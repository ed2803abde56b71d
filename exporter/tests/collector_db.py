"""Helpers for the collector tests: migrated databases written with plain SQL, and scrapes."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agentmon.collector.collector import ExporterCollector
from agentmon.schema.db import connect_writer
from agentmon.schema.migrate import migrate
from agentmon.schema.migrations import LATEST

_TEMPLATES: dict[int, Path] = {}
# Removed when the process exits (TemporaryDirectory's finalizer), with every template in it.
_TEMPLATE_DIR = tempfile.TemporaryDirectory(prefix="agentmon-template-")


def make_db(path: Path, version: int = LATEST) -> Path:
    """A fresh database at ``version`` (copied from a template migrated once per process)."""
    template = _TEMPLATES.get(version)
    if template is None:
        template = Path(_TEMPLATE_DIR.name) / f"v{version}.db"
        migrate(template, version)
        conn = connect_writer(template)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _TEMPLATES[version] = template
    shutil.copyfile(template, path)
    return path


def writer(path: Path) -> sqlite3.Connection:
    return connect_writer(path, busy_timeout_ms=5_000)


def add_invocation(conn: sqlite3.Connection, agent: object = "planner", phase: object = "plan",
                   status: object = "completed", duration: object = None, start: object = None,
                   end: object = None, session: object = "s1") -> int:
    cur = conn.execute(
        "INSERT INTO agent_invocations (session_id, agent_name, phase, status, duration_seconds,"
        " start_time, end_time, prompt) VALUES (?, ?, ?, ?, ?, ?, ?, 'secret prompt')",
        (session, agent, phase, status, duration, start, end),
    )
    return int(cur.lastrowid or 0)


def add_tool_use(conn: sqlite3.Connection, agent: object = "planner", tool: object = "Bash",
                 status: object = "completed", duration: object = None, start: object = None,
                 end: object = None, session: object = "s1") -> int:
    cur = conn.execute(
        "INSERT INTO agent_tool_uses (session_id, agent_name, tool_name, status,"
        " duration_seconds, start_time, end_time, tool_input)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, '{\"path\": \"/home/u/x\"}')",
        (session, agent, tool, status, duration, start, end),
    )
    return int(cur.lastrowid or 0)


def add_session(conn: sqlite3.Connection, session: str, status: object = "active") -> None:
    conn.execute(
        "INSERT INTO sessions (session_id, start_time, status, cwd) VALUES (?, ?, ?, '/home/u')",
        (session, "2025-01-01T00:00:00+00:00", status),
    )


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(collector: ExporterCollector) -> Samples:
    """Every sample of one collect(), keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in collector.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snap: Samples, name: str, **labels: str) -> float:
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)


def by_name(snap: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in snap.items() if n == name}


def exposition(collector: ExporterCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def families(collector: ExporterCollector) -> Iterator[str]:
    return (f.name for f in collector.collect())


def add_usage(conn: sqlite3.Connection, kind: str = "tokens", agent: object = "main",
              model: object = "claude-sonnet-4-5", label: object = None,
              counts: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0),
              key: str | None = None, session: object = "s1") -> int:
    """One agent_usage row: counts are input, output, cache_read, cache_creation tokens, lines
    added, lines removed."""
    cur = conn.execute(
        "INSERT INTO agent_usage (session_id, kind, agent_name, model, label, input_tokens,"
        " output_tokens, cache_read_tokens, cache_creation_tokens, lines_added, lines_removed,"
        " dedup_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (session, kind, agent, model, label, *counts, key))
    return int(cur.lastrowid or 0)
