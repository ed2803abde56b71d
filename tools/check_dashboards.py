#!/usr/bin/env python3
"""Check the Grafana dashboards in a folder (default: the grafana role's files/dashboards/) before
Grafana sees them.

For every dashboard: a uid (unique across the folder) and a title; panel ids unique; panels
inside the 24-column grid and not overlapping; a `datasource` variable of type datasource
(Prometheus-type datasources, the provisioned Prometheus uid by default) and every datasource
reference is that variable, so the dashboard works on Prometheus or the long-term store; every
panel has a description and a unit; every template variable is used; no query names a session
id; and every query, with template variables replaced by sample values, parses as PromQL (each
is written as a recording rule and given to `promtool check rules`, the parser Prometheus
itself uses). Prints one line per problem; exit 1 if any.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
DATASOURCE_UID = "agentmon-prometheus"
# The variable every datasource reference names, and the reference itself.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}
GRID_WIDTH = 24
# Grafana's built-in variables, replaced by values of the right type for the parser.
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
# A session id as a label (matcher, grouping or legend): never in a dashboard.
_SESSION_LABEL = re.compile(r"session_?id|[{,(]\s*session\s*[=!~,)]|\{\{\s*session")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<sel>.+),\s*)?(?P<label>\w+)\)$")


def _datasource_refs(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from _datasource_refs(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item, where)


def _substitute(expr: str, variables: dict[str, dict[str, Any]]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        # Inside a regex matcher any sample value parses; a real value is a label value.
        return ".*" if variables.get(name, {}).get("multi") else "sample"

    return VARIABLE.sub(value, expr)


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def check_dashboard(path: Path, uid: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Structural problems of one dashboard, and its (name, PromQL) queries to parse."""
    problems: list[str] = []
    queries: list[tuple[str, str]] = []
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path.name}: not readable JSON ({exc})"], []
    name = path.name
    for key in ("uid", "title"):
        if not isinstance(board.get(key), str) or not board[key].strip():
            problems.append(f"{name}: no {key}")
    variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
    panels = board.get("panels", [])
    seen_ids: set[Any] = set()
    for panel in panels:
        pid, title = panel.get("id"), panel.get("title", "?")
        here = f"{name}: panel {pid} ({title})"
        if pid in seen_ids:
            problems.append(f"{here}: duplicate panel id")
        seen_ids.add(pid)
        if not str(panel.get("description", "")).strip():
            problems.append(f"{here}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{here}: no unit")
        grid = panel.get("gridPos", {})
        if (
            not all(isinstance(grid.get(k), int) for k in "xywh")
            or grid["x"] < 0
            or grid["x"] + grid["w"] > GRID_WIDTH
            or grid["w"] < 1
            or grid["h"] < 1
        ):
            problems.append(f"{here}: gridPos {grid} is not inside the {GRID_WIDTH}-column grid")
        if not panel.get("targets"):
            problems.append(f"{here}: no query")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if _SESSION_LABEL.search(expr):
                problems.append(f"{here}: query {target.get('refId')} names a session")
            queries.append((f"{here} query {target.get('refId')}", _substitute(expr, variables)))
    for a_index, a in enumerate(panels):
        for b in panels[a_index + 1 :]:
            if "gridPos" in a and "gridPos" in b and _overlaps(a["gridPos"], b["gridPos"]):
                problems.append(f"{name}: panels {a.get('id')} and {b.get('id')} overlap")
    source = variables.get(DATASOURCE_VARIABLE, {})
    if (
        source.get("type") != "datasource"
        or source.get("query") != "prometheus"
        or source.get("current", {}).get("value") != uid
    ):
        problems.append(
            f"{name}: no variable {DATASOURCE_VARIABLE!r} of type datasource (query prometheus)"
            f" defaulting to the provisioned uid {uid!r}"
        )
    for where, ref in _datasource_refs(board, name):
        if ref != DATASOURCE_REF:
            problems.append(f"{where}: datasource {ref!r} is not {DATASOURCE_REF!r}")
    texts = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    texts += [json.dumps(v.get("query")) for v in variables.values()]
    texts += [json.dumps(ref) for _, ref in _datasource_refs(board, name)]
    used = {m.group(1) or m.group(2) for text in texts for m in VARIABLE.finditer(text)}
    for var_name, var in variables.items():
        if var_name not in used:
            problems.append(f"{name}: template variable {var_name} is not used")
        if var.get("type") == "datasource":
            continue
        query = var.get("query", {})
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        found = LABEL_VALUES.match(text)
        if found is None:
            problems.append(f"{name}: variable {var_name}: query {text!r} is not label_values(...)")
        elif found.group("sel"):
            queries.append(
                (f"{name}: variable {var_name}", _substitute(found.group("sel"), variables))
            )
    return problems, queries


def parse_promql(queries: list[tuple[str, str]], promtool: str) -> list[str]:
    """One `promtool check rules` run over every query; a failing file is retried per query."""

    def run(items: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
        rules = [
            {"record": f"dashboard:query{i}", "expr": expr} for i, (_, expr) in enumerate(items)
        ]
        with tempfile.NamedTemporaryFile("w", suffix=".rules.json", delete=False) as f:
            json.dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
        try:
            return subprocess.run(  # noqa: S603 (promtool from PATH or the flag, a temp file)
                [promtool, "check", "rules", f.name],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            Path(f.name).unlink()

    if not queries or run(queries).returncode == 0:
        return []
    problems = []
    for where, expr in queries:
        result = run([(where, expr)])
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            problems.append(
                f"{where}: not valid PromQL: {expr!r} ({detail[-1] if detail else '?'})"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DASHBOARDS)
    parser.add_argument(
        "--datasource-uid",
        default=DATASOURCE_UID,
        help=f"the provisioned Prometheus datasource uid, the dashboards' default"
        f" (default {DATASOURCE_UID})",
    )
    parser.add_argument(
        "--promtool", default=shutil.which("promtool"), help="promtool binary (default: from PATH)"
    )
    args = parser.parse_args(argv)
    if not args.promtool:
        print(
            "check_dashboards.py: promtool not found (apt-get install prometheus)", file=sys.stderr
        )
        return 1
    files = sorted(args.folder.glob("*.json"))
    if not files:
        print(f"check_dashboards.py: no dashboards in {args.folder}", file=sys.stderr)
        return 1
    problems: list[str] = []
    queries: list[tuple[str, str]] = []
    uids: dict[str, str] = {}
    for path in files:
        found, parsed = check_dashboard(path, args.datasource_uid)
        problems += found
        queries += parsed
        try:
            uid = json.loads(path.read_text(encoding="utf-8")).get("uid")
        except (OSError, ValueError):
            uid = None  # reported by check_dashboard
        if uid in uids:
            problems.append(f"{path.name}: uid {uid} is also the uid of {uids[uid]}")
        elif uid:
            uids[uid] = path.name
    problems += parse_promql(queries, args.promtool)
    for line in problems:
        print(line)
    if not problems:
        print(f"{len(files)} dashboards, {len(queries)} queries: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
