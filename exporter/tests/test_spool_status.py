"""What waits in the users' spools and what was ever dropped, exported (issue 19, item 3).

Each hook that spools or drains tells the ingest service its counts; the service keeps them per
uid (the kernel's, SO_PEERCRED) in a folder of its own beside the database, and the exporter
sums them. Real SQLite, a real lock, a real socket; as real unprivileged users (nobody and
another uid) where ownership is the point: a user can neither inflate nor erase another's
counts, and cannot add anything to the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from collector_db import make_db, samples, value
from hook_events import event, run_hook
from ingest_helpers import as_user, can_switch_users, request, running
from test_hook_spool import home_env, locked

from agentmon import spoolstatus
from agentmon.collector.collector import ExporterCollector
from agentmon.hook import spool
from agentmon.ingest import protocol

SHORT = ("--busy-timeout-ms", "200")


def data_db(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o2770)  # the role's data folder: setgid, not sticky
    return make_db(tmp_path / "data" / "a.db")


def exported(db: Path) -> dict[str, float]:
    collector = ExporterCollector(db)
    try:
        collector.refresh()
        snap = samples(collector)
    finally:
        collector.close()
    return {name: value(snap, f"agentmon_spool_{name}") for name in (
        "events_waiting", "events_dropped_total", "oldest_event_timestamp_seconds",
        "status_files_ignored")}


def test_waiting_events_are_exported_until_drained(tmp_path: Path) -> None:
    db = data_db(tmp_path)
    env = home_env(tmp_path)
    before = time.time()
    with running(db) as ingest:
        with locked(db):
            for name in ("Stop", "Notification"):
                _code, err = run_hook(event(name), None, *ingest.argv(), *SHORT, env=env)
                assert "database is locked" in err
                assert "event kept in" in err
        folder = db.parent / spoolstatus.DIR_NAME
        (status,) = folder.iterdir()
        assert status.name == str(os.geteuid())
        assert stat.S_IMODE(status.stat().st_mode) == 0o640
        assert status.read_text().startswith("waiting 2\ndropped 0\noldest ")
        got = exported(db)
        assert got["events_waiting"] == 2
        assert got["events_dropped_total"] == 0
        assert int(before) <= got["oldest_event_timestamp_seconds"] <= time.time()
        # The lock is gone: the next event brings the two in, and the status says none waits.
        assert run_hook(event("Notification", session="sess-2"), None, *ingest.argv(),
                        env=env) == (0, "")
    (status,) = folder.iterdir()  # replaced, not added to
    assert exported(db) == {"events_waiting": 0, "events_dropped_total": 0,
                            "oldest_event_timestamp_seconds": 0, "status_files_ignored": 0}


def test_dropped_events_are_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = data_db(tmp_path)
    env = home_env(tmp_path)
    monkeypatch.setattr(spool, "MAX_EVENTS", 1)
    with running(db) as ingest, locked(db):
        for name in ("Stop", "Notification", "Notification"):
            run_hook(event(name), None, *ingest.argv(), *SHORT, env=env)
    got = exported(db)
    assert (got["events_waiting"], got["events_dropped_total"]) == (1, 2)


def test_the_service_makes_its_folder_closed_to_everyone_else(tmp_path: Path) -> None:
    db = data_db(tmp_path)
    with running(db):
        pass
    folder = db.parent / spoolstatus.DIR_NAME
    info = folder.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o750)
    assert info.st_gid == db.parent.stat().st_gid  # the data group (the data folder's setgid)


def test_a_status_folder_that_is_a_link_is_refused_and_events_are_stored(
        tmp_path: Path) -> None:
    db = data_db(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o1777)
    (db.parent / spoolstatus.DIR_NAME).symlink_to(elsewhere)
    with pytest.raises(OSError, match=r"Too many levels|Not a directory"):
        spoolstatus.Board(spoolstatus.status_dir(str(db)))
    # The service runs without it (agentmon ingest logs why) and stores as ever.
    with running(db, counts=False) as ingest:
        assert request(ingest.socket, protocol.header("status", spool=(1, 0, 0))) == (
            False, False, "spool counts are not kept here")
        assert run_hook(event("Stop"), None, *ingest.argv(), env=home_env(tmp_path)) == (0, "")
        assert ingest.server.stored == 1
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another uid need root")
def test_the_reader_trusts_only_the_folders_owner(tmp_path: Path) -> None:
    folder = tmp_path / "status"
    folder.mkdir(mode=0o750)
    (folder / "1000").write_text("waiting 3\ndropped 1\noldest 100\n")
    (folder / "1001").write_text("waiting 50\ndropped 50\noldest 1\n")
    os.chown(folder / "1001", 1001, 1001)  # not the folder owner's: the exporter group planted it?
    (folder / "1002").symlink_to(folder / "1000")  # a link
    os.mkfifo(folder / "1003")  # must not hang the reader
    (folder / "1004").write_text("waiting lots\n")  # malformed
    (folder / "notes").write_text("hello")  # bad name
    (folder / f"1000.{'a' * 16}").write_text("waiting 9\ndropped 9\noldest 9\n")  # old layout
    (folder / ".1000.tmp").write_text("waiting 9\ndropped 9\noldest 9\n")  # the service's temp
    totals = spoolstatus.read_all(str(folder))
    assert (totals.waiting, totals.dropped, totals.oldest, totals.users) == (3, 1, 100.0, 1)
    assert totals.ignored == 6


@pytest.mark.skipif(not can_switch_users(), reason="needs root to run peers as other users")
def test_one_user_can_neither_inflate_nor_erase_anothers_counts() -> None:
    top = Path(tempfile.mkdtemp(prefix="agentmon-spool-status-"))  # pytest's are root-only
    try:
        _two_real_users(top)
    finally:
        shutil.rmtree(top)


def _two_real_users(top: Path) -> None:
    top.chmod(0o755)
    db = data_db(top)
    home = top / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    hook = ("import io, json, sys\nfrom agentmon.hook import cli\n"
            "err = io.StringIO()\n"
            "cli.run(['--socket', sys.argv[1], '--busy-timeout-ms', '200'],"
            " io.BytesIO(sys.argv[2].encode()), None, err, {'HOME': sys.argv[3]})\n"
            "print(err.getvalue(), end='')\n")
    with running(db) as ingest:
        with locked(db):
            done = as_user(65534, hook, str(ingest.socket),
                           json.dumps(event("Stop", session="nobody-1")), str(home))
        assert "event kept in" in done.stdout, done.stderr
        folder = db.parent / spoolstatus.DIR_NAME
        (mine,) = folder.iterdir()
        assert mine.name == "65534"
        assert mine.stat().st_uid == os.geteuid()  # the service's, whoever reported
        # uid 12345 claims nobody's counts: only its own uid is ever written, and the folder
        # takes nothing from it directly.
        attack = as_user(12345, (
            "import sys\nfrom agentmon.ingest import client, protocol\n"
            "print(client.exchange(sys.argv[1], protocol.header('status',"
            " spool=(999, 999, 1)), timeout=60))\n"
            "try:\n    open(sys.argv[2] + '/65534', 'w')\nexcept PermissionError:\n"
            "    print('refused')\n"), str(ingest.socket), str(folder))
        assert attack.returncode == 0, attack.stderr
        assert attack.stdout.split("\n")[1] == "refused"
        got = exported(db)
        assert (got["events_waiting"], got["events_dropped_total"]) == (1 + 999, 999)
        assert (folder / "65534").read_text().startswith("waiting 1\ndropped 0\n")
        # nobody's next run drains its event and leaves waiting 0.
        done = as_user(65534, hook, str(ingest.socket),
                       json.dumps(event("Notification", session="nobody-2")), str(home))
        assert done.stdout == "", done.stderr
    got = exported(db)
    assert got["events_waiting"] == 999  # uid 12345's own claim, about itself only
    assert sorted(p.name for p in folder.iterdir()) == ["12345", "65534"]


def test_status_counts_of_a_spool(tmp_path: Path) -> None:
    """Spool.counts(): the oldest waiting event's time comes from its file name."""
    with spool.Spool(str(tmp_path / "spool")) as kept:
        assert kept.counts() == (0, 0, 0.0)
        before = time.time()
        kept.put(json.dumps(event("Stop")).encode())
        waiting, dropped, oldest = kept.counts()
    assert (waiting, dropped) == (1, 0)
    assert before - 1 <= oldest <= time.time()
