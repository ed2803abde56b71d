"""The incremental Prometheus collector behind ``agentmon serve``.

``refresh()`` (a background thread) reads only rows whose change-tracking sequence number is
above what the state has seen (see docs/commands.md, "Change tracking (step 3)"), in short read-only
transactions, and publishes an immutable snapshot of metric families. ``collect()`` yields that
snapshot and never touches SQLite; ``agentmon serve`` calls it on its refresh thread, right
after ``refresh()``, to render the exposition that HTTP requests then only send, so a scrape
never waits on the database.

Database faults never raise: the last good values keep being served with ``agentmon_db_up 0``,
``agentmon_refresh_errors_total{reason}`` counts them, one log line is written per change of
health, and the next refresh that works recovers by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import Metric

from agentmon import spoolstatus
from agentmon.collector.policy import CheckpointPolicy
from agentmon.collector.prices import Prices
from agentmon.collector.reading import DbFault, Reader, read_head
from agentmon.collector.render import REASONS, Health, render
from agentmon.collector.state import State
from agentmon.schema.db import connect_reader
from agentmon.schema.files import SIDE_FILES

__all__ = ["REASONS", "DbFault", "ExporterCollector"]



def unsafe_side_files(path: Path) -> int:
    """How many of SQLite's files beside ``path`` are links or not regular files.

    The hooks refuse such a database (a planted link would make them write elsewhere), so one
    member of the hook group could stop everyone's recording while reads still work.
    """
    count = 0
    for suffix in SIDE_FILES:
        try:
            mode = os.lstat(f"{path}{suffix}").st_mode
        except OSError:
            continue
        count += not stat.S_ISREG(mode)
    return count


class ExporterCollector:
    """A prometheus_client custom collector over incrementally maintained state."""

    def __init__(
        self,
        db_path: Path,
        *,
        checkpoint_path: Path | None = None,
        label_cap: int = 50,
        logger: logging.Logger | None = None,
        checkpoint_interval: float = 60.0,
        busy_timeout_ms: int = 1000,
        batch_size: int = 10_000,
        prices: Prices | None = None,
        ingest_socket: Path | None = None,
    ) -> None:
        if label_cap < 0 or batch_size < 1:
            raise ValueError("label_cap must be >= 0 and batch_size >= 1")
        self._path = Path(db_path)
        self._label_cap = label_cap
        self._prices = prices or Prices()
        self._ingest_socket = ingest_socket
        self._ingest_state: str | None = None
        self._log = logger or logging.getLogger("agentmon.collector")
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()  # one refresh or checkpoint write at a time
        self._conn: sqlite3.Connection | None = None
        self._conn_ident: tuple[int, int] | None = None
        self._reader = Reader(label_cap, batch_size)
        self._health_state: str | None = None  # "ok" or a fault reason; None before a refresh
        self._health = Health(rows_read=self._reader.rows_read)
        self._policy = CheckpointPolicy(None if checkpoint_path is None else Path(checkpoint_path),
                                        checkpoint_interval, self._log)
        self._state: State | None = self._policy.load(label_cap)
        self._snapshot: tuple[Metric, ...] = self._build_snapshot()

    # --- the prometheus_client collector protocol ----------------------------------------------
    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot  # one refresh's families, swapped in whole

    def describe(self) -> list[Metric]:
        return []

    @property
    def db_up(self) -> bool:
        return self._health.up

    @property
    def between_batches(self) -> Callable[[], None] | None:
        """Called between two batches' read transactions (tests write to the database there)."""
        return self._reader.between_batches

    @between_batches.setter
    def between_batches(self, hook: Callable[[], None] | None) -> None:
        self._reader.between_batches = hook

    # --- refresh ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read what changed since the last refresh. Never raises for database faults."""
        with self._lock:
            started = time.perf_counter()
            try:
                self._refresh_once()
            except DbFault as fault:
                self._failed(fault.reason, str(fault))
            except sqlite3.Error as exc:
                self._failed(*self._classify(exc))
            except Exception as exc:  # a bug must not stop the refresh thread
                self._log.debug("refresh failed", exc_info=True)
                self._failed("other", f"{type(exc).__name__}: {exc}")
            else:
                self._succeeded()
            self._health.last_duration = time.perf_counter() - started
            self._measure_disk()
            self._health.unsafe_side_files = unsafe_side_files(self._path)
            self._read_spool_status()
            self._ask_ingest()
            if self._health.up:
                self._policy.maybe_save(self._state)
            self._snapshot = self._build_snapshot()

    def save_checkpoint(self) -> bool:
        """Write the checkpoint now (atomic). False when it failed: logged and counted, never
        raised. True also when there is nothing to write (no checkpoint path, no state yet)."""
        with self._lock:
            return self._policy.save(self._state)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _refresh_once(self) -> None:
        ident = self._stat_path()
        if self._conn is not None and self._conn_ident != ident:
            self._close()  # the path now names another file (deleted and recreated, or moved)
        if self._conn is None:
            self._conn = connect_reader(self._path, self._busy_timeout_ms)
            self._conn_ident = ident
        conn = self._conn
        conn.execute("BEGIN")
        try:
            head = read_head(conn, self._path)
            why = self._reader.rebuild_reason(conn, self._state, head)
            if why is None and self._state is not None:
                why = self._reader.incremental(conn, self._state, head)
            if why is not None:
                t0 = time.perf_counter()
                self._state = self._reader.cold_start(conn, head)
                self._health.rebuilds += 1
                self._policy.rebuilt()
                self._log.info("built state from %s in %.2f s (%s)", self._path,
                               time.perf_counter() - t0, why)
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _measure_disk(self) -> None:
        """The file's and its filesystem's size (for the disk alerts); kept when unreadable."""
        size = 0
        for name in (self._path, Path(f"{self._path}-wal")):
            with contextlib.suppress(OSError):
                size += os.stat(name).st_size
        self._health.file_bytes = size
        with contextlib.suppress(OSError):
            st = os.statvfs(self._path.absolute().parent)
            self._health.fs_avail_bytes = st.f_bavail * st.f_frsize
            self._health.fs_size_bytes = st.f_blocks * st.f_frsize

    def _read_spool_status(self) -> None:
        """The hooks' spool counts (status files beside the database); kept when unreadable,
        zero when the folder does not exist (no role made it)."""
        try:
            self._health.spool = spoolstatus.read_all(spoolstatus.status_dir(str(self._path)))
        except FileNotFoundError:
            self._health.spool = spoolstatus.Totals()
        except OSError:
            self._log.debug("spool status unreadable", exc_info=True)

    def _ask_ingest(self) -> None:
        """Whether the ingest service can store the hooks' events (logged once per change)."""
        if self._ingest_socket is None:
            return
        from agentmon.ingest.client import ping

        why = ping(str(self._ingest_socket))
        self._health.ingest_up = why is None
        if why != self._ingest_state:
            if why is None:
                self._log.info("ingest service ok: %s", self._ingest_socket)
            else:
                self._log.warning("ingest service cannot store events: %s", why)
            self._ingest_state = why

    def _stat_path(self) -> tuple[int, int]:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            raise DbFault("missing", f"{self._path} does not exist") from None
        except OSError as exc:
            raise DbFault("unreadable", f"{self._path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise DbFault("unreadable", f"{self._path} is not a regular file")
        return (st.st_dev, st.st_ino)

    def _classify(self, exc: sqlite3.Error) -> tuple[str, str]:
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        message = f"{self._path}: {text}"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            return "locked", message
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "malformed" in text:
            return "corrupt", message
        if "no such" in text:
            return "not_migrated", message + " (run agentmon migrate)"
        if name.startswith("SQLITE_CANTOPEN"):
            return ("unreadable" if self._path.exists() else "missing"), message
        if name.startswith(("SQLITE_PERM", "SQLITE_AUTH", "SQLITE_IOERR", "SQLITE_READONLY")):
            return "unreadable", message
        return "other", message

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._conn_ident = None

    def _failed(self, reason: str, message: str) -> None:
        self._close()  # drop locks and any handle on a replaced file; reopen next time
        self._health.up = False
        self._health.errors[reason] += 1
        if self._health_state != reason:
            self._log.warning("database fault (%s): %s; serving the last good values", reason,
                              message)
            self._health_state = reason

    def _succeeded(self) -> None:
        self._health.up = True
        self._health.last_success = time.time()
        if self._health_state != "ok":
            seq = self._state.seq if self._state else 0
            self._log.info("database ok: %s (sequence %d)", self._path, seq)
            self._health_state = "ok"

    def _build_snapshot(self) -> tuple[Metric, ...]:
        self._health.errors["checkpoint"] = self._policy.failures
        return render(self._state or State(self._label_cap), self._health, self._prices)
