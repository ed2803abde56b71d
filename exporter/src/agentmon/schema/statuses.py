"""Row statuses shared by the hook, the migrations' triggers and the collector.

A row is inserted ``running`` and finished once with one of ``FINAL``; the step-3 triggers
freeze finished rows, so each is counted exactly once.
"""

from __future__ import annotations

RUNNING = "running"
COMPLETED = "completed"
ERROR = "error"
FINAL: tuple[str, ...] = (COMPLETED, ERROR)


def sql_list(statuses: tuple[str, ...]) -> str:
    """``('a', 'b')``: statuses as an SQL list literal (they are constants, never user input)."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"
