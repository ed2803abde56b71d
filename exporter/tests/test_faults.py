"""Database faults on real files: each is reported (db_up 0, a counted reason, one log line per
change of health), the last good values keep being served, and recovery is automatic."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from collector_db import add_invocation, make_db, samples, value, writer

from agentmon.collector.collector import ExporterCollector
from agentmon.collector.state import State
from agentmon.schema.migrate import migrate


def invocations(collector: ExporterCollector) -> float:
    return sum(v for (name, _), v in samples(collector).items()
               if name == "agentmon_invocations_total")


def errors(collector: ExporterCollector, reason: str) -> float:
    return value(samples(collector), "agentmon_refresh_errors_total", reason=reason)


def up(collector: ExporterCollector) -> float:
    return value(samples(collector), "agentmon_db_up")


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentmon.collector")


@pytest.fixture
def history(db: Path) -> Path:
    """The conftest's empty database with three finished invocations."""
    conn = writer(db)
    for _ in range(3):
        add_invocation(conn, duration=2.0)
    conn.close()
    return db


def healthy(history: Path, **kwargs: object) -> ExporterCollector:
    collector = ExporterCollector(history, busy_timeout_ms=50, **kwargs)
    collector.refresh()
    assert up(collector) == 1
    assert invocations(collector) == 3
    return collector


