"""The metrics reference in docs/metrics.md is what the exporter renders, and stays so."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import metrics_doc
from agentmon.collector.prices import Prices
from agentmon.collector.render import Health, render
from agentmon.collector.state import State

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "metrics.md"


def test_the_shipped_page_is_current() -> None:
    assert metrics_doc.main(["--check", str(PAGE)]) == 0


def test_every_rendered_family_is_listed_once_with_its_exposed_name() -> None:
    prices = Prices(per_token={("m", "input"): 1e-6}, daily_budget=1.0)
    families = render(State(label_cap=1), Health(), prices)
    names = [row[0] for row in metrics_doc.rows()]
    assert len(names) == len(set(names)) == len(families)
    for family, name in zip(families, names, strict=True):
        assert name == family.name + ("_total" if family.type == "counter" else "")
    text = PAGE.read_text(encoding="utf-8")
    assert "| `agentmon_invocations_total` | counter | agent, phase, status |" in text
    assert "| `agentmon_build_info` | gauge | version, python_version |" in text


def test_check_fails_when_the_code_and_the_page_differ_and_the_writer_repairs_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "metrics.md"
    shutil.copy(PAGE, copy)
    stale = copy.read_text(encoding="utf-8").replace(
        "| `agentmon_db_up` | gauge |", "| `agentmon_db_up` | counter |")
    copy.write_text(stale, encoding="utf-8")
    assert metrics_doc.main(["--check", str(copy)]) == 1
    assert "differs from what the exporter renders" in capsys.readouterr().err
    assert copy.read_text(encoding="utf-8") == stale
    assert metrics_doc.main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_a_page_without_the_markers_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "metrics.md"
    page.write_text("# Metrics\n", encoding="utf-8")
    assert metrics_doc.main([str(page)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs one line" in err
    assert page.read_text(encoding="utf-8") == "# Metrics\n"
    assert metrics_doc.main([str(tmp_path / "absent.md")]) == 1
