# Only this module's own constants (table, column, index names) are interpolated into SQL;
# every value read from outside is bound as a parameter.
# ruff: noqa: S608
"""Every SQL statement ``agentmon serve`` runs, in one place (tests check each query plan).

Hot-path queries name their index with ``INDEXED BY``: with several indexes on a table the
planner has been seen to pick the wrong one, and a missing index then fails loudly (reported as
a not-migrated database) instead of silently scanning the whole history.

Duration rule (one definition, used by the cold start and by the incremental path alike):
``duration_seconds`` when it is a number in [0, 1e9]; otherwise ``end_time - start_time`` when
both are text that starts like an ISO-8601 date-time (``YYYY-MM-DD[T ]HH:MM``) and the difference
is in [0, 1e9]; otherwise unknown (counted, not observed). Times are compared with SQLite's
``julianday``: a time with an offset is converted to UTC, one without an offset is the host's
local time (what the original hooks wrote: ``datetime.now().isoformat()``) and is converted to
UTC with the ``'utc'`` modifier, which asks the C library (so it honours ``TZ``): a duration that
spans a daylight-saving change is right. A wall time that a change skips or repeats is read with
the UTC offset in force after the change; the hook resolves naive times the same way. The result
is rounded to the millisecond, which is SQLite's time resolution.
"""

from __future__ import annotations

from agentmon.schema import statuses
from agentmon.schema.migrations import UNTIMED
from agentmon.schema.statuses import sql_list

MAX_DURATION = 1e9  # seconds (~31 years): anything outside [0, MAX_DURATION] is garbage

# Histogram bucket upper bounds (seconds; +Inf is implicit). Invocations run seconds to hours,
# tool uses milliseconds to minutes.
INVOCATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
)
TOOL_USE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)

_TS_GLOB = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]*'"
# end_time - start_time in seconds, or NULL when either is not a date-time text.
TIMESTAMP_DURATION = (
    "CASE WHEN typeof(start_time) = 'text' AND typeof(end_time) = 'text'"
    f" AND start_time GLOB {_TS_GLOB} AND end_time GLOB {_TS_GLOB}"
    " THEN round((julianday(end_time, 'utc') - julianday(start_time, 'utc')) * 86400.0, 3) END"
)

FINAL = sql_list(statuses.FINAL)

# --- read at the start of every refresh, in the same read transaction as the rest -----------
USER_VERSION = "PRAGMA user_version"
META = (
    "SELECT (SELECT value FROM agentmon_sequence WHERE id = 1),"
    # identity of the file and of this run of change tracking (a new one after down + up)
    " (SELECT value FROM agentmon_meta WHERE key = 'db_id')"
    " || ':' || COALESCE((SELECT value FROM agentmon_meta WHERE key = 'tracking_id'), ''),"
    # deletes and replaces of rows that may have been counted (migration step 5, "removals")
    " (SELECT value FROM agentmon_removals WHERE id = 1)"
)

# The token every removal writes beside the counter (migration step "removal_token"; hex: the
# checkpoint is JSON). A NULL token reads as ''.
REMOVAL_TOKEN = "SELECT hex(token) FROM agentmon_removals WHERE id = 1"  # noqa: S105 - SQL

# What agentmon prune removed (migration step "pruned"): read with the head, and the aggregates
# on a cold start (one row per label combination and bucket: small).
PRUNE_MARK = "SELECT batches, max_seq, sessions FROM agentmon_prune_mark WHERE id = 1"
PRUNED = "SELECT tbl, agent_name, key2, status, le, rows, total FROM agentmon_pruned"


