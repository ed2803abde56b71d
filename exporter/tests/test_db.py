"""Opening the database: the switch of an adopted rollback-journal file to WAL waits for a
writer instead of failing at once (SQLite skips its busy handler for that switch)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from agentmon.schema.db import connect_reader, connect_writer


def rollback_journal_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (x)")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    return conn


def test_switch_to_wal_waits_for_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    holder = rollback_journal_db(db)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        conn = connect_writer(db, busy_timeout_ms=5_000)
    finally:
        release.join()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    conn.close()
    holder.close()


def test_switch_to_wal_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    holder = rollback_journal_db(db)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        connect_writer(db, busy_timeout_ms=50)
    holder.execute("ROLLBACK")
    holder.close()


def test_reader_is_read_only(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    connect_writer(db).execute("CREATE TABLE t (x)")
    conn = connect_reader(db)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO t VALUES (1)")


def test_reader_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        connect_reader(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
