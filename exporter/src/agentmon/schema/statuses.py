"""Row statuses shared by the hook, the migrations' triggers and the collector.

A row is inserted ``running`` and finished once with one of ``FINAL``; the freeze triggers
(schema step 3, re-created with ``interrupted`` by step 4) keep finished rows as they are, so
each is counted exactly once. ``interrupted`` is written by the hook for rows still running when
their session ends, or running longer than ``--interrupt-after-seconds``.
"""

from __future__ import annotations

RUNNING = "running"
COMPLETED = "completed"
ERROR = "error"
INTERRUPTED = "interrupted"
FINAL: tuple[str, ...] = (COMPLETED, ERROR, INTERRUPTED)


def sql_list(statuses: tuple[str, ...]) -> str:
    """``('a', 'b')``: statuses as an SQL list literal (they are constants, never user input)."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"
