"""Verified backups before migrations: real files, real SQLite backup API."""

from __future__ import annotations

import re
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from original_schema import build_original_db, full_dump, original_dump

from agentmon.cli import main as cli
from agentmon.schema import backup as backups
from agentmon.schema import migrations
from agentmon.schema.db import connect_writer
from agentmon.schema.migrate import migrate

NAME = re.compile(r"^agent_workflow\.db\.v(\d+)\.(\d{8}T\d{6}\.\d{6}Z)\.bak$")


def test_backup_is_taken_before_the_first_step_and_verified(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db", with_tool_uses=True)
    before = original_dump(db)
    result = migrate(db)
    assert result.backup is not None
    copy = Path(result.backup)
    assert copy.parent == tmp_path / "backups"
    match = NAME.match(copy.name)
    assert match
    assert match.group(1) == "0"
    stamp = datetime.strptime(match.group(2), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    # the state before any step: version 0 and every original row
    assert full_dump(copy)["user_version"] == 0
    assert original_dump(copy) == before
    backups.verify(copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    # one self-contained file: no -wal/-shm, not in WAL mode
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_down_migration_is_backed_up_with_the_version_it_started_from(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    migrate(db, backup_dir=tmp_path / "b")
    result = migrate(db, 1, backup_dir=tmp_path / "b")
    assert result.backup is not None
    assert NAME.match(Path(result.backup).name).group(1) == str(migrations.LATEST)  # type: ignore[union-attr]
    assert full_dump(result.backup)["user_version"] == migrations.LATEST


def test_retention_keeps_the_newest_n(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    folder = tmp_path / "b"
    conn = connect_writer(db)
    made = [backups.take_backup(conn, db, folder, version=v % 4, keep=3) for v in range(6)]
    conn.close()
    kept = backups.list_backups(db, folder)
    assert kept == made[-3:]
    assert [p.exists() for p in made] == [False] * 3 + [True] * 3
    assert backups.prune(db, folder, 0) == made[-3:-1]  # keeps at least one
    assert backups.list_backups(db, folder) == made[-1:]


def test_retention_orders_by_time_even_when_the_name_contains_dot_v(tmp_path: Path) -> None:
    db = tmp_path / "my.vault.v2.db"
    folder = tmp_path / "b"
    folder.mkdir()
    stamps = [datetime(2026, 1, d, tzinfo=UTC) for d in (3, 1, 2)]
    for version, stamp in zip((0, 3, 1), stamps, strict=True):
        (folder / backups.backup_name(db, version, stamp)).write_bytes(b"")
    (folder / "other.db.v0.20260101T000000.000000Z.bak").write_bytes(b"")
    (folder / "my.vault.v2.db.v0.notes.txt").write_bytes(b"")
    ordered = backups.list_backups(db, folder)
    assert [p.name for p in ordered] == [backups.backup_name(db, v, s) for v, s in
                                         sorted(zip((0, 3, 1), stamps, strict=True),
                                                key=lambda vs: vs[1])]
    assert backups.list_backups(db, tmp_path / "missing") == []


def test_keep_backups_through_the_cli(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    folder = tmp_path / "b"
    for target in ("3", "0", "3", "0"):
        assert cli(["migrate", "--db", str(db), "--to", target, "--backup-dir", str(folder),
                    "--keep-backups", "2"]) == 0
    assert len(backups.list_backups(db, folder)) == 2


@pytest.mark.parametrize("how", ["folder-is-a-file", "folder-cannot-be-made"])
def test_a_failing_backup_aborts_the_migration_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db", with_tool_uses=True)
    before = full_dump(db)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the backup folder should be")
    folder = blocker if how == "folder-is-a-file" else blocker / "sub"
    code = cli(["migrate", "--db", str(db), "--backup-dir", str(folder)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("agentmon migrate: error: cannot write a backup in ")
    assert err.rstrip().endswith("nothing was migrated")
    assert full_dump(db) == before


def test_a_backup_that_does_not_verify_is_removed_and_aborts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    before = full_dump(db)

    def corrupt(path: str | Path) -> None:
        raise backups.BackupError(f"backup {path} failed integrity_check: page 2 is never used")

    monkeypatch.setattr(backups, "verify", corrupt)
    assert cli(["migrate", "--db", str(db), "--backup-dir", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "failed integrity_check" in err
    assert err.count("\n") == 1
    assert list((tmp_path / "b").iterdir()) == []
    assert full_dump(db) == before


def test_verify_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "x.bak"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(backups.BackupError, match=r"cannot be checked|integrity_check"):
        backups.verify(bad)


def test_verify_reports_a_damaged_database(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE filler (x)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(200)])
    conn.commit()
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'filler'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    raw = bytearray(db.read_bytes())
    start = (root - 1) * page
    raw[start + 3:start + 5] = b"\xff\xff"  # the b-tree page claims 65535 cells
    db.write_bytes(bytes(raw))
    with pytest.raises(backups.BackupError):
        backups.verify(db)


def test_backup_refuses_to_follow_or_overwrite_an_existing_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    folder = tmp_path / "b"
    folder.mkdir()
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    name = backups.backup_name(db, 0, fixed)
    (folder / name).symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(backups, "backup_name", lambda *_: name)
    conn = connect_writer(db)
    with pytest.raises(backups.BackupError, match="cannot write a backup"):
        backups.take_backup(conn, db, folder, 0)
    conn.close()
    assert not (tmp_path / "elsewhere").exists()


def test_a_backup_that_cannot_be_copied_leaves_no_file(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "agent_workflow.db")
    conn = connect_writer(db)
    conn.close()  # a closed source: the backup API refuses it
    with pytest.raises(backups.BackupError, match="failed"):
        backups.take_backup(conn, db, tmp_path / "b", 0)
    assert list((tmp_path / "b").iterdir()) == []


def test_verify_reports_what_integrity_check_found(tmp_path: Path) -> None:
    db = build_original_db(tmp_path / "a.db")
    raw = bytearray(db.read_bytes())
    raw[36:40] = (7).to_bytes(4, "big")  # header: 7 free pages, but the freelist is empty
    db.write_bytes(bytes(raw))
    with pytest.raises(backups.BackupError, match=r"(?s)failed integrity_check: .*freelist"):
        backups.verify(db)
