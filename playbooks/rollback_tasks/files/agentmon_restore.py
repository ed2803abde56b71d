"""Restore an agentmon database from a backup, keeping the live file's content aside.

    agentmon_restore.py --db LIVE --backup FILE --set-aside FILE [--dry-run]

Both copies happen under one lock: the live database is opened in SQLite's EXCLUSIVE locking
mode, which keeps its lock between statements (stop the exporter and the ingest service first:
their open connections keep that lock from being granted; the hooks keep their events
meanwhile).
Its content is copied to the set-aside file, then the backup is copied over it (both with
the SQLite backup API, which is safe in WAL mode); writers wait on their busy timeout and
write into the restored database afterwards. Nothing is deleted. Prints one JSON object: the
rows (by key) that exist only in the set-aside copy, per table. Exit 1 with one line on error.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from contextlib import closing

KEYS = {"sessions": "session_id", "agent_invocations": "id", "agent_tool_uses": "id"}
LOCK_TIMEOUT_S = 60.0


def integrity_ok(conn: sqlite3.Connection) -> bool:
    return [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]


def only_in(conn: sqlite3.Connection, first: str, second: str) -> dict[str, int]:
    """Rows of each table in schema ``first`` whose key is missing from schema ``second``."""
    counts: dict[str, int] = {}
    for table, key in KEYS.items():
        present = {r[0] for r in conn.execute(
            f"SELECT name FROM {first}.sqlite_master WHERE type = 'table'")}  # noqa: S608
        if table not in present:
            continue
        other = {r[0] for r in conn.execute(
            f"SELECT name FROM {second}.sqlite_master WHERE type = 'table'")}  # noqa: S608
        if table not in other:
            sql = f"SELECT count(*) FROM {first}.{table}"  # noqa: S608
        else:
            sql = (f"SELECT count(*) FROM {first}.{table} WHERE {key} NOT IN"  # noqa: S608
                   f" (SELECT {key} FROM {second}.{table} WHERE {key} IS NOT NULL)")
        counts[table] = int(conn.execute(sql).fetchone()[0])
    return counts


def exclusive(db: str) -> sqlite3.Connection:
    """A connection holding the database's lock until it closes (hooks wait, then write).

    In WAL mode the lock is granted only while no other connection has the file open: the
    exporter and the ingest service must be stopped; a prune or migration that runs meanwhile
    ends, so this retries until it has.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        conn = sqlite3.connect(db, timeout=1.0, isolation_level=None)
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def restore(db: str, backup: str, set_aside: str, dry_run: bool) -> dict[str, object]:
    if not os.path.isfile(backup):
        raise RuntimeError(f"backup {backup} does not exist")
    with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as bak:
        if not integrity_ok(bak):
            raise RuntimeError(f"backup {backup} fails PRAGMA integrity_check")
        version = int(bak.execute("PRAGMA user_version").fetchone()[0])
    if os.path.lexists(set_aside):
        raise RuntimeError(f"{set_aside} exists already: restore from this backup was done")
    if dry_run:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            conn.execute("ATTACH DATABASE ? AS bak", (f"file:{backup}?mode=ro",))
            return {"changed": False, "dry_run": True, "backup_schema_version": version,
                    "rows_only_in_set_aside": only_in(conn, "main", "bak")}
    # The set-aside file is new (O_EXCL: never an existing file or a planted link), 0600.
    os.close(os.open(set_aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    live = exclusive(db)
    try:
        with closing(sqlite3.connect(set_aside)) as aside:
            live.backup(aside)
            if not integrity_ok(aside):
                raise RuntimeError(f"the copy {set_aside} fails integrity_check; nothing restored")
        with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as bak:
            bak.backup(live)
        if not integrity_ok(live):
            raise RuntimeError(f"{db} fails integrity_check after the restore; "
                               f"its previous content is in {set_aside}")
        live.execute("ATTACH DATABASE ? AS aside", (set_aside,))
        counts = only_in(live, "aside", "main")
        live.execute("DETACH DATABASE aside")
        live.execute("PRAGMA locking_mode = NORMAL")
        live.execute("SELECT count(*) FROM sqlite_master")  # releases the lock
    finally:
        live.close()
    return {"changed": True, "dry_run": False, "backup_schema_version": version,
            "rows_only_in_set_aside": counts}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--backup", required=True)
    parser.add_argument("--set-aside", required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = restore(args.db, args.backup, args.set_aside, args.dry_run)
    except (RuntimeError, OSError, sqlite3.Error) as exc:
        print(f"agentmon_restore: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
