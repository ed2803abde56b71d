"""The ingest service's side of the database: one connection, one event per transaction.

Every event is stored by ``agentmon.hook.store.Store``, the code the hook uses when it writes a
database itself. The connection stays open between events but holds no lock between them
(autocommit: each event is one ``BEGIN IMMEDIATE`` ... ``COMMIT``), so prune batches, migrations
and backups interleave. It never waits long for the write lock (``BUSY_TIMEOUT_MS``): Busy goes
back to the service's loop, which serves other connections and tries again. It never migrates:
a database at another schema version than this release writes refuses events (the client keeps
them) until the deploy has migrated it and made the matching release live.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from agentmon.hook.cli import refuse_links
from agentmon.hook.store import Store
from agentmon.schema.db import connect_writer
from agentmon.schema.migrations import LATEST

BUSY_TIMEOUT_MS = 10
CHECKPOINT_EVERY = 1000  # commits between checkpoints while the service never idles


class Busy(Exception):
    """Another writer holds the write lock: try again a little later."""


class NotNow(Exception):
    """The event cannot be stored now (schema, missing file, I/O): the client keeps it."""


class Writer:
    def __init__(self, path: str, *, max_payload_bytes: int,
                 interrupt_after: float | None) -> None:
        self.path = os.path.abspath(path)
        self.max_payload = max_payload_bytes
        self.interrupt_after = interrupt_after
        self.conn: sqlite3.Connection | None = None
        self.ident: tuple[int, int] | None = None
        self.commits = 0  # since the last checkpoint

    def _identity(self) -> tuple[int, int]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise NotNow(f"{self.path} does not exist") from None
        return info.st_dev, info.st_ino

    def connection(self) -> sqlite3.Connection:
        """The open connection, reopened when the file at the path is another one."""
        ident = self._identity()
        if self.conn is not None and ident == self.ident:
            return self.conn
        self.close()
        try:
            refuse_links(self.path)
            conn = connect_writer(self.path, busy_timeout_ms=BUSY_TIMEOUT_MS, nofollow=True,
                                  create=False)
        except (sqlite3.Error, OSError) as exc:
            raise NotNow(f"{self.path}: {exc}") from None
        # Checkpoints run between events (checkpoint()), never inside a commit a client waits on.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        self.conn, self.ident = conn, ident
        return conn

    def ready(self) -> str | None:
        """None when events can be stored now (but for another writer's lock), else why not."""
        try:
            conn = self.connection()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except NotNow as exc:
            return str(exc)
        except sqlite3.Error as exc:
            self.close()
            return f"{self.path}: {exc}"
        return None if version == LATEST else self._wrong_version(version)

    def _wrong_version(self, version: int) -> str:
        return (f"{self.path} is at schema version {version}; this agentmon writes version"
                f" {LATEST} (a deploy or rollback is under way, or agentmon migrate is needed)")

    def store(self, event: dict[str, Any], *, uid: int, phase: str | None,
              passed: Mapping[str, int], guard: Callable[[], None]) -> str | None:
        """Store one validated event of user ``uid``; its warning, if any.

        ``passed``: transcript field -> descriptor the peer passed. ``guard`` runs with the
        lock held, before any change and before the commit (the client still waits, its
        deadline has not passed); what it raises rolls the event back. Raises Busy, NotNow.
        """
        conn = self.connection()

        def check() -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != LATEST:
                raise NotNow(self._wrong_version(version))
            guard()

        recorder = Store(conn, max_payload_bytes=self.max_payload, phase=phase,
                         interrupt_after=self.interrupt_after, passed=passed, uid=uid)
        try:
            recorder.record(event, guard=check)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                raise Busy(str(exc)) from None
            self.close()
            raise NotNow(f"{self.path}: {exc}") from None
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise NotNow(f"{self.path}: {exc}") from None
        self.commits += 1
        return recorder.warning

    def checkpoint(self, idle: bool) -> None:
        """Copy the WAL into the database (PASSIVE: never waits) when idle or due."""
        if self.conn is None or not self.commits or (not idle and self.commits < CHECKPOINT_EVERY):
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            self.close()
        self.commits = 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, self.ident = None, None
