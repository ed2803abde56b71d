"""The pure step from numbers to metric families: a ``State`` and a ``Health`` in, families out.

No SQLite, no clock, no I/O: what is exported is a function of these two values alone, so the
exposition can be tested without a database.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agentmon import __version__
from agentmon.collector.prices import Prices
from agentmon.collector.state import TABLES, Histogram, State
from agentmon.spoolstatus import Totals

REASONS = ("missing", "unreadable", "locked", "corrupt", "not_migrated", "other", "checkpoint")


@dataclass
class Health:
    """The exporter's own numbers (the ``agentmon_*`` self-metrics)."""

    up: bool = False
    last_duration: float = 0.0
    last_success: float = 0.0  # Unix time; 0: none yet
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rows_read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    rebuilds: int = 0
    # the database file (with its WAL) and its filesystem, measured on every refresh
    file_bytes: int = 0
    fs_avail_bytes: int = 0
    fs_size_bytes: int = 0
    unsafe_side_files: int = 0
    # the hooks' spools, summed over the status files the ingest service keeps
    # (agentmon.spoolstatus)
    spool: Totals = field(default_factory=Totals)
    # whether the ingest service answers that it can store (None: no socket configured)
    ingest_up: bool | None = None


def render(state: State, health: Health, prices: Prices | None = None) -> tuple[Metric, ...]:
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
    counter("agentmon_tokens", "Tokens used by agent, model and type (input, output,"
            " cache_read, cache_creation); agent main is the main thread.",
            ["agent", "model", "type"], state.tokens)
    counter("agentmon_lines_changed", "Lines added and removed by subagents (Agent tool stats).",
            ["agent", "type"], state.lines)
    counter("agentmon_api_errors", "Turns that ended on an API error (StopFailure), by error.",
            ["error"], {(k,): v for k, v in state.api_errors.items()})
    counter("agentmon_permission_denials", "Tool calls denied permission, by tool.", ["tool"],
            {(k,): v for k, v in state.denials.items()})
    prices = prices or Prices()
    gauge("agentmon_token_price_usd", "Configured price of one token, by model and type"
          " (--prices.file); cost = tokens x price, see the agentmon:cost_usd rules.",
          ["model", "type"], dict(prices.per_token))
    gauge("agentmon_cost_budget_usd_per_day", "Configured daily cost budget (absent: none).",
          [], {} if prices.daily_budget is None else {(): prices.daily_budget})
    gauge("agentmon_db_up", "1 if the last refresh read the database, else 0.", [],
          {(): 1 if health.up else 0})
    gauge("agentmon_db_unsafe_side_files",
          "Files beside the database (-journal, -wal, -shm) that are links or not regular "
          "files: every hook refuses to write while one is there.", [],
          {(): health.unsafe_side_files})
    gauge("agentmon_last_refresh_duration_seconds", "Duration of the last refresh.", [],
          {(): health.last_duration})
    gauge("agentmon_last_refresh_timestamp_seconds",
          "Unix time of the last successful refresh (0: none yet).", [],
          {(): health.last_success})
    counter("agentmon_refresh_errors", "Failed refreshes (or checkpoint writes) by reason.",
            ["reason"], {(k,): v for k, v in health.errors.items()})
    counter("agentmon_rows_read", "Rows read from the database by table.", ["table"],
            {(k,): v for k, v in health.rows_read.items()})
    counter("agentmon_label_values_folded",
            "Rows whose label value was folded into other or invalid, by label.", ["label"],
            {(k,): f.folded for k, f in state.folders.items()})
    counter("agentmon_state_rebuilds", "Times the state was rebuilt from the whole database.",
            [], {(): health.rebuilds})
    gauge("agentmon_db_file_size_bytes", "Size of the database file and its WAL.", [],
          {(): health.file_bytes})
    gauge("agentmon_db_filesystem_avail_bytes",
          "Bytes free for unprivileged writers on the database's filesystem.", [],
          {(): health.fs_avail_bytes})
    gauge("agentmon_db_filesystem_size_bytes", "Size of the database's filesystem.", [],
          {(): health.fs_size_bytes})
    gauge("agentmon_spool_events_waiting",
          "Hook events kept in users' spools, waiting for the database (sum over users).", [],
          {(): health.spool.waiting})
    counter("agentmon_spool_events_dropped",
            "Hook events ever dropped because a user's spool was full or held a bad file"
            " (sum over users).", [], {(): health.spool.dropped})
    gauge("agentmon_spool_oldest_event_timestamp_seconds",
          "Unix time of the oldest hook event waiting in any spool (0: none waits).", [],
          {(): health.spool.oldest})
    gauge("agentmon_spool_status_files_ignored",
          "Entries of the spool status folder not counted: not owned by the folder's owner"
          " (the ingest service), links, or malformed.", [], {(): health.spool.ignored})
    gauge("agentmon_ingest_up",
          "1 when the ingest service (the hooks' socket) answers that it can store events;"
          " absent without --ingest.socket.", [],
          {} if health.ingest_up is None else {(): float(health.ingest_up)})
    gauge("agentmon_build_info", "agentmon build information.",
          ["version", "python_version"],
          {(__version__, ".".join(map(str, sys.version_info[:3]))): 1})
    return tuple(families)


def _le(bound: float) -> str:
    return repr(float(bound))