class TableQueries:
    """The queries for one of the two frozen tables (invocations or tool uses).

    ``key2`` is the second label column: ``phase`` for invocations, ``tool_name`` for tool uses.
    """

    def __init__(
        self, table: str, key2: str, agg_index: str, untimed_index: str, running_index: str,
        buckets: tuple[float, ...],
    ) -> None:
        self.table = table
        self.key2 = key2
        self.buckets = buckets
        seq_index = f"idx_{table}_agentmon_seq"
        # Incremental: finished rows whose sequence number is in (watermark, snapshot].
        self.changed = (
            f"SELECT agentmon_seq, id, agent_name, {key2}, status, duration_seconds,"
            f" {TIMESTAMP_DURATION} FROM {table} INDEXED BY {seq_index}"
            f" WHERE agentmon_seq > ? AND agentmon_seq <= ? AND status IN {FINAL}"
            " ORDER BY agentmon_seq LIMIT ?"
        )
        # Running-now gauge: only running rows are in this partial index.
        self.running = (
            f"SELECT agent_name, {key2}, COUNT(*) FROM {table} INDEXED BY {running_index}"
            f" WHERE status = 'running' GROUP BY agent_name, {key2}"
        )
        self.running_sessions = (
            f"SELECT session_id FROM {table} INDEXED BY {running_index} WHERE status = 'running'"
        )
        # Witnesses (see collector.reading): the counted row with the highest sequence number,
        # a row as it is now (by id), and the row with the highest sequence number up to N.
        self.last_counted = (
            f"SELECT id, agentmon_seq FROM {table} INDEXED BY {seq_index}"
            f" WHERE agentmon_seq <= ? AND status IN {FINAL} ORDER BY agentmon_seq DESC LIMIT 1"
        )
        # the metric columns, and two the hook writes once at insert (the event's time and
        # session), so a row written after a restore does not pass for the one counted
        self.row_at = (
            f"SELECT agentmon_seq, agent_name, {key2}, status, duration_seconds, start_time,"
            f" end_time, timestamp, session_id FROM {table} WHERE id = ?"
        )
        self.top_stamp = (
            f"SELECT agentmon_seq, id FROM {table} INDEXED BY {seq_index}"
            " WHERE agentmon_seq <= ? ORDER BY agentmon_seq DESC LIMIT 1"
        )
        # Cold start, step 1: the label combinations with their row counts (covering scan).
        self.cold_groups = (
            f"SELECT agent_name, {key2}, status, COUNT(*) FROM {table} INDEXED BY {agg_index}"
            f" WHERE status IN {FINAL} GROUP BY agent_name, {key2}, status"
        )
        combo = f"agent_name IS ? AND {key2} IS ? AND status = ?"
        # Cold start, step 2: per combination and histogram bucket, one range seek over the
        # covering index ordered by duration_seconds: counting a range is stepping through a
        # B-tree, far cheaper than evaluating a CASE per bucket for every row.
        self.cold_range = (
            f"SELECT COUNT(*), TOTAL(duration_seconds) FROM {table} INDEXED BY {agg_index}"
            f" WHERE {combo} AND duration_seconds > ? AND duration_seconds <= ?"
        )
        self.cold_zero = (
            f"SELECT COUNT(*) FROM {table} INDEXED BY {agg_index}"
            f" WHERE {combo} AND duration_seconds = 0"
        )
        # Cold start, step 3, only for combinations with rows lacking a usable duration_seconds:
        # the timestamp durations, computed once per row in a sub-query (LIMIT -1 keeps SQLite
        # from flattening it, which would recompute the expression for every bucket), then
        # counted per bucket (cumulative) in SQL.
        sums = ", ".join(f"SUM(d <= {bound!r})" for bound in buckets)
        # The condition is the partial index's own text, so the planner can use that index.
        self.cold_timestamps = (
            f"SELECT COUNT(*), TOTAL(d), {sums} FROM (SELECT {TIMESTAMP_DURATION} AS d"
            f" FROM {table}"
            f" INDEXED BY {untimed_index} WHERE {combo} AND ({UNTIMED}) LIMIT -1)"
            f" WHERE d BETWEEN 0 AND {MAX_DURATION:.0f}"
        )


INVOCATIONS = TableQueries(
    "agent_invocations", "phase", "idx_invocations_agent", "idx_invocations_untimed",
    "idx_invocations_running", INVOCATION_BUCKETS,
)
TOOL_USES = TableQueries(
    "agent_tool_uses", "tool_name", "idx_tool_uses_agent", "idx_tool_uses_untimed",
    "idx_tool_uses_running", TOOL_USE_BUCKETS,
)

