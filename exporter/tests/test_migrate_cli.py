"""``agentmon migrate`` as users run it: exit codes, output, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from original_schema import build_original_db, full_dump

from agentmon.cli import main as cli
from agentmon.schema import migrations
from agentmon.schema.migrate import migrate


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli(["migrate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_prints_steps_backup_and_versions(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    code, out, err = run(capsys, "--db", str(db))
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    n = migrations.LATEST
    assert lines[:n] == [f"ran up {s.version - 1}->{s.version} ({s.name})"
                         for s in migrations.STEPS]
    assert lines[:5] == ["ran up 0->1 (adopt)", "ran up 1->2 (indexes)", "ran up 2->3 (changes)",
                         "ran up 3->4 (interrupted)", "ran up 4->5 (removals)"]
    assert lines[n].startswith("backup: ")
    assert lines[n].endswith("(integrity_check ok)")
    assert lines[n + 1] == f"{db}: schema version 0 -> {migrations.LATEST}"
    code, out, _ = run(capsys, "--db", str(db))
    assert code == 0
    assert out == f"{db}: at schema version {migrations.LATEST}, nothing to do\n"


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "a.db")
    code, out, _ = run(capsys, "--db", str(db), "--json", "--dry-run")
    assert code == 0
    planned = json.loads(out)
    assert planned == {"db": str(db), "from_version": 0, "to_version": migrations.LATEST,
                       "steps": [f"up {s.version - 1}->{s.version} ({s.name})"
                                 for s in migrations.STEPS],
                       "backup": None, "dry_run": True, "changed": False}
    code, out, _ = run(capsys, "--db", str(db), "--json", "--to", "2")
    done = json.loads(out)
    assert done["changed"] is True
    assert done["to_version"] == 2
    assert done["backup"]
    code, out, _ = run(capsys, "--db", str(db), "--json", "--to", "2")
    assert json.loads(out)["changed"] is False


def test_dry_run_output_says_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "a.db")
    code, out, _ = run(capsys, "--db", str(db), "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "would run up 0->1 (adopt)"
    assert "backup:" not in out


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("agentmon migrate: error: ")
    return err


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run(capsys, "--db", str(tmp_path / "nope" / "a.db")))
    assert f"folder {tmp_path / 'nope'} does not exist" in err
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("dry", [False, True])
def test_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str], dry: bool) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("these are my notes, not a database\n" * 100)
    raw = bad.read_bytes()
    err = one_line_error(*run(capsys, "--db", str(bad), *(["--dry-run"] if dry else [])))
    assert "not a usable SQLite database" in err
    assert str(bad) in err
    assert bad.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_version_newer_than_known(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "a.db")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 4}")
    conn.close()
    before = full_dump(db)
    err = one_line_error(*run(capsys, "--db", str(db)))
    assert f"schema version {migrations.LATEST + 4}, newer than this agentmon knows" in err
    assert full_dump(db) == before
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("target", ["0", "2"])
def test_down_from_a_version_newer_than_known_fails_clearly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    db = build_original_db(tmp_path / "a.db")
    migrate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 3}")
    conn.close()
    before = full_dump(db)
    backups = sorted((tmp_path / "backups").iterdir())  # the one of the first upgrade
    err = one_line_error(*run(capsys, "--db", str(db), "--to", target))
    assert (f"schema version {migrations.LATEST + 3}, newer than this agentmon knows"
            f" ({migrations.LATEST}); upgrade agentmon") in err
    assert full_dump(db) == before
    assert sorted((tmp_path / "backups").iterdir()) == backups


@pytest.mark.parametrize("target", [str(migrations.LATEST + 1), "-1"])
def test_bad_target_version(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            target: str) -> None:
    db = build_original_db(tmp_path / "a.db")
    err = one_line_error(*run(capsys, "--db", str(db), f"--to={target}"))
    assert f"target version {target} is outside 0..{migrations.LATEST}" in err
    assert full_dump(db)["user_version"] == 0


def test_keep_backups_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "a.db")
    err = one_line_error(*run(capsys, "--db", str(db), "--keep-backups", "0"))
    assert "--keep-backups must be at least 1" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["migrate", "--db", "x.db", "--to", "three"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli(["migrate", "--help"])
    assert exc.value.code == 0
    assert "--keep-backups" in capsys.readouterr().out


def test_the_installed_command_reports_errors_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agentmon.cli", "migrate", "--db", str(tmp_path / "x" / "a.db")],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
