"""Giving pruned space back to the filesystem without doubling the file.

With ``auto_vacuum = INCREMENTAL`` SQLite moves free pages to the end of the file and truncates
them away, ``incremental_vacuum`` pages at a time (one short write transaction per step); the
WAL checkpoint then shrinks the file on disk. A database made before that setting (every
database until an operator asks for ``--reclaim``) needs one full ``VACUUM`` to switch: it
writes a copy of the live data to a temporary file and the WAL, so it needs free space for
about twice the data in use, and holds the write lock while it runs (hooks wait on their busy
timeout). It is refused up front when that space is not there. Without the switch, freed pages
are reused by new rows: the file stops growing but does not shrink.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from agentmon.prune.core import PruneError, used_bytes

INCREMENTAL = 2
STEP_PAGES = 1000  # pages per incremental_vacuum transaction (4 MB at the default page size)


def file_bytes(path: Path) -> int:
    """The database and its WAL on disk."""
    total = 0
    for name in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(name).st_size
    return total


def wal_bytes(path: Path) -> int:
    """The WAL alone (0 when there is none)."""
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def auto_vacuum(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])


def free_pages_back(conn: sqlite3.Connection) -> int:
    """Truncate free pages away in short steps; the pages given back."""
    given = 0
    while auto_vacuum(conn) == INCREMENTAL:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free == 0:
            break
        conn.execute(f"PRAGMA incremental_vacuum({min(free, STEP_PAGES)})").fetchall()
        given += min(free, STEP_PAGES)
    checkpoint(conn)
    return given


def checkpoint(conn: sqlite3.Connection) -> None:
    # TRUNCATE waits (busy timeout) for readers; busy is not an error, the next one catches up
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def switch_to_incremental(conn: sqlite3.Connection, path: Path) -> bool:
    """The one-off VACUUM that turns on incremental vacuum; False when it was on already."""
    if auto_vacuum(conn) == INCREMENTAL:
        return False
    need = 2 * used_bytes(conn)
    folders = {Path(path).absolute().parent, Path(os.environ.get("SQLITE_TMPDIR")
                                                    or tempfile.gettempdir())}
    for folder in sorted(folders):
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise PruneError(f"--reclaim needs about {need} bytes free in {folder} for its"
                             f" one-off VACUUM, {free} are; nothing was changed")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
    checkpoint(conn)
    return True
