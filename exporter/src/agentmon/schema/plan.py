"""Which migration steps take a database from one schema version to another (``plan``), and
running one of them with its version bump (``apply_step``). The steps themselves are in
``agentmon.schema.migrations`` (read through the module, so a test can replace them).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agentmon.schema import migrations
from agentmon.schema.db import schema_version


@dataclass(frozen=True)
class PlannedStep:
    version_before: int
    version_after: int
    name: str
    direction: str  # "up" or "down"


class NewerSchemaError(ValueError):
    """The database was migrated by a newer agentmon: this one must not touch it."""


def check_known(current: int) -> None:
    """Raise NewerSchemaError when ``current`` is newer than this agentmon knows."""
    if current > migrations.LATEST:
        raise NewerSchemaError(
            f"database is at schema version {current}, newer than this agentmon knows"
            f" ({migrations.LATEST});"
            " upgrade agentmon (its newer release has the down steps)"
        )


def plan(current: int, target: int) -> list[PlannedStep]:
    """The steps that take a database from ``current`` to ``target``, in order."""
    check_known(current)
    if not 0 <= target <= migrations.LATEST:
        raise ValueError(f"target version {target} is outside 0..{migrations.LATEST}")
    if target >= current:
        return [PlannedStep(s.version - 1, s.version, s.name, "up") for s in migrations.STEPS
                if current < s.version <= target]
    return [PlannedStep(s.version, s.version - 1, s.name, "down")
            for s in reversed(migrations.STEPS) if target < s.version <= current]


def apply_step(conn: sqlite3.Connection, step: PlannedStep) -> bool:
    """Run one planned step and its version bump in one write transaction.

    The version is re-read under the write lock: if another process migrated meanwhile, the
    step is skipped instead of being applied twice. Returns whether it ran here.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        ran = apply_step_locked(conn, step)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ran


def apply_step_locked(conn: sqlite3.Connection, step: PlannedStep) -> bool:
    """Run one step inside the caller's write transaction; False if the version moved on."""
    if schema_version(conn) != step.version_before:
        return False
    by_version = {s.version: s for s in migrations.STEPS}
    version = step.version_after if step.direction == "up" else step.version_before
    action = by_version[version].up if step.direction == "up" else by_version[version].down
    action(conn)
    conn.execute(f"PRAGMA user_version = {int(step.version_after)}")
    return True


def has_user_tables(conn: sqlite3.Connection) -> bool:
    """True when the file holds any table (so there is something worth backing up)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1"
    ).fetchone()
    return row is not None
