"""Bring a database to a schema version, taking a verified backup first (``agentmon migrate``),
and keep writers' databases current (``ensure_latest``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from agentmon.schema import backup as backups
from agentmon.schema import migrations
from agentmon.schema import plan as steps_plan
from agentmon.schema.db import connect_reader, connect_writer, schema_version


class MigrateError(RuntimeError):
    """An expected fault (missing folder, not a database): reported as one line."""


@dataclass
class MigrationResult:
    db: str
    from_version: int
    to_version: int
    steps: list[str] = field(default_factory=list)
    backup: str | None = None
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.steps) and not self.dry_run


def migrate(
    db_path: str | Path,
    target: int | None = None,
    *,
    dry_run: bool = False,
    backup_dir: str | Path | None = None,
    keep_backups: int = 5,
    busy_timeout_ms: int = 60_000,
) -> MigrationResult:
    """Migrate ``db_path`` up or down to ``target`` (default: latest). A second run is a no-op.

    A backup is taken once, before the first step, unless there is nothing to migrate or the
    file holds no table yet (a brand-new database has nothing to lose).
    """
    target = migrations.LATEST if target is None else target
    if keep_backups < 1:
        raise ValueError(f"--keep-backups must be at least 1, not {keep_backups}")
    path = Path(db_path)
    if not path.parent.is_dir():
        raise MigrateError(f"folder {path.parent} does not exist")
    if dry_run and not path.exists():
        steps = steps_plan.plan(0, target)
        return MigrationResult(str(path), 0, target, [_describe(s) for s in steps], None, True)
    try:
        # A dry run must not even switch the file to WAL mode: open it read-only.
        conn = (connect_reader(path, busy_timeout_ms) if dry_run
                else connect_writer(path, busy_timeout_ms=busy_timeout_ms))
        current = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise MigrateError(f"{path}: not a usable SQLite database ({exc})") from exc
    try:
        steps = steps_plan.plan(current, target)
        result = MigrationResult(str(path), current, current, [], None, dry_run)
        if dry_run:
            result.steps = [_describe(s) for s in steps]
            result.to_version = target if steps else current
            return result
        if steps and steps_plan.has_user_tables(conn):
            folder = backup_dir or backups.default_backup_dir(path)
            result.backup = str(backups.take_backup(conn, path, folder, current, keep_backups))
        for step in steps:
            # Skipped when another process applied it meanwhile: report only what ran here.
            if steps_plan.apply_step(conn, step):
                result.steps.append(_describe(step))
        result.to_version = schema_version(conn)
        return result
    finally:
        conn.close()


def ensure_latest(conn: sqlite3.Connection, db_path: str | Path) -> None:
    """Used by writers (the hook): migrate a database that is behind, backing it up first.

    Backup and every step run under one write lock, so hook processes that all find the same
    old database wait for the first one and then see it current: one backup, not one each.
    """
    current = schema_version(conn)
    if current == migrations.LATEST:  # the per-event path: one PRAGMA
        return
    steps_plan.check_known(current)  # newer: refuse at once, no backup, no lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        steps_plan.check_known(current)
        if current != migrations.LATEST:
            if steps_plan.has_user_tables(conn):
                # SQLite refuses to back up from a connection in a write transaction; a second
                # connection reads the same committed state while we hold the write lock.
                with closing(sqlite3.connect(str(db_path))) as source:
                    backups.take_backup(source, db_path, backups.default_backup_dir(db_path),
                                        current)
            for step in steps_plan.plan(current, migrations.LATEST):
                steps_plan.apply_step_locked(conn, step)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _describe(step: steps_plan.PlannedStep) -> str:
    return f"{step.direction} {step.version_before}->{step.version_after} ({step.name})"
