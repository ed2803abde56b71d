"""Verified online backups of the database, taken before any migration step.

The copy is made with SQLite's backup API (consistent even while hooks write), checked with
``PRAGMA integrity_check``, and only then kept; the newest ``keep`` backups of a database are
retained. Backups hold prompts and tool inputs, so they are created mode 0600.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

BACKUP_SUFFIX = ".bak"


class BackupError(RuntimeError):
    """The backup could not be written or did not verify."""


def default_backup_dir(db_path: str | Path) -> Path:
    return Path(db_path).absolute().parent / "backups"


def backup_name(db_path: str | Path, version: int, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{Path(db_path).name}.v{version}.{stamp}{BACKUP_SUFFIX}"


def list_backups(db_path: str | Path, backup_dir: str | Path) -> list[Path]:
    """This database's backups in ``backup_dir``, oldest first (names sort by time)."""
    prefix = Path(db_path).name + ".v"
    folder = Path(backup_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(prefix)
             and p.name.endswith(BACKUP_SUFFIX)]
    # "<db>.v<version>.<UTC time>.bak": order by the time, whatever the database's own name
    return sorted(found, key=lambda p: p.name[len(prefix):].split(".", 1)[-1])


def verify(path: str | Path) -> None:
    """Raise BackupError unless ``PRAGMA integrity_check`` on ``path`` says ok."""
    try:
        conn = sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"backup {path} cannot be checked: {exc}") from exc
    if result != ["ok"]:
        raise BackupError(f"backup {path} failed integrity_check: {'; '.join(result[:3])}")


def take_backup(
    source: sqlite3.Connection,
    db_path: str | Path,
    backup_dir: str | Path,
    version: int,
    keep: int = 5,
) -> Path:
    """Copy ``source`` into ``backup_dir`` as a verified backup; prune to the newest ``keep``."""
    folder = Path(backup_dir)
    target = folder / backup_name(db_path, version)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file ourselves, exclusively and 0600, before SQLite writes into it: no
        # window in which another user could open it, and no following a planted symlink.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write a backup in {folder}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        dest = sqlite3.connect(str(target))
        try:
            source.backup(dest)
            # The copy inherits WAL mode from the source; make it one self-contained file.
            dest.execute("PRAGMA journal_mode = DELETE")
        finally:
            dest.close()
        verify(target)
    except (sqlite3.Error, OSError) as exc:
        target.unlink(missing_ok=True)
        raise BackupError(f"backup {target} failed: {exc}") from exc
    except BackupError:
        target.unlink(missing_ok=True)
        raise
    prune(db_path, folder, keep)
    return target


def prune(db_path: str | Path, backup_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of this database; return what was removed."""
    backups = list_backups(db_path, backup_dir)
    doomed = backups[: max(0, len(backups) - max(keep, 1))]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