def test_missing_database_then_created(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "absent.db"
    collector = ExporterCollector(path)
    assert up(collector) == 0  # before the first refresh
    for _ in range(3):
        collector.refresh()
    assert up(collector) == 0
    assert errors(collector, "missing") == 3
    assert fault_lines(caplog) == [
        f"database fault (missing): {path} does not exist; serving the last good values"]
    make_db(path)
    collector.refresh()
    assert up(collector) == 1
    assert any("database ok" in r.getMessage() for r in caplog.records)


def test_directory_at_path_is_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "agent_workflow.db"
    path.mkdir()
    collector = ExporterCollector(path)
    collector.refresh()
    collector.refresh()
    assert (up(collector), errors(collector, "unreadable")) == (0, 2)
    assert len(fault_lines(caplog)) == 1
    path.rmdir()
    make_db(path)
    collector.refresh()
    assert up(collector) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(history: Path) -> None:
    collector = healthy(history)
    collector.close()
    history.chmod(0)
    try:
        collector.refresh()
        assert (up(collector), errors(collector, "unreadable")) == (0, 1)
        assert invocations(collector) == 3
    finally:
        history.chmod(0o600)
    collector.refresh()
    assert up(collector) == 1


def test_garbage_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "agent_workflow.db"
    path.write_bytes(b"this is not a database\0" * 500)
    collector = ExporterCollector(path)
    collector.refresh()
    assert (up(collector), errors(collector, "corrupt")) == (0, 1)


def test_damaged_pages_are_corrupt_and_last_values_stay(history: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    collector = healthy(history)
    conn = writer(history)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    good = history.read_bytes()
    page = 4096
    history.write_bytes(good[:page] + b"\xde\xad" * ((len(good) - page) // 2))
    collector.close()  # a fresh connection must not see cached pages
    collector.refresh()
    assert (up(collector), errors(collector, "corrupt")) == (0, 1)
    assert invocations(collector) == 3  # last good values
    assert "corrupt" in fault_lines(caplog)[0]
    history.write_bytes(good)
    collector.refresh()
    assert up(collector) == 1
    assert invocations(collector) == 3


def test_locked_longer_than_a_refresh(history: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn = sqlite3.connect(history, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")  # rollback journal: EXCLUSIVE blocks readers
    collector = healthy(history)
    conn.execute("BEGIN EXCLUSIVE")
    add_invocation(conn, duration=1.0)
    collector.refresh()
    collector.refresh()
    assert (up(collector), errors(collector, "locked")) == (0, 2)
    assert invocations(collector) == 3
    assert len(fault_lines(caplog)) == 1
    conn.execute("COMMIT")
    collector.refresh()
    assert up(collector) == 1
    assert invocations(collector) == 4
    conn.close()


def test_deleted_while_connection_open_counts_as_missing_then_new_db_rebuilds(
        history: Path, caplog: pytest.LogCaptureFixture) -> None:
    collector = healthy(history)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{history}{suffix}").unlink(missing_ok=True)
    collector.refresh()
    assert (up(collector), errors(collector, "missing")) == (0, 1)
    assert invocations(collector) == 3  # last good values while missing
    make_db(history)
    conn = writer(history)
    add_invocation(conn, agent="coder", duration=1.0)
    conn.close()
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_db_up") == 1
    # The new file's numbers only: Prometheus sees a counter reset, which rate() handles.
    assert invocations(collector) == 1
    assert value(snap, "agentmon_invocations_total", agent="coder", phase="plan",
                 status="completed") == 1
    assert value(snap, "agentmon_state_rebuilds_total") == 2


def test_replaced_in_place_is_detected_without_a_missing_phase(
        history: Path, tmp_path: Path) -> None:
    collector = healthy(history)
    other = make_db(tmp_path / "other.db")
    conn = writer(other)
    add_invocation(conn, agent="coder")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.replace(other, history)
    collector.refresh()
    assert up(collector) == 1
    assert invocations(collector) == 1


def test_restored_backup_same_identity_lower_sequence_rebuilds(
        history: Path, tmp_path: Path) -> None:
    conn = writer(history)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = tmp_path / "backup.db"
    shutil.copyfile(history, backup)
    collector = healthy(history)
    add_invocation(conn)
    add_invocation(conn)
    conn.close()
    collector.refresh()
    assert invocations(collector) == 5
    for suffix in ("-wal", "-shm"):
        Path(f"{history}{suffix}").unlink(missing_ok=True)
    os.replace(backup, history)
    collector.refresh()
    assert invocations(collector) == 3
    assert value(samples(collector), "agentmon_state_rebuilds_total") == 2


def test_not_migrated_then_migrated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_db(tmp_path / "agent_workflow.db", version=2)
    collector = ExporterCollector(path)
    collector.refresh()
    assert (up(collector), errors(collector, "not_migrated")) == (0, 1)
    assert "run agentmon migrate" in fault_lines(caplog)[0]
    migrate(path, backup_dir=tmp_path / "backups")
    collector.refresh()
    assert up(collector) == 1


def test_empty_file_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "agent_workflow.db"
    path.touch()
    collector = ExporterCollector(path)
    collector.refresh()
    assert errors(collector, "not_migrated") == 1


def test_missing_index_is_reported_not_scanned(history: Path) -> None:
    conn = writer(history)
    conn.execute("DROP INDEX idx_invocations_running")
    conn.close()
    collector = ExporterCollector(history)
    collector.refresh()
    assert (up(collector), errors(collector, "not_migrated")) == (0, 1)


def test_missing_sequence_row_is_not_migrated(history: Path) -> None:
    conn = writer(history)
    conn.execute("DELETE FROM agentmon_sequence")
    conn.close()
    collector = ExporterCollector(history)
    collector.refresh()
    assert errors(collector, "not_migrated") == 1


def test_unexpected_error_is_counted_not_raised(history: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(State, "set_running", broken)
    collector = ExporterCollector(history)
    collector.refresh()
    assert (up(collector), errors(collector, "other")) == (0, 1)
    assert "RuntimeError: bug" in fault_lines(caplog)[0]


def test_classify_other_sqlite_errors(tmp_path: Path) -> None:
    collector = ExporterCollector(tmp_path / "x.db")
    cases = {
        "SQLITE_CANTOPEN": "missing",
        "SQLITE_IOERR_READ": "unreadable",
        "SQLITE_FULL": "other",
    }
    for name, reason in cases.items():
        exc = sqlite3.OperationalError("boom")
        exc.sqlite_errorname = name
        assert collector._classify(exc)[0] == reason
    (tmp_path / "x.db").touch()
    exc = sqlite3.OperationalError("unable to open database file")
    exc.sqlite_errorname = "SQLITE_CANTOPEN"
    assert collector._classify(exc)[0] == "unreadable"


def test_checkpoint_write_failure_is_counted_once_logged(
        history: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "state"
    collector = healthy(history, checkpoint_path=folder / "state.json", checkpoint_interval=0)
    conn = writer(history)
    add_invocation(conn)
    collector.refresh()
    assert errors(collector, "checkpoint") == 2
    assert up(collector) == 1
    assert len(fault_lines(caplog)) == 1
    folder.mkdir()
    add_invocation(conn)
    conn.close()
    collector.refresh()
    assert (folder / "state.json").exists()
    assert collector.save_checkpoint() is True
    folder.chmod(0o700)
    (folder / "state.json").unlink()
    folder.rmdir()
    assert collector.save_checkpoint() is False
    assert any("checkpoint written again" in r.getMessage() for r in caplog.records)


def test_unusable_checkpoint_is_ignored(history: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ckpt = tmp_path / "state.json"
    for content in (b"{not json", b'{"format": 99}', b'{"format": 1, "state": []}',
                    b'{"format": 1, "state": {"db_id": "x"}}'):
        ckpt.write_bytes(content)
        collector = ExporterCollector(history, checkpoint_path=ckpt)
        collector.refresh()
        assert invocations(collector) == 3
    assert len(fault_lines(caplog)) == 4
    assert all("ignoring checkpoint" in line for line in fault_lines(caplog))


def test_checkpoint_path_that_is_a_directory(history: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    ckpt = tmp_path / "state.json"
    ckpt.mkdir()
    collector = ExporterCollector(history, checkpoint_path=ckpt)  # cannot read: ignored
    collector.refresh()  # cannot replace a directory: counted, temp file removed
    assert up(collector) == 1
    assert errors(collector, "checkpoint") == 1
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    lines = fault_lines(caplog)
    assert "ignoring checkpoint" in lines[0]
    assert "cannot write checkpoint" in lines[1]


def test_path_below_a_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    collector = ExporterCollector(tmp_path / "file" / "agent_workflow.db")
    collector.refresh()
    assert errors(collector, "unreadable") == 1


def test_tracking_restarted_by_down_and_up_rebuilds_from_stale_checkpoint(
        history: Path, tmp_path: Path) -> None:
    """Down to 2 and up to 3 restarts the sequence at 0 but keeps db_id; once the sequence has
    climbed past a stale checkpoint's value, only the new tracking_id tells them apart."""
    ckpt = tmp_path / "state.json"
    collector = healthy(history, checkpoint_path=ckpt)
    assert collector.save_checkpoint() is True
    collector.close()
    migrate(history, 2)
    migrate(history)
    conn = writer(history)
    for _ in range(6):  # sequence now passes the checkpoint's watermark
        add_invocation(conn, duration=1.0)
    conn.close()
    restarted = ExporterCollector(history, checkpoint_path=ckpt)
    restarted.refresh()
    # 3 rows from before tracking restarted (NULL seq, counted by the rebuild) + 6 new ones
    assert invocations(restarted) == 9
    assert value(samples(restarted), "agentmon_state_rebuilds_total") == 1
