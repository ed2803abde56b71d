"""Writes of one validated hook event: sessions, agent invocations and tool uses.

Everything an event changes happens in one ``BEGIN IMMEDIATE`` transaction. Pre/Post/Failure
events are paired by ``tool_use_id`` within their session. A finished row (status completed,
error or interrupted) is frozen by the change-tracking triggers (schema steps 3 and 4), so every
finish is one UPDATE, and a duplicate Post changes nothing.

Events may arrive in any order (Claude Code runs async hooks in the background): a Post without
its Pre inserts the finished row, and a Pre whose row exists (running or finished) changes
nothing, so no order leaves a row running or counts it twice. Rows still running when their
session ends, or running longer than ``interrupt_after`` seconds, become ``interrupted``.

A background subagent (an Agent call whose response is ``status: "async_launched"``) stays
running until its SubagentStop (found by ``agent_id``), which finishes it and records the usage
in its transcript. Token usage, API errors and permission denials go to ``agent_usage``
(``agentmon.hook.usage``). An event's ``agent_id`` names the subagent that made it; without
one it is the main thread's, as the SDK documents (``agent_type`` alone is a main thread started
with ``--agent``); only an event of an older client, with neither and no ``prompt_id``, is
attributed to the session's newest running invocation.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from agentmon.hook import bounds, transcripts, usage
from agentmon.hook.values import (
    clean_text,
    parse_time,
    reported_duration,
    result_summary,
    seconds_between,
    short_text,
)
from agentmon.schema import labels
from agentmon.schema.statuses import FINAL, INTERRUPTED, sql_list

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

AGENT_TOOLS = frozenset({"Task", "Agent"})
TOOL_EVENTS = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure"})
TABLES = ("agent_invocations", "agent_tool_uses")
FINAL_SQL = sql_list(FINAL)


class Store:
    """Applies one event to an open writer connection (autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection, *, max_payload_bytes: int,
                 phase: str | None = None, now: datetime | None = None,
                 interrupt_after: float | None = None,
                 transcript_budget: int = usage.DEFAULT_BUDGET,
                 passed: Mapping[str, int] | None = None, uid: int | None = None) -> None:
        """``passed`` (the ingest service): transcript field -> the descriptor its peer ``uid``
        opened; a transcript without one is not read. Without it the paths are opened."""
        self.conn = conn
        self.max_payload = max_payload_bytes
        self.phase = labels.clean(phase)
        self.interrupt_after = interrupt_after or None  # seconds; 0 / None: never
        self.when = now or datetime.now(UTC)
        self.now = self.when.isoformat()
        self.transcript_budget = transcript_budget
        self.passed = passed
        self.uid = uid
        self.warning: str | None = None  # a problem worth one line on stderr; nothing lost

    def record(self, event: dict[str, Any], guard: Callable[[], None] | None = None) -> None:
        """Apply ``event`` in one transaction. ``guard`` runs once the write lock is held and
        again just before the commit; whatever it raises rolls the event back."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if guard is not None:
                guard()
            self._apply(event)
            if guard is not None:
                guard()
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _apply(self, event: dict[str, Any]) -> None:
        name = event["hook_event_name"]
        sid = event["session_id"]
        if name == "SessionStart":
            self._session_start(sid, event)
            self._interrupt_stale()
            return
        if name == "SessionEnd":
            self._session_end(sid, event)
            self._interrupt_session(sid)
            self._interrupt_stale()
            return
        self._ensure_session(sid, event)
        if name in TOOL_EVENTS:
            table = ("agent_invocations" if event["tool_name"] in AGENT_TOOLS
                     else "agent_tool_uses")
            if name == "PreToolUse":
                self._start(table, sid, event)
            else:
                self._finish(table, sid, event)
        elif name == "SubagentStart":
            self._subagent_start(sid, event)
        elif name == "SubagentStop":
            self._subagent_stop(sid, event)
        elif name == "Stop":
            self._main_usage(sid, event)
        elif name == "StopFailure":
            self._fact(sid, event, usage.API_ERROR, labels.clean(event.get("error")) or "unknown",
                       None)
        elif name == "PermissionDenied":
            tool_use_id = event.get("tool_use_id")
            self._fact(sid, event, usage.PERMISSION_DENIED,
                       labels.clean(event.get("tool_name"), 192),
                       f"denied:{sid}:{tool_use_id}" if isinstance(tool_use_id, str) else None)
        # Every other known event (Notification, PermissionRequest, PostCompact, ...) only
        # ensures its session: it carries nothing the metrics use.

    # sessions ----------------------------------------------------------------------------

    def _ensure_session(self, sid: str, event: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO sessions (session_id, start_time, status, cwd) VALUES (?, ?, 'active', ?)"
            " ON CONFLICT (session_id) DO NOTHING",
            (sid, self.now, clean_text(event.get("cwd"))),
        )

    def _metadata(self, event: dict[str, Any], *keys: str) -> str:
        return bounds.payload({k: event[k] for k in keys if k in event}, self.max_payload)

    def _session_start(self, sid: str, event: dict[str, Any]) -> None:
        # A resumed session becomes active again; its first start_time stays. New metadata
        # is merged into a stored JSON object (the original project's may be anything).
        self.conn.execute(
            "INSERT INTO sessions (session_id, start_time, status, cwd, metadata)"
            " VALUES (?, ?, 'active', ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET status = 'active', end_time = NULL,"
            " cwd = coalesce(excluded.cwd, cwd), metadata = CASE WHEN json_valid(metadata)"
            " AND json_type(metadata) = 'object' THEN json_patch(metadata, excluded.metadata)"
            " ELSE excluded.metadata END",
            (sid, self.now, clean_text(event.get("cwd")),
             self._metadata(event, "source", "permission_mode")),
        )

    def _session_end(self, sid: str, event: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO sessions (session_id, start_time, end_time, status, cwd, metadata)"
            " VALUES (?, ?, ?, 'completed', ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET status = 'completed',"
            " end_time = excluded.end_time, metadata = CASE WHEN json_valid(metadata)"
            " AND json_type(metadata) = 'object' THEN json_patch(metadata, excluded.metadata)"
            " ELSE excluded.metadata END",
            (sid, self.now, self.now, clean_text(event.get("cwd")),
             self._metadata(event, "reason")),
        )

    # attribution -------------------------------------------------------------------------

    def _running_invocation(self, sid: str, agent: str | None,
                            unstopped: bool = False) -> tuple[int, str | None] | None:
        sql = ("SELECT id, agent_name FROM agent_invocations"
               " WHERE session_id = ? AND status = 'running'")
        args: list[Any] = [sid]
        if agent is not None:
            sql += " AND (agent_type = ? OR agent_name = ?)"
            args += [agent, agent]
        if unstopped:
            sql += " AND end_time IS NULL"
        row = self.conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return (int(row[0]), row[1]) if row else None

    def _by_agent_id(self, sid: str, agent_id: Any) -> tuple[int, str | None] | None:
        if not isinstance(agent_id, str):
            return None
        row = self.conn.execute(
            "SELECT id, agent_name FROM agent_invocations WHERE agent_id = ? AND session_id = ?"
            " ORDER BY id DESC LIMIT 1", (agent_id, sid)).fetchone()
        return (int(row[0]), row[1]) if row else None

    def _attribution(self, sid: str, event: dict[str, Any]) -> tuple[str, int | None]:
        """(agent_name, agent_invocation_id) of the agent that made this call, per session."""
        agent_id = event.get("agent_id")
        found = self._by_agent_id(sid, agent_id)
        if found is not None:  # a subagent's own event, and SubagentStart named its row
            return found[1] or "unknown", found[0]
        agent = labels.clean(event.get("agent_type"))
        if agent_id is None and (agent is not None or "prompt_id" in event):
            return "main", None  # the SDK: no agent_id is the main thread, even with --agent
        if agent is not None:
            found = self._running_invocation(sid, agent)
            return agent, found[0] if found else None
        if agent_id is not None:
            return "unknown", None
        found = self._running_invocation(sid, None)
        if found:
            return found[1] or "unknown", found[0]
        return "main", None

    # agent invocations (tools Task / Agent) ----------------------------------------------

    def _find(self, table: str, sid: str, tool_use_id: str) -> tuple[int, Any, Any] | None:
        row = self.conn.execute(
            f"SELECT id, status, start_time FROM {table}"  # noqa: S608 - table is a constant
            " WHERE tool_use_id = ? AND session_id = ? ORDER BY id DESC LIMIT 1",
            (tool_use_id, sid),
        ).fetchone()
        return (int(row[0]), row[1], row[2]) if row else None

    def _invocation_columns(self, sid: str, event: dict[str, Any]) -> dict[str, Any]:
        tool_input = event["tool_input"]
        subagent = labels.clean(tool_input.get("subagent_type"))
        prompt = tool_input.get("prompt")
        return {
            "timestamp": self.now,
            "session_id": sid,
            "event_type": event["hook_event_name"],
            "phase": self.phase,
            "agent_name": subagent or "unknown",
            "agent_type": subagent,
            "model": labels.clean(tool_input.get("model")),
            "prompt": bounds.text(prompt, self.max_payload) if isinstance(prompt, str) else None,
            "parent_agent": self._attribution(sid, event)[0],
            "raw_input": bounds.payload(tool_input, self.max_payload),
            "tool_use_id": event["tool_use_id"],
            "prompt_id": short_text(event.get("prompt_id")),
            "background": 1 if tool_input.get("run_in_background") is True else None,
        }

    def _finish_values(self, event: dict[str, Any], start: Any) -> dict[str, Any]:
        failed = event["hook_event_name"] == "PostToolUseFailure"
        response = event.get("tool_response")
        # duration_ms: the tool's own execution time (no permission prompt, no hook time)
        duration = reported_duration(event, "duration_ms")
        if duration is None:
            duration = reported_duration(response)
        if duration is None:
            duration = seconds_between(start, self.when)
        status = "completed"
        if failed:
            status = INTERRUPTED if event.get("is_interrupt") is True else "error"
        return {
            "status": status,
            "end_time": self.now,
            "duration_seconds": duration,
            "error": bounds.text(event["error"], self.max_payload) if failed else None,
            "output": None if failed else bounds.payload(response, self.max_payload),
        }

    # Pre / Post / PostToolUseFailure, the same for both tables -------------------------

    def _columns(self, table: str, sid: str, event: dict[str, Any]) -> dict[str, Any]:
        if table == "agent_invocations":
            return self._invocation_columns(sid, event)
        return self._tool_columns(sid, event)

    def _start(self, table: str, sid: str, event: dict[str, Any]) -> None:
        if self._find(table, sid, event["tool_use_id"]):
            return  # a repeated PreToolUse
        row = self._columns(table, sid, event)
        row.update(start_time=self.now, status="running")
        if self._session_ended(sid):
            # A late (async) Pre of a session that has ended: its work was interrupted with it.
            row.update(status=INTERRUPTED, error=f"interrupted: its session had ended ({self.now})")
        self._insert(table, row)

    def _session_ended(self, sid: str) -> bool:
        row = self.conn.execute("SELECT status FROM sessions WHERE session_id = ?",
                                (sid,)).fetchone()
        return row is not None and row[0] == "completed"

    def _finish(self, table: str, sid: str, event: dict[str, Any]) -> None:
        found = self._find(table, sid, event["tool_use_id"])
        if found is not None and found[1] in FINAL:
            return  # a repeated Post: the row is final
        response = event.get("tool_response")
        if table == "agent_invocations" and event["hook_event_name"] == "PostToolUse" \
                and isinstance(response, dict) and response.get("status") == "async_launched":
            self._launched(sid, event, response, found)
            return
        if table == "agent_invocations" and event["hook_event_name"] == "PostToolUse":
            self._agent_usage(sid, event, response)
        done = self._finish_values(event, None if found is None else found[2])
        if table == "agent_invocations":
            outputs = {"raw_output": done["output"],
                       "result_summary": result_summary(event.get("tool_response"))}
        else:
            outputs = {"tool_output": done["output"]}
        if found is None:
            # A Post without its Pre (hook installed mid-call, Pre rejected...): keep it anyway.
            row = self._columns(table, sid, event)
            row.update(self._finished_row(done), **outputs)
            self._insert(table, row)
            return
        values = {"status": done["status"], "end_time": done["end_time"],
                  "duration_seconds": done["duration_seconds"], "error": done["error"], **outputs}
        assignments = ", ".join(f"{column} = ?" for column in values)
        # One UPDATE: the freeze trigger ignores any later change to a finished row.
        self.conn.execute(
            f"UPDATE {table} SET {assignments} WHERE id = ?"  # noqa: S608 - fixed names
            f" AND (status IS NULL OR status NOT IN {FINAL_SQL})",
            (*values.values(), found[0]),
        )

    # background subagents and usage ------------------------------------------------------

    def _launched(self, sid: str, event: dict[str, Any], response: dict[str, Any],
                  found: tuple[int, Any, Any] | None) -> None:
        """A background Agent call returned at launch: it runs until its SubagentStop."""
        agent_id = short_text(response.get("agentId"), 128)
        output = bounds.payload(response, self.max_payload)
        if found is None:
            row = self._columns("agent_invocations", sid, event)
            row.update(start_time=self.now, status="running", background=1, agent_id=agent_id,
                       raw_output=output)
            self._insert("agent_invocations", row)
            return
        self.conn.execute(
            "UPDATE agent_invocations SET background = 1, agent_id = coalesce(agent_id, ?),"
            " raw_output = ? WHERE id = ?", (agent_id, output, found[0]))
        # its SubagentStop came first (async hooks): it has ended
        (end,) = self.conn.execute("SELECT end_time FROM agent_invocations WHERE id = ?",
                                   (found[0],)).fetchone()
        ended = parse_time(end)
        if ended is not None:
            self._complete_background(found[0], found[2], end, ended)

    def _complete_background(self, row_id: int, start: Any, end: str, ended: datetime) -> None:
        self.conn.execute(
            "UPDATE agent_invocations SET status = 'completed', end_time = ?,"  # noqa: S608
            f" duration_seconds = ? WHERE id = ? AND status NOT IN {FINAL_SQL}",
            (end, seconds_between(start, ended), row_id))

    def _usage_row(self, sid: str, event: dict[str, Any], agent: str | None,
                   model: str | None, counts: dict[str, int]) -> dict[str, Any]:
        return {"timestamp": self.now, "session_id": sid, "kind": usage.TOKENS,
                "agent_name": agent, "model": labels.clean(model, 128),
                "prompt_id": short_text(event.get("prompt_id")),
                "agent_id": short_text(event.get("agent_id"), 128),
                "tool_use_id": short_text(event.get("tool_use_id"), 128), **counts}

    def _agent_usage(self, sid: str, event: dict[str, Any], response: Any) -> None:
        """A foreground subagent's usage, from its Agent tool response."""
        counts = usage.tokens(response.get("usage") if isinstance(response, dict) else None)
        if counts is None:
            return
        assert isinstance(response, dict)  # noqa: S101 - tokens() returned counts
        stats = response.get("toolStats")
        if isinstance(stats, dict):
            counts.update(lines_added=usage.count(stats.get("linesAdded")),
                          lines_removed=usage.count(stats.get("linesRemoved")))
        model = response.get("resolvedModel")
        used = response.get("modelsUsed")
        if not isinstance(model, str) and isinstance(used, list) and len(used) == 1:
            model = used[0]
        if not isinstance(model, str):
            model = event["tool_input"].get("model")
        agent = labels.clean(event["tool_input"].get("subagent_type")) or "unknown"
        row = self._usage_row(sid, event, agent, model, counts)
        row["agent_id"] = short_text(response.get("agentId"), 128)
        usage.record(self.conn, f"agent:{sid}:{event['tool_use_id']}", row)

    def _fact(self, sid: str, event: dict[str, Any], kind: str, what: str | None,
              key: str | None) -> None:
        """One API error (StopFailure) or permission denial."""
        row = self._usage_row(sid, event, None, None, {})
        row.update(kind=kind, label=what)
        if key is None:
            self._insert("agent_usage", row)
        else:
            usage.record(self.conn, key, row)

    def _read_usage(self, sid: str, event: dict[str, Any], agent: str,
                    sidechain: bool) -> None:
        field = transcripts.FIELDS[event["hook_event_name"]]
        path = event.get(field)
        if not isinstance(path, str) or not path:
            return
        fd = None
        if self.passed is not None:
            fd = self.passed.get(field)
            if fd is None:
                return  # the hook could not open it (not written yet): nothing to count
        try:
            usage.read_transcript(
                self.conn, path, budget=self.transcript_budget, sidechain=sidechain,
                row=lambda model, counts: self._usage_row(sid, event, agent, model, counts),
                fd=fd, uid=self.uid)
        except FileNotFoundError:
            return  # nothing written yet: nothing to count
        except OSError as exc:
            self.warning = f"transcript not read: {exc}"

    def _main_usage(self, sid: str, event: dict[str, Any]) -> None:
        """The main thread's tokens: its transcript's new assistant messages."""
        self._read_usage(sid, event, "main", sidechain=False)

    def _finished_row(self, done: dict[str, Any]) -> dict[str, Any]:
        duration = done["duration_seconds"]
        start = None
        if duration is not None:
            start = datetime.fromtimestamp(self.when.timestamp() - duration, UTC).isoformat()
        return {"status": done["status"], "start_time": start, "end_time": done["end_time"],
                "duration_seconds": duration, "error": done["error"]}

    def _subagent_start(self, sid: str, event: dict[str, Any]) -> None:
        # Never a bare row (only the Task/Agent call's Pre and Post decide a row's existence
        # and status, whatever their order): name the oldest running invocation of this type
        # that has no agent_id yet, so the subagent's own events and its SubagentStop find it.
        agent_id = event.get("agent_id")
        if not isinstance(agent_id, str) or self._by_agent_id(sid, agent_id) is not None:
            return
        sql = ("SELECT id FROM agent_invocations WHERE session_id = ? AND status = 'running'"
               " AND agent_id IS NULL")
        args: list[Any] = [sid]
        agent = labels.clean(event.get("agent_type"))
        if agent is not None:
            sql += " AND (agent_type = ? OR agent_name = ?)"
            args += [agent, agent]
        row = self.conn.execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
        if row is not None:
            self.conn.execute("UPDATE agent_invocations SET agent_id = ? WHERE id = ?",
                              (agent_id, row[0]))

    def _subagent_stop(self, sid: str, event: dict[str, Any]) -> None:
        # Never a bare row: stamp the end of the matching running invocation; PostToolUse
        # of its Task/Agent call will set the status. Its agent_id finds it exactly. A
        # background one has had its Post: this stop finishes it.
        agent_id = event.get("agent_id")
        found = self._by_agent_id(sid, agent_id)
        if found is not None:
            row = self.conn.execute("SELECT background, status, start_time FROM agent_invocations"
                                    " WHERE id = ?", (found[0],)).fetchone()
            if row[0] == 1 and row[1] == "running":
                self._complete_background(found[0], row[2], self.now, self.when)
                self._read_usage(sid, event, found[1] or "unknown", sidechain=True)
                return
        if found is None:
            found = self._running_invocation(sid, labels.clean(event.get("agent_type")),
                                             unstopped=True)
        if found is not None:
            # end_time of a finished row is frozen: a stop arriving after the Post changes nothing
            self.conn.execute(
                "UPDATE agent_invocations SET end_time = ?, agent_id = coalesce(agent_id, ?)"
                " WHERE id = ? AND status = 'running'",
                (self.now, agent_id if isinstance(agent_id, str) else None, found[0]))

    # work that never finishes ------------------------------------------------------------

    def _interrupt(self, table: str, ids: list[int], reason: str) -> None:
        # end_time and duration stay NULL: the time until the interruption is not the work's
        # duration, so the row is counted (status interrupted) but not observed in histograms.
        for row_id in ids:
            self.conn.execute(
                f"UPDATE {table} SET status = ?, error = ? WHERE id = ?"  # noqa: S608 - fixed
                " AND status = 'running'", (INTERRUPTED, reason, row_id))

    def _interrupt_session(self, sid: str) -> None:
        """Rows of this session still running when it ends will never finish."""
        for table in TABLES:
            # 'running' as a literal: SQLite uses the partial running index only then
            ids = [int(r[0]) for r in self.conn.execute(
                f"SELECT id FROM {table} WHERE session_id = ? AND status = 'running'",  # noqa: S608
                (sid,))]
            self._interrupt(table, ids, f"interrupted: its session ended ({self.now})")

    def _interrupt_stale(self) -> None:
        """Rows of any session running longer than ``interrupt_after`` seconds."""
        if self.interrupt_after is None:
            return
        for table in TABLES:
            # Only running rows are in the partial running index: this reads rows running now.
            stale = []
            for row_id, start in self.conn.execute(
                    f"SELECT id, start_time FROM {table} WHERE status = 'running'"):  # noqa: S608
                began = parse_time(start)
                if began is not None and (self.when - began).total_seconds() > self.interrupt_after:
                    stale.append(int(row_id))
            self._interrupt(table, stale, f"interrupted: still running after"
                            f" {self.interrupt_after:g} s ({self.now})")

    # tool uses ---------------------------------------------------------------------------

    def _tool_columns(self, sid: str, event: dict[str, Any]) -> dict[str, Any]:
        agent, invocation = self._attribution(sid, event)
        # The session's newest numbered row holds its highest number (each insert is max + 1
        # under the write lock); reading it backwards through the session index is O(log n),
        # where max() would read every row of a long session.
        (sequence,) = self.conn.execute(
            "SELECT coalesce(max(sequence_number), 0) + 1 FROM (SELECT sequence_number"
            " FROM agent_tool_uses WHERE session_id = ? AND sequence_number IS NOT NULL"
            " ORDER BY id DESC LIMIT 1)", (sid,)
        ).fetchone()
        return {
            "timestamp": self.now,
            "session_id": sid,
            "agent_name": agent,
            "agent_invocation_id": invocation,
            "tool_name": event["tool_name"],
            "tool_input": bounds.payload(event["tool_input"], self.max_payload),
            "sequence_number": sequence,
            "tool_use_id": event["tool_use_id"],
            "prompt_id": short_text(event.get("prompt_id")),
            "agent_id": short_text(event.get("agent_id"), 128),
        }

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        self.conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed names
            tuple(row.values()),
        )
