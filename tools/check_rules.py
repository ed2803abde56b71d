#!/usr/bin/env python3
"""Check agentmon's Prometheus rules against the project's conventions.

promtool checks that the rules parse and that the unit tests pass; this checks what it cannot:
- recording rules are named level:metric:operations, ratios as <a>_per_<b>:ratio_...;
- alerts are CamelCase with the Agentmon prefix, have `severity` (critical, warning or none), a
  static `summary` ending in a period, a templated `description` and a `runbook_url`
  docs/runbook.md#<alert name in lower case> whose heading exists in that page's Runbook
  section;
- every agentmon metric the rules read is one the metrics reference (docs/metrics.md, generated
  from the exporter's code by tools/metrics_doc.py) lists;
- every alert has a unit test where it fires and one where it stays silent (the Watchdog, which
  is never silent, only the first), and every recording
  rule is evaluated by a unit test.
Prints one line per problem and exits 1 if there is any.

Usage: check_rules.py RULES_DIR RUNBOOK_PAGE METRICS_PAGE
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
ALERT_NAME = re.compile(r"^Agentmon(?:[A-Z][a-z0-9]*)+$")
SEVERITIES = {"critical", "warning", "none"}
# Where runbook_url points, relative to the repository (prefix it with where the docs are served).
RUNBOOK_URL = "docs/runbook.md"


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def runbook_anchors(readme: Path) -> set[str]:
    """GitHub-style anchors of the headings under the page's "## Runbook" section."""
    anchors: set[str] = set()
    inside = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Runbook"
        elif inside and line.startswith("### "):
            title = line[4:].strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def exported_metrics(readme: Path) -> set[str]:
    """Metric names in the metrics reference's table (rows starting with | `agentmon_...`)."""
    return set(re.findall(r"(?m)^\| `(agentmon_[a-z_]+)` \|", readme.read_text(encoding="utf-8")))


def unknown_metrics(expr: str, exported: set[str]) -> list[str]:
    """agentmon metrics an expression reads that the exporter does not export."""
    names = re.findall(r"(?<![\w:])(agentmon_[a-z_]+)(?![\w:])", expr)
    return sorted({name for name in names
                   if re.sub(r"_(bucket|count|sum)$", "", name) not in exported})


def check_record(where: str, rule: dict[str, Any]) -> list[str]:
    name = rule["record"]
    problems = []
    if not RECORD_NAME.match(name):
        problems.append(f"{where}: {name}: not named level:metric:operations")
    elif "_per_" in name.split(":")[1] and not name.split(":")[2].startswith("ratio"):
        problems.append(f"{where}: {name}: a _per_ ratio's operations must start with ratio")
    return problems


def check_alert(where: str, rule: dict[str, Any], anchors: set[str]) -> list[str]:
    name = rule["alert"]
    where = f"{where}: {name}"
    labels = rule.get("labels") or {}
    notes = rule.get("annotations") or {}
    problems = []
    if not ALERT_NAME.match(name):
        problems.append(f"{where}: not CamelCase with the Agentmon prefix")
    if labels.get("severity") not in SEVERITIES:
        problems.append(f"{where}: severity must be one of {sorted(SEVERITIES)}")
    summary = str(notes.get("summary", ""))
    if not summary.endswith(".") or "{{" in summary:
        problems.append(f"{where}: summary must be static text ending in a period")
    if "{{" not in str(notes.get("description", "")):
        problems.append(f"{where}: description must be templated")
    runbook = f"{RUNBOOK_URL}#{name.lower()}"
    if notes.get("runbook_url") != runbook:
        problems.append(f"{where}: runbook_url must be {runbook}")
    if name.lower() not in anchors:
        problems.append(f"{where}: {RUNBOOK_URL}'s Runbook section has no '### {name}' entry")
    return problems


def tested(tests_dir: Path) -> tuple[dict[str, set[bool]], str]:
    """Per alert name: whether tests expect it firing (True) and silent (False); and the text of
    every promql_expr_test expression."""
    alerts: dict[str, set[bool]] = {}
    exprs: list[str] = []
    for path in sorted(tests_dir.glob("*.test.yml")):
        for group in _load(path).get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                alerts.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
            exprs += [case["expr"] for case in group.get("promql_expr_test") or []]
    return alerts, "\n".join(exprs)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: check_rules.py RULES_DIR RUNBOOK_PAGE METRICS_PAGE", file=sys.stderr)
        return 2
    rules_dir, runbook, metrics = Path(argv[1]), Path(argv[2]), Path(argv[3])
    anchors = runbook_anchors(runbook)
    exported = exported_metrics(metrics)
    alert_tests, expr_tests = tested(rules_dir / "tests")
    problems: list[str] = []
    counts = {"record": 0, "alert": 0}
    for path in sorted(rules_dir.glob("*.yml")):
        for group in _load(path).get("groups") or []:
            for rule in group.get("rules") or []:
                where = f"{path}: {group['name']}"
                problems += [f"{where}: {rule.get('record') or rule.get('alert')}: reads {name}, "
                             "which the metrics reference does not list"
                             for name in unknown_metrics(str(rule["expr"]), exported)]
                if "record" in rule:
                    counts["record"] += 1
                    problems += check_record(where, rule)
                    name = re.escape(rule["record"])
                    if not re.search(rf"(?<![\w:]){name}(?![\w:])", expr_tests):
                        problems.append(f"{where}: {rule['record']}: no promql_expr_test reads it")
                else:
                    counts["alert"] += 1
                    problems += check_alert(where, rule, anchors)
                    seen = alert_tests.get(rule["alert"], set())
                    # The Watchdog is never silent: a test where it fires is all it can have.
                    if seen != ({True} if rule["alert"] == "AgentmonWatchdog" else {True, False}):
                        problems.append(f"{where}: {rule['alert']}: needs a test where it fires "
                                        "and one where it stays silent")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"check_rules: {counts['record']} recording rules and {counts['alert']} alerts follow "
          "the conventions, each tested")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
