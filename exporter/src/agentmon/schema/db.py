"""SQLite connections: one way to open the database for writing, one for reading.

Writers (the hook, migrations, the seeder) use WAL mode and a busy timeout so that several
hook processes and a reading exporter proceed together. Readers open the file read-only
(``mode=ro`` plus ``query_only``) so the exporter can never change users' data.
"""

from __future__ import annotations

import os
import sqlite3

DEFAULT_BUSY_TIMEOUT_MS = 15_000


def connect_writer(
    path: str | os.PathLike[str], busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    *, nofollow: bool = False, create: bool = True,
) -> sqlite3.Connection:
    """Open (creating if needed) the database for writing, in WAL mode, autocommit.

    Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``): taking the write lock up
    front means a writer waits on ``busy_timeout`` instead of failing half-way. With
    ``nofollow`` SQLite refuses a path holding a symbolic link (its ``nofollow`` URI option)
    instead of resolving it, which it otherwise does, for the database and its -wal/-shm.
    With ``create`` false a missing file is an error (``mode=rw``), not a new empty database.
    """
    target = str(path)
    uri = nofollow or not create
    if uri:
        # A URI by hand: urllib costs the hook ~4 ms. Only these three characters matter in a
        # file: URI's path part.
        absolute = os.path.abspath(target)
        escaped = absolute.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        options = [*(["nofollow=1"] if nofollow else []), *([] if create else ["mode=rw"])]
        target = f"file:{escaped}?{'&'.join(options)}"
    conn = sqlite3.connect(
        target, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False,
        uri=uri,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        _switch_to_wal(conn, busy_timeout_ms)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch a rollback-journal file (an adopted original database) to WAL.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
    its busy handler, while another connection writes (deadlock avoidance), so wait here.
    """
    import time

    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def connect_reader(
    path: str | os.PathLike[str], busy_timeout_ms: int = 1_000
) -> sqlite3.Connection:
    """Open an existing database read-only. Raises ``sqlite3.OperationalError`` if missing."""
    # Imported here: the hook imports this module, and pathlib + urllib cost it ~4 ms per event.
    from pathlib import Path
    from urllib.parse import quote

    uri = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
    conn = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = 1")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({quote_ident(table)})")]


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (table or column name) for interpolation."""
    return '"' + name.replace('"', '""') + '"'
