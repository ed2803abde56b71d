"""The dashboard checker finds each kind of problem it promises to, on real promtool runs."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import check_dashboards
import dashboards

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is missing (apt-get install prometheus)"
)


def _write(folder: Path, boards: dict[str, dict[str, Any]]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, board in boards.items():
        (folder / name).write_text(json.dumps(board), encoding="utf-8")
    return folder


def _shipped() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.render().items()}


def test_shipped_dashboards_pass_and_are_what_the_generator_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check_dashboards.main(["--promtool", PROMTOOL]) == 0
    assert "5 dashboards" in capsys.readouterr().out
    assert dashboards.main(["--check"]) == 0


def _panel(board: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return board["panels"][index]


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no uid": (lambda b: b.pop("uid"), "no uid"),
    "duplicate panel id": (
        lambda b: _panel(b, 1).update(id=_panel(b, 0)["id"]),
        "duplicate panel id",
    ),
    "overlap": (lambda b: _panel(b, 1)["gridPos"].update(x=0, y=0), "overlap"),
    "off the grid": (
        lambda b: _panel(b)["gridPos"].update(x=20, w=12),
        "not inside the 24-column grid",
    ),
    "other datasource": (
        lambda b: _panel(b)["targets"][0].update(datasource={"uid": "x"}),
        "datasource {'uid': 'x'} is not",
    ),
    "datasource fixed to one uid": (
        lambda b: _panel(b).update(datasource={"type": "prometheus", "uid": "agentmon-prometheus"}),
        "is not {'type': 'prometheus', 'uid': '${datasource}'}",
    ),
    "no datasource variable": (
        lambda b: b["templating"]["list"].pop(0),
        "no variable 'datasource' of type datasource",
    ),
    "datasource variable defaults elsewhere": (
        lambda b: b["templating"]["list"][0]["current"].update(value="agentmon-longterm"),
        "defaulting to the provisioned uid 'agentmon-prometheus'",
    ),
    "unused variable": (
        lambda b: b["templating"]["list"].append(
            {**copy.deepcopy(b["templating"]["list"][1]), "name": "unused"}
        ),
        "variable unused is not used",
    ),
    "bad PromQL": (
        lambda b: _panel(b)["targets"][0].update(expr="sum(rate(agentmon_x[$__rate_interval])"),
        "not valid PromQL",
    ),
    "session label": (
        lambda b: _panel(b)["targets"][0].update(expr="sum by (session_id) (agentmon_x)"),
        "names a session",
    ),
    "no unit": (lambda b: _panel(b)["fieldConfig"]["defaults"].pop("unit"), "no unit"),
    "no description": (lambda b: _panel(b).update(description=""), "no description"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_problem_is_reported(
    tmp_path: Path, breakage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    boards = _shipped()
    damage, expected = BREAKAGES[breakage]
    damage(boards["overview.json"])
    folder = _write(tmp_path / "boards", boards)
    assert check_dashboards.main([str(folder), "--promtool", PROMTOOL]) == 1
    out = capsys.readouterr().out
    assert expected in out
    assert all(line.startswith("overview.json") for line in out.splitlines())


def test_duplicate_uid_across_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boards = _shipped()
    boards["tools.json"]["uid"] = boards["agent.json"]["uid"]
    assert check_dashboards.main([str(_write(tmp_path / "b", boards)), "--promtool", PROMTOOL]) == 1
    assert "also the uid of" in capsys.readouterr().out


def test_a_changed_file_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write(tmp_path / "b", _shipped())
    assert (
        dashboards.main(["--check", "--out", str(folder)]) == 1
    )  # json.dumps differs from render()
    assert dashboards.main(["--out", str(folder)]) == 0
    assert dashboards.main(["--check", "--out", str(folder)]) == 0
    capsys.readouterr()
