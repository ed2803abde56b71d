"""The fixture writer keeps the Molecule fixture's tables equal to agentmon.schema.original."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import original_fixture
from agentmon.schema import original

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "molecule" / "agent_host" / "files" / "original_schema.sql"


def test_the_shipped_fixture_is_what_the_writer_writes() -> None:
    assert original_fixture.main(["--check", str(FIXTURE)]) == 0


def test_the_fixture_builds_the_original_tables_and_keeps_its_rows() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    for table, columns in (("sessions", original.SESSIONS_4),
                           ("agent_invocations", original.AGENT_INVOCATIONS),
                           ("agent_tool_uses", original.AGENT_TOOL_USES),
                           ("tool_uses", original.TOOL_USES)):
        got = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        assert got == original.names(columns), table
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table  # noqa: S608
    indexes = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert indexes == {"idx_agent_tool_uses_agent", "idx_agent_tool_uses_session"}


def test_check_fails_on_a_drifted_copy_and_the_writer_repairs_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "original_schema.sql"
    shutil.copy(FIXTURE, copy)
    drifted = copy.read_text(encoding="utf-8").replace(
        "idx_agent_tool_uses_agent ON", "idx_agent_tool_uses_agent_tool ON")
    copy.write_text(drifted, encoding="utf-8")
    assert original_fixture.main(["--check", str(copy)]) == 1
    assert "differs from agentmon.schema.original" in capsys.readouterr().err
    assert copy.read_text(encoding="utf-8") == drifted  # --check changes nothing
    assert original_fixture.main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == FIXTURE.read_text(encoding="utf-8")


@pytest.mark.parametrize("text", [
    "INSERT INTO t VALUES (1);\n",
    f"{original_fixture.END}\n{original_fixture.BEGIN}\n",
    f"{original_fixture.BEGIN}\n{original_fixture.BEGIN}\n{original_fixture.END}\n",
])
def test_a_file_without_one_pair_of_markers_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = tmp_path / "x.sql"
    path.write_text(text, encoding="utf-8")
    assert original_fixture.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs one line" in err
    assert path.read_text(encoding="utf-8") == text


def test_a_missing_file_is_a_one_line_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert original_fixture.main([str(tmp_path / "absent.sql")]) == 1
    assert capsys.readouterr().err.startswith("original_fixture: error: ")
