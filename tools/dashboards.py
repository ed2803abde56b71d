#!/usr/bin/env python3
"""Generate the Grafana dashboards in roles/grafana/files/dashboards/ from the definitions below.

    tools/dashboards.py            write roles/grafana/files/dashboards/*.json
    tools/dashboards.py --check    exit 1 if a committed file differs from what this writes

The JSON is committed (it is what Grafana is provisioned with, and what a reviewer reads);
this script only keeps the dashboards consistent: every query on the datasource the
dashboard's `datasource` variable picks (Prometheus by default, or the long-term store), a grid
laid out without overlaps, units and descriptions on every panel. No dependency beyond the
stdlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "roles" / "grafana" / "files" / "dashboards"
# Every query runs on the datasource the `datasource` variable picks: one of the provisioned
# Prometheus-type datasources (agentmon's Prometheus by default, or the long-term store).
DEFAULT_DATASOURCE_UID = "agentmon-prometheus"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
TAGS = ["agentmon"]
# Every agentmon query selects the scraped exporters of the chosen instances.
SEL = 'job="agentmon", instance=~"$instance"'


@dataclass
class Panel:
    title: str
    description: str
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    unit: str
    kind: str = "timeseries"  # timeseries | stat | heatmap | bargauge
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


def _target(ref: int, expr: str, legend: str, kind: str) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": chr(ord("A") + ref),
    }
    if kind == "heatmap":
        target["format"] = "heatmap"
    if kind in ("stat", "bargauge"):
        target["instant"] = True
        target["range"] = False
    return target


def _panel(pid: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": panel.options,
        "targets": [_target(i, e, leg, panel.kind) for i, (e, leg) in enumerate(panel.exprs)],
    }
    if panel.kind == "heatmap":
        body["options"] = {"calculate": False, "yAxis": {"unit": panel.unit}, **panel.options}
    return body


def _layout(panels: list[Panel]) -> list[dict[str, Any]]:
    """Left to right, wrapping at the grid width; a row is as tall as its tallest panel."""
    out, x, y, row_height = [], 0, 0, 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel(pid, panel, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def _variable(name: str, label: str, query: str, *, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        **({"allValue": ".*"} if multi else {}),
        "current": {},
        "hide": 0,
        "options": [],
    }


DATASOURCE_VARIABLE: dict[str, Any] = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    # Only agentmon's own: its Prometheus and the long-term store (VictoriaMetrics).
    "regex": "/^agentmon /",
    "current": {"text": "agentmon Prometheus", "value": DEFAULT_DATASOURCE_UID},
    "hide": 0,
    "options": [],
}

INSTANCE = _variable(
    "instance", "Agent host", 'label_values(agentmon_build_info{job="agentmon"}, instance)',
    multi=True,
)


def rate(metric: str, sel: str = SEL, status: str = "") -> str:
    """``rate(metric{selector}[$__rate_interval])``, optionally for one final status."""
    matchers = f'{sel}, status="{status}"' if status else sel
    return f"rate({metric}{{{matchers}}}[$__rate_interval])"


def per_minute(metric: str, by: str, sel: str = SEL) -> tuple[str, str]:
    return f"sum by ({by}) ({rate(metric, sel)}) * 60", "{{" + by + "}}"


def ratio(metric: str, status: str, sel: str = SEL) -> str:
    """Share of one status; 0 (not "no data") while that status has no series yet."""
    return f"(sum({rate(metric, sel, status)}) or vector(0)) / sum({rate(metric, sel)})"


def quantile(q: str, metric: str, by: str, sel: str = SEL) -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({rate(metric + '_bucket', sel)}))"


INV, TOOL = "agentmon_invocations_total", "agentmon_tool_uses_total"
INV_DURATION = "agentmon_invocation_duration_seconds"
TOOL_DURATION = "agentmon_tool_use_duration_seconds"
STAT = {"reduceOptions": {"calcs": ["lastNotNull"]}}


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "annotations": {"list": []},
        "links": [{"title": "agentmon", "type": "dashboards", "tags": TAGS, "asDropdown": True}],
        "panels": _layout(panels),
        "version": 1,
    }


def overview() -> dict[str, Any]:
    panels = [
        Panel("Invocations per minute", "Finished subagent invocations per minute, by status.",
              [per_minute(INV, "status")], "short"),
        Panel("Success ratio",
              "Share of finished invocations that completed (not error or interrupted).",
              [(ratio(INV, "completed"), "success")], "percentunit"),
        Panel("Failures by agent", "Invocations that ended in error, per agent, per minute.",
              [(f"sum by (agent) ({rate(INV, status='error')}) * 60", "{{agent}}")], "short"),
        Panel("Invocation duration p50 / p95 by agent",
              "Quantiles of finished invocations' durations, from the histogram buckets.",
              [(quantile(q, INV_DURATION, "agent, le"), f"p{p} {{{{agent}}}}")
               for q, p in (("0.5", "50"), ("0.95", "95"))], "s"),
        Panel("Tool uses by tool", "Finished tool uses per minute, by tool.",
              [per_minute(TOOL, "tool")], "short"),
        Panel("Active sessions", "Sessions with an invocation or a tool use running now.",
              [(f"sum(agentmon_sessions_active{{{SEL}}})", "active")], "short",
              kind="stat", width=6, options=STAT),
        Panel("Running now", "Invocations and tool uses with status running now.",
              [(f"sum(agentmon_invocations_running{{{SEL}}}) or vector(0)", "invocations"),
               (f"sum(agentmon_tool_uses_running{{{SEL}}}) or vector(0)", "tool uses")], "short",
              kind="stat", width=6, options=STAT),
        Panel("Interrupted work", "Invocations and tool uses that were still running when their "
              "session ended (status interrupted), per hour.",
              [(f"sum({rate(INV, status='interrupted')}) * 3600 or vector(0)", "invocations"),
               (f"sum({rate(TOOL, status='interrupted')}) * 3600 or vector(0)", "tool uses")],
              "short"),
    ]
    return dashboard("agentmon-overview", "agentmon / Overview",
                     "Subagent invocations, tool uses and sessions across the chosen agent hosts.",
                     panels, [INSTANCE])


def agent() -> dict[str, Any]:
    sel = f'{SEL}, agent=~"$agent"'
    panels = [
        Panel("Invocations by status", "Finished invocations of the agent per minute, by status.",
              [per_minute(INV, "status", sel)], "short"),
        Panel("Error ratio", "Share of the agent's finished invocations that ended in error.",
              [(ratio(INV, "error", sel), "error ratio")], "percentunit"),
        Panel("Duration p50 / p95 / p99", "Quantiles of the agent's invocation durations.",
              [(quantile(q, INV_DURATION, "le", sel), f"p{p}")
               for q, p in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))], "s"),
        Panel("Tool uses by tool", "Tool uses made inside the agent's invocations, per minute.",
              [per_minute(TOOL, "tool", sel)], "short"),
        Panel("Running now", "The agent's invocations running now.",
              [(f"sum(agentmon_invocations_running{{{sel}}}) or vector(0)", "running")], "short",
              kind="stat", width=24, height=6, options=STAT),
    ]
    variable = _variable("agent", "Agent", f'label_values({INV}{{job="agentmon"}}, agent)',
                         multi=False)
    return dashboard("agentmon-agent", "agentmon / Agent",
                     "One subagent type: its invocations, failures, durations and tools.",
                     panels, [INSTANCE, variable])


def tools() -> dict[str, Any]:
    sel = f'{SEL}, tool=~"$tool"'
    buckets = f"sum by (le) (increase({TOOL_DURATION}_bucket{{{sel}}}[$__rate_interval]))"
    panels = [
        Panel("Uses by status", "Finished uses of the tool per minute, by final status.",
              [per_minute(TOOL, "status", sel)], "short"),
        Panel("Error ratio", "Share of the tool's finished uses that ended in error.",
              [(ratio(TOOL, "error", sel), "error ratio")], "percentunit"),
        Panel("Duration heatmap",
              "How the tool's durations are distributed over time (histogram buckets).",
              [(buckets, "{{le}}")], "s", kind="heatmap", width=24),
        Panel("Duration p50 / p95", "Quantiles of the tool's durations.",
              [(quantile(q, TOOL_DURATION, "le", sel), f"p{p}")
               for q, p in (("0.5", "50"), ("0.95", "95"))], "s"),
        Panel("Uses by agent", "Which agents use the tool, per minute.",
              [per_minute(TOOL, "agent", sel)], "short"),
    ]
    variable = _variable("tool", "Tool", f'label_values({TOOL}{{job="agentmon"}}, tool)',
                         multi=False)
    return dashboard("agentmon-tools", "agentmon / Tools",
                     "One tool (built-in or MCP): how often it runs, fails, and how long it takes.",
                     panels, [INSTANCE, variable])


def stack_health() -> dict[str, Any]:
    up = {"colorMode": "background", **STAT}
    panels = [
        Panel("Targets up", "1 when Prometheus' last scrape of the exporter (via nginx) worked.",
              [(f"up{{{SEL}}}", "{{instance}}")], "short", kind="stat", width=8, options=up),
        Panel("Database up", "1 when the exporter's last refresh read its database.",
              [(f"agentmon_db_up{{{SEL}}}", "{{instance}}")], "short", kind="stat", width=8,
              options=up),
        Panel("Alerts firing", "Alerts firing now, by name (Watchdog always fires).",
              [('sum by (alertname) (ALERTS{alertstate="firing"})', "{{alertname}}")], "short",
              kind="bargauge", width=8, options=STAT),
        Panel("Refresh duration", "How long the exporter's last refresh took.",
              [(f"agentmon_last_refresh_duration_seconds{{{SEL}}}", "{{instance}}")], "s"),
        Panel("Time since last good refresh", "Seconds since the exporter last refreshed.",
              [(f"time() - agentmon_last_refresh_timestamp_seconds{{{SEL}}}", "{{instance}}")],
              "s"),
        Panel("Refresh errors by reason", "Failed refreshes per minute, by reason (locked, ...).",
              [(f"sum by (instance, reason) ({rate('agentmon_refresh_errors_total')}) * 60",
                "{{instance}} {{reason}}")], "short"),
        Panel("Scrape duration", "How long Prometheus' scrape of each exporter took.",
              [(f"scrape_duration_seconds{{{SEL}}}", "{{instance}}")], "s"),
    ]
    return dashboard("agentmon-stack-health", "agentmon / Stack health",
                     "Is the monitoring itself working: targets, databases, refreshes, alerts.",
                     panels, [INSTANCE])


TOKENS = "agentmon_tokens_total"
PRICE = "agentmon_token_price_usd"


def cost(sel: str = SEL) -> str:
    """USD per second by agent and model: tokens times the price the same host was given (the
    expression of the instance_agent_model:agentmon_cost_usd:rate5m rule, with the dashboard's
    selector); a model without a price has no series."""
    return (f"sum by (agent, model) ({rate(TOKENS, sel)} * on (job, instance, model, type)"
            f" group_left {PRICE}{{{SEL}}})")


def usage() -> dict[str, Any]:
    sel = f'{SEL}, agent=~"$agent"'
    inputs = f'{sel}, type=~"input|cache_read|cache_creation"'
    hits = f'{sel}, type="cache_read"'
    completed = f"sum by (agent) ({rate(INV, sel, 'completed')})"
    panels = [
        Panel("Tokens per minute by agent and type",
              "Tokens per minute (input, output, cache reads, cache writes); agent main is the"
              " main thread.", [(f"sum by (agent, type) ({rate(TOKENS, sel)}) * 60",
                                 "{{agent}} {{type}}")], "short"),
        Panel("Tokens per minute by model", "Tokens per minute of every type, by model.",
              [per_minute(TOKENS, "model", sel)], "short"),
        Panel("Cost per hour by agent and model",
              "USD per hour: tokens times the configured price of their model and type"
              " (--prices.file). A model without a price has tokens and no cost here.",
              [(f"{cost(sel)} * 3600", "{{agent}} {{model}}")], "currencyUSD"),
        Panel("Cost per completed invocation",
              "USD a subagent spends per invocation that completed (its cost over the window"
              " divided by its completed invocations).",
              [(f"sum by (agent) ({cost(sel)}) / {completed}", "{{agent}}")], "currencyUSD"),
        Panel("Cache hit ratio", "Share of input tokens read from the prompt cache (of fresh"
              " input, cache reads and cache writes).",
              [(f"sum({rate(TOKENS, hits)}) / sum({rate(TOKENS, inputs)})", "cache hits")],
              "percentunit"),
        Panel("Lines changed by agent", "Lines added and removed per hour by subagents (the"
              " Agent tool's toolStats).",
              [(f"sum by (agent, type) ({rate('agentmon_lines_changed_total', sel)}) * 3600",
                "{{agent}} {{type}}")], "short"),
        Panel("API errors by error", "Turns that ended on an API error (StopFailure) per hour,"
              " by error.",
              [(f"sum by (error) ({rate('agentmon_api_errors_total')}) * 3600", "{{error}}")],
              "short"),
        Panel("Permission denials by tool", "Tool calls denied permission per hour, by tool.",
              [(f"sum by (tool) ({rate('agentmon_permission_denials_total')}) * 3600",
                "{{tool}}")], "short"),
    ]
    variable = _variable("agent", "Agent", f'label_values({TOKENS}{{job="agentmon"}}, agent)',
                         multi=True)
    return dashboard("agentmon-usage", "agentmon / Usage",
                     "Tokens and cost by agent and model, cost per completed invocation, cache"
                     " hit ratio, lines changed, API errors and permission denials.",
                     panels, [INSTANCE, variable])


DASHBOARDS = {"overview": overview, "agent": agent, "tools": tools, "stack-health": stack_health,
              "usage": usage}


def render() -> dict[str, str]:
    return {
        f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"dashboards.py: {path} is not what tools/dashboards.py writes: run it and commit")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
