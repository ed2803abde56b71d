"""The incremental Prometheus collector behind ``agentmon serve``.

``refresh()`` (a background thread) reads only rows whose change-tracking sequence number is
above what the state has seen (see the README, "Change tracking"), in short read-only
transactions, and publishes an immutable snapshot of metric families. ``collect()`` (HTTP
threads) yields that snapshot and never touches SQLite, so a scrape never waits on the database.

Database faults never raise: the last good values keep being served with ``agentmon_db_up 0``,
``agentmon_refresh_errors_total{reason}`` counts them, one log line is written per change of
health, and the next refresh that works recovers by itself.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agentmon import __version__
from agentmon.collector import checkpoint, queries
from agentmon.collector.labels import LabelFolder
from agentmon.collector.state import TABLES, Histogram, State, session_key, usable_duration
from agentmon.schema.db import connect_reader
from agentmon.schema.migrations import LATEST
from agentmon.schema.statuses import COMPLETED

REASONS = ("missing", "unreadable", "locked", "corrupt", "not_migrated", "other", "checkpoint")
MIN_SCHEMA = 3  # change tracking


class DbFault(Exception):
    """An expected database fault: a reason label and a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    ) -> None:
        if label_cap < 0 or batch_size < 1:
            raise ValueError("label_cap must be >= 0 and batch_size >= 1")
        self._path = Path(db_path)
        self._checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self._label_cap = label_cap
        self._log = logger or logging.getLogger("agentmon.collector")
        self._checkpoint_interval = checkpoint_interval
        self._busy_timeout_ms = busy_timeout_ms
        self._batch = batch_size
        self._lock = threading.Lock()  # one refresh or checkpoint write at a time
        self._conn: sqlite3.Connection | None = None
        self._conn_ident: tuple[int, int] | None = None
        self._state: State | None = None
        self._health: str | None = None  # "ok" or a fault reason; None before the first refresh
        self._checkpoint_health = "ok"
        self._up = False
        self._errors = dict.fromkeys(REASONS, 0)
        self._rows_read = dict.fromkeys(TABLES, 0)
        self._rebuilds = 0
        self._last_duration = 0.0
        self._last_success = 0.0
        self._saved: tuple[str | None, int] | None = None
        self._saved_at = 0.0
        self._load_checkpoint()
        self._snapshot: tuple[Metric, ...] = self._build_snapshot()

    # --- the prometheus_client collector protocol ----------------------------------------------
    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot  # one refresh's families, swapped in whole

    def describe(self) -> list[Metric]:
        return []

    @property
    def db_up(self) -> bool:
        return self._up

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
            self._last_duration = time.perf_counter() - started
            if self._up:
                self._maybe_checkpoint()
            self._snapshot = self._build_snapshot()

    def save_checkpoint(self) -> bool:
        """Write the checkpoint now (atomic). False when it failed: logged and counted, never
        raised. True also when there is nothing to write (no checkpoint path, no state yet)."""
        with self._lock:
            return self._write_checkpoint()

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
            version = int(conn.execute(queries.USER_VERSION).fetchone()[0])
            if version < MIN_SCHEMA:
                raise DbFault("not_migrated", f"{self._path} is at schema version {version},"
                              f" needs {MIN_SCHEMA}..{LATEST}: run agentmon migrate")
            seq, db_id = conn.execute(queries.META).fetchone()
            if not isinstance(seq, int) or not isinstance(db_id, str):
                raise DbFault("not_migrated", f"{self._path} lacks agentmon's sequence or id")
            state = self._state
            if state is None or state.db_id != db_id or seq < max(state.marks.values()):
                why = ("no checkpoint" if state is None else "another database"
                       if state.db_id != db_id else "sequence went backwards")
                t0 = time.perf_counter()
                self._state = self._cold_start(conn, db_id, seq)
                self._rebuilds += 1
                self._log.info("built state from %s in %.2f s (%s)", self._path,
                               time.perf_counter() - t0, why)
            else:
                self._incremental(conn, state, seq)
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

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
        self._up = False
        self._errors[reason] += 1
        if self._health != reason:
            self._log.warning("database fault (%s): %s; serving the last good values", reason,
                              message)
            self._health = reason

    def _succeeded(self) -> None:
        self._up = True
        self._last_success = time.time()
        if self._health != "ok":
            seq = self._state.seq if self._state else 0
            self._log.info("database ok: %s (sequence %d)", self._path, seq)
            self._health = "ok"

    # --- reading ---------------------------------------------------------------------------
    def _incremental(self, conn: sqlite3.Connection, state: State, seq: int) -> None:
        """Bring ``state`` to snapshot ``seq``: sessions and gauges in this transaction, the
        frozen tables in batches of short transactions (finished rows never change again, so
        a row read in a later snapshot is still the row as of ``seq``)."""
        mark = state.marks["sessions"]
        rows = conn.execute(queries.SESSIONS_CHANGED, (mark, seq)).fetchall()
        for _, created, session_id, status in rows:
            state.session_changed(session_id, status, created is not None and created > mark)
        state.marks["sessions"] = seq
        self._rows_read["sessions"] += len(rows)
        self._read_gauges(conn, state)
        for q, finished in ((queries.INVOCATIONS, state.finished_invocation),
                            (queries.TOOL_USES, state.finished_tool_use)):
            while True:
                rows = conn.execute(q.changed, (state.marks[q.table], seq, self._batch)).fetchall()
                for _, agent, key2, status, duration, from_times in rows:
                    finished(agent, key2, status, usable_duration(duration, from_times))
                self._rows_read[q.table] += len(rows)
                if len(rows) < self._batch:
                    state.marks[q.table] = seq
                    break
                state.marks[q.table] = rows[-1][0]
                conn.execute("COMMIT")  # a big backlog must not hold one long read transaction
                conn.execute("BEGIN")
        state.seq = seq

    @staticmethod
    def _read_gauges(conn: sqlite3.Connection, state: State) -> None:
        state.set_running(
            conn.execute(queries.INVOCATIONS.running).fetchall(),
            conn.execute(queries.TOOL_USES.running).fetchall(),
            int(conn.execute(queries.ACTIVE_SESSIONS).fetchone()[0]),
        )

    def _cold_start(self, conn: sqlite3.Connection, db_id: str, seq: int) -> State:
        """One aggregated pass over the covering indexes, in the caller's read transaction."""
        state = State(self._label_cap, db_id, seq)
        for q, add, histogram in (
            (queries.INVOCATIONS, state.add_invocations, state.invocation_histogram),
            (queries.TOOL_USES, state.add_tool_uses, state.tool_use_histogram),
        ):
            for agent, key2, status, rows in conn.execute(q.cold_groups).fetchall():
                label = add(agent, key2, status, rows)
                self._rows_read[q.table] += rows
                cumulative, count, total = self._cold_durations(conn, q, (agent, key2, status),
                                                                rows)
                if count:
                    histogram(label).add_cumulative(cumulative, count, total)
        status_folder: LabelFolder = state.folders["status"]
        for status, rows in conn.execute(queries.COLD_SESSIONS).fetchall():
            label = COMPLETED if status == COMPLETED else status_folder.fold(status, rows)
            state.sessions[label] = state.sessions.get(label, 0) + rows
            self._rows_read["sessions"] += rows
        for session_id, status in conn.execute(queries.COLD_OPEN_SESSIONS):
            state.open_sessions[session_key(session_id)] = status_folder.fold(status, 0)
        self._read_gauges(conn, state)
        return state

    @staticmethod
    def _cold_durations(conn: sqlite3.Connection, q: queries.TableQueries,
                        combo: tuple[object, object, object],
                        rows: int) -> tuple[list[int], int, float]:
        """Cumulative bucket counts, count and sum of the usable durations of one combination."""
        count = conn.execute(q.cold_zero, combo).fetchone()[0]
        total = 0.0
        cumulative = []
        bounds = (0.0, *q.buckets, queries.MAX_DURATION)
        for low, high in itertools.pairwise(bounds):
            n, s = conn.execute(q.cold_range, (*combo, low, high)).fetchone()
            count += n
            total += s
            cumulative.append(count)
        cumulative.pop()  # the last range is the +Inf bucket, which is the count
        if count < rows:  # some rows lack a usable duration_seconds: try their timestamps
            n, s, *at_most = conn.execute(q.cold_timestamps, combo).fetchone()
            count += n
            total += s
            cumulative = [c + (extra or 0) for c, extra in zip(cumulative, at_most, strict=True)]
        return cumulative, count, total

    # --- checkpoint ------------------------------------------------------------------------
    def _load_checkpoint(self) -> None:
        if self._checkpoint_path is None:
            return
        try:
            data = checkpoint.load(self._checkpoint_path)
            if data is None:
                return
            self._state = State.from_json(data.get("state"), self._label_cap)
        except (checkpoint.CheckpointError, ValueError) as exc:
            self._log.warning("ignoring checkpoint %s: %s; rebuilding from the database",
                              self._checkpoint_path, exc)
            return
        self._saved = (self._state.db_id, self._state.seq)
        self._saved_at = time.monotonic()

    def _maybe_checkpoint(self) -> None:
        state = self._state
        if self._checkpoint_path is None or state is None:
            return
        if self._saved == (state.db_id, state.seq):
            return
        due = time.monotonic() - self._saved_at >= self._checkpoint_interval
        if self._saved is None or self._saved[0] != state.db_id or due:
            self._write_checkpoint()

    def _write_checkpoint(self) -> bool:
        state = self._state
        if self._checkpoint_path is None or state is None:
            return True
        try:
            checkpoint.save(self._checkpoint_path, {"state": state.to_json()})
        except checkpoint.CheckpointError as exc:
            self._errors["checkpoint"] += 1
            if self._checkpoint_health != "failing":
                self._log.warning("%s; will retry", exc)
                self._checkpoint_health = "failing"
            return False
        if self._checkpoint_health != "ok":
            self._log.info("checkpoint written again: %s", self._checkpoint_path)
            self._checkpoint_health = "ok"
        self._saved = (state.db_id, state.seq)
        self._saved_at = time.monotonic()
        return True

    # --- exposition ------------------------------------------------------------------------
    def _build_snapshot(self) -> tuple[Metric, ...]:
        state = self._state or State(self._label_cap)
        families: list[Metric] = []

        def counter(name: str, doc: str, labels: Sequence[str],
                    values: dict[tuple[str, ...], int]) -> None:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key in sorted(values):
                family.add_metric(key, values[key])
            families.append(family)

        def gauge(name: str, doc: str, labels: Sequence[str],
                  values: dict[tuple[str, ...], float]) -> None:
            family = GaugeMetricFamily(name, doc, labels=labels)
            for key in sorted(values):
                family.add_metric(key, values[key])
            families.append(family)

        def histogram(name: str, doc: str, label: str, hists: dict[str, Histogram]) -> None:
            family = HistogramMetricFamily(name, doc, labels=[label])
            for key in sorted(hists):
                hist = hists[key]
                bounds = [*(_le(b) for b in hist.buckets), "+Inf"]
                family.add_metric([key], list(zip(bounds, hist.cumulative(), strict=True)),
                                  hist.total)
            families.append(family)

        counter("agentmon_invocations", "Finished agent invocations by final status.",
                ["agent", "phase", "status"], state.invocations)
        gauge("agentmon_invocations_running", "Agent invocations running now.",
              ["agent", "phase"], state.invocations_running)
        histogram("agentmon_invocation_duration_seconds",
                  "Duration of finished agent invocations with a known duration.", "agent",
                  state.invocation_hist)
        counter("agentmon_tool_uses", "Finished tool uses by final status.",
                ["agent", "tool", "status"], state.tool_uses)
        gauge("agentmon_tool_uses_running", "Tool uses running now.", ["agent", "tool"],
              state.tool_uses_running)
        histogram("agentmon_tool_use_duration_seconds",
                  "Duration of finished tool uses with a known duration.", "tool",
                  state.tool_use_hist)
        gauge("agentmon_sessions", "Sessions by current status.", ["status"],
              {(k,): v for k, v in state.sessions.items()})
        gauge("agentmon_sessions_active",
              "Sessions with at least one agent invocation or tool use running now.", [],
              {(): state.sessions_active})
        gauge("agentmon_db_up", "1 if the last refresh read the database, else 0.", [],
              {(): 1 if self._up else 0})
        gauge("agentmon_last_refresh_duration_seconds", "Duration of the last refresh.", [],
              {(): self._last_duration})
        gauge("agentmon_last_refresh_timestamp_seconds",
              "Unix time of the last successful refresh (0: none yet).", [],
              {(): self._last_success})
        counter("agentmon_refresh_errors", "Failed refreshes (or checkpoint writes) by reason.",
                ["reason"], {(k,): v for k, v in self._errors.items()})
        counter("agentmon_rows_read", "Rows read from the database by table.", ["table"],
                {(k,): v for k, v in self._rows_read.items()})
        counter("agentmon_label_values_folded",
                "Rows whose label value was folded into other or invalid, by label.", ["label"],
                {(k,): f.folded for k, f in state.folders.items()})
        counter("agentmon_state_rebuilds", "Times the state was rebuilt from the whole database.",
                [], {(): self._rebuilds})
        gauge("agentmon_build_info", "agentmon build information.",
              ["version", "python_version"],
              {(__version__, ".".join(map(str, sys.version_info[:3]))): 1})
        return tuple(families)


def _le(bound: float) -> str:
    return repr(float(bound))
