"""The rules checker finds each kind of problem it promises to, on copies of the shipped rules."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import check_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "prometheus" / "files" / "rules"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS = ROOT / "docs" / "metrics.md"

Rules = dict[str, Any]


def test_shipped_rules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_rules.main(["check_rules.py", str(RULES), str(RUNBOOK), str(METRICS)]) == 0
    shipped = sum(1 for path in RULES.glob("*.yml")
                  for group in yaml.safe_load(path.read_text())["groups"]
                  for rule in group["rules"] if "alert" in rule)
    assert shipped >= 19  # the spool alerts among them
    assert f"{shipped} alerts" in capsys.readouterr().out


def _alert(rules: Rules, name: str) -> dict[str, Any]:
    return next(r for r in rules["groups"][0]["rules"] if r.get("alert") == name)


def _record(rules: Rules, name: str) -> dict[str, Any]:
    return next(r for r in rules["groups"][0]["rules"] if r.get("record") == name)


def _rename_alert(rules: Rules) -> None:
    _alert(rules, "AgentmonExporterDown")["alert"] = "exporter_down"


def _bad_ratio_name(rules: Rules) -> None:
    rule = _record(rules, "tool:agentmon_tool_use_errors_per_tool_uses:ratio_rate5m")
    rule["record"] = "tool:agentmon_tool_use_errors_per_tool_uses:rate5m"


def _untested_record(rules: Rules) -> None:
    rules["groups"][0]["rules"].append(
        {"record": "job:agentmon_db_up:min", "expr": 'min without (instance) (agentmon_db_up)'})


def _unknown_metric(rules: Rules) -> None:
    _record(rules, "job:agentmon_sessions_active:sum")["expr"] = "sum(agentmon_sessions_open)"


def _untested_alert(rules: Rules) -> None:
    rules["groups"][0]["rules"].append(
        {"alert": "AgentmonWatchdog2", "expr": "vector(1)", "labels": {"severity": "none"},
         "annotations": {"summary": "x.", "description": "{{ $value }}",
                         "runbook_url": "docs/runbook.md#agentmonwatchdog2"}})


ALERT_BREAKAGES: dict[str, tuple[Callable[[Rules], None], str]] = {
    "name": (_rename_alert, "not CamelCase with the Agentmon prefix"),
    "severity": (lambda r: _alert(r, "AgentmonDatabaseDown")["labels"].pop("severity"),
                 "severity must be one of"),
    "templated summary": (
        lambda r: _alert(r, "AgentmonDatabaseDown")["annotations"].update(
            summary="{{ $labels.instance }} is down."), "summary must be static"),
    "summary without period": (
        lambda r: _alert(r, "AgentmonDatabaseDown")["annotations"].update(summary="Down"),
        "summary must be static text ending in a period"),
    "static description": (
        lambda r: _alert(r, "AgentmonDatabaseDown")["annotations"].update(description="Down."),
        "description must be templated"),
    "runbook": (
        lambda r: _alert(r, "AgentmonDatabaseDown")["annotations"].update(
            runbook_url="https://example.org/"),
        "runbook_url must be docs/runbook.md#agentmondatabasedown"),
    "untested alert": (_untested_alert, "needs a test where it fires"),
}

RECORD_BREAKAGES: dict[str, tuple[Callable[[Rules], None], str]] = {
    "name": (lambda r: _record(r, "job:agentmon_sessions_active:sum").update(
        record="agentmon_sessions_active_sum"), "not named level:metric:operations"),
    "ratio": (_bad_ratio_name, "a _per_ ratio's operations must start with ratio"),
    "untested": (_untested_record, "no promql_expr_test reads it"),
    "unknown metric": (_unknown_metric, "reads agentmon_sessions_open"),
}


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    return folder


def _break(folder: Path, name: str, breakage: Callable[[Rules], None]) -> None:
    path = folder / name
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    breakage(rules)
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")


def _problems(folder: Path, runbook: Path, capsys: pytest.CaptureFixture[str],
              metrics: Path = METRICS) -> str:
    assert check_rules.main(["check_rules.py", str(folder), str(runbook), str(metrics)]) == 1
    return capsys.readouterr().out


@pytest.mark.parametrize("kind", sorted(ALERT_BREAKAGES))
def test_alert_problems_are_found(kind: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    breakage, message = ALERT_BREAKAGES[kind]
    folder = _copy(tmp_path)
    _break(folder, "agentmon-alerts.yml", breakage)
    assert message in _problems(folder, RUNBOOK, capsys)


@pytest.mark.parametrize("kind", sorted(RECORD_BREAKAGES))
def test_recording_problems_are_found(kind: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    breakage, message = RECORD_BREAKAGES[kind]
    folder = _copy(tmp_path)
    _break(folder, "agentmon-recording.yml", breakage)
    assert message in _problems(folder, RUNBOOK, capsys)


def test_alert_without_a_silent_test_is_found(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(tmp_path)
    path = folder / "tests" / "agentmon-alerts.test.yml"
    tests = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in tests["tests"]:
        group["alert_rule_test"] = [c for c in group.get("alert_rule_test", [])
                                    if c["alertname"] != "AgentmonDatabaseDown" or c["exp_alerts"]]
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    out = _problems(folder, RUNBOOK, capsys)
    assert "AgentmonDatabaseDown: needs a test where it fires and one where it stays silent" in out


def test_missing_runbook_entry_is_found(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    runbook = tmp_path / "runbook.md"
    runbook.write_text(RUNBOOK.read_text(encoding="utf-8").replace("### AgentmonToolErrorBurst",
                                                                   "### Tool errors"),
                       encoding="utf-8")
    out = _problems(_copy(tmp_path), runbook, capsys)
    assert "AgentmonToolErrorBurst: docs/runbook.md's Runbook section has no" in out


def test_a_metric_the_reference_does_not_list_is_found(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "metrics.md"
    metrics.write_text(METRICS.read_text(encoding="utf-8").replace(
        "| `agentmon_db_up` |", "| `agentmon_database_up` |"), encoding="utf-8")
    out = _problems(_copy(tmp_path), RUNBOOK, capsys, metrics)
    assert "reads agentmon_db_up, which the metrics reference does not list" in out