# --- sessions (not frozen: resumed sessions change status again) -------------------------------
SESSIONS_CHANGED = (
    "SELECT agentmon_seq, rowid, agentmon_created_seq, session_id, status FROM sessions"
    " INDEXED BY idx_sessions_agentmon_seq WHERE agentmon_seq > ? AND agentmon_seq <= ?"
    " ORDER BY agentmon_seq"
)
# Cold start only: the sessions table is small next to the invocation tables.
COLD_SESSIONS = "SELECT status, COUNT(*) FROM sessions GROUP BY status"
COLD_OPEN_SESSIONS = "SELECT session_id, status FROM sessions WHERE status IS NOT 'completed'"
# Only after a refresh read changed sessions: a replaced session looks like a new one, and a
# session inserted after a restore may carry a creation number the state has passed.
SESSION_COUNT = "SELECT COUNT(*) FROM sessions"
# Witness: the session changed last, and on each refresh its sequence numbers now.
SESSION_LAST_CHANGED = (
    "SELECT rowid, agentmon_seq, agentmon_created_seq FROM sessions"
    " INDEXED BY idx_sessions_agentmon_seq WHERE agentmon_seq <= ? ORDER BY agentmon_seq DESC"
    " LIMIT 1"
)
SESSION_ROW_AT = (
    "SELECT agentmon_seq, agentmon_created_seq, session_id, start_time, status FROM sessions"
    " WHERE rowid = ?"
)
SESSION_TOP_STAMP = (
    "SELECT agentmon_seq, rowid FROM sessions INDEXED BY idx_sessions_agentmon_seq"
    " WHERE agentmon_seq <= ? ORDER BY agentmon_seq DESC LIMIT 1"
)

# --- agent_usage (schema step "usage"): append-only, every row a fact counted once ------------
USAGE_KINDS = ("tokens", "api_error", "permission_denied")
_USAGE_KIND_SQL = sql_list(USAGE_KINDS)
USAGE_VALUES = ("kind, agent_name, model, label, input_tokens, output_tokens, cache_read_tokens,"
                " cache_creation_tokens, lines_added, lines_removed")
USAGE_CHANGED = (
    f"SELECT agentmon_seq, id, {USAGE_VALUES} FROM agent_usage"
    " INDEXED BY idx_agent_usage_agentmon_seq WHERE agentmon_seq > ? AND agentmon_seq <= ?"
    f" AND kind IN {_USAGE_KIND_SQL} ORDER BY agentmon_seq LIMIT ?"
)
# Cold start: per label combination, one covering scan of idx_agent_usage_labels.
USAGE_COLD = (
    "SELECT kind, agent_name, model, label, COUNT(*), SUM(input_tokens), SUM(output_tokens),"
    " SUM(cache_read_tokens), SUM(cache_creation_tokens), SUM(lines_added), SUM(lines_removed)"
    f" FROM agent_usage INDEXED BY idx_agent_usage_labels WHERE kind IN {_USAGE_KIND_SQL}"
    " GROUP BY kind, agent_name, model, label"
)
USAGE_LAST_COUNTED = (
    "SELECT id, agentmon_seq FROM agent_usage INDEXED BY idx_agent_usage_agentmon_seq"
    " WHERE agentmon_seq <= ? ORDER BY agentmon_seq DESC LIMIT 1"
)
USAGE_ROW_AT = f"SELECT agentmon_seq, {USAGE_VALUES}, timestamp, session_id, dedup_key" \
    " FROM agent_usage WHERE id = ?"
USAGE_TOP_STAMP = (
    "SELECT agentmon_seq, id FROM agent_usage INDEXED BY idx_agent_usage_agentmon_seq"
    " WHERE agentmon_seq <= ? ORDER BY agentmon_seq DESC LIMIT 1"
)

ACTIVE_SESSIONS = (
    "SELECT COUNT(*) FROM (" + INVOCATIONS.running_sessions + " UNION "
    + TOOL_USES.running_sessions + ")"
)

ALL_QUERIES: dict[str, str] = {
    "meta": META,
    "removal_token": REMOVAL_TOKEN,
    "prune_mark": PRUNE_MARK,
    "pruned": PRUNED,
    "active_sessions": ACTIVE_SESSIONS,
    "sessions_changed": SESSIONS_CHANGED,
    "cold_sessions": COLD_SESSIONS,
    "cold_open_sessions": COLD_OPEN_SESSIONS,
    "session_count": SESSION_COUNT,
    "session_last_changed": SESSION_LAST_CHANGED,
    "session_row_at": SESSION_ROW_AT,
    "session_top_stamp": SESSION_TOP_STAMP,
    "usage_changed": USAGE_CHANGED,
    "usage_cold": USAGE_COLD,
    "usage_last_counted": USAGE_LAST_COUNTED,
    "usage_row_at": USAGE_ROW_AT,
    "usage_top_stamp": USAGE_TOP_STAMP,
    **{
        f"{q.table}.{name}": getattr(q, name)
        for q in (INVOCATIONS, TOOL_USES)
        for name in ("changed", "running", "cold_groups", "cold_range", "cold_zero",
                     "cold_timestamps", "last_counted", "row_at", "top_stamp")
    },
}
