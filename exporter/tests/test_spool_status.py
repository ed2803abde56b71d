"""What waits in the users' spools and what was ever dropped, exported (issue 19, item 3).

Real SQLite, a real lock, real files in a sticky status folder beside the database; as real
unprivileged users (nobody and another uid) where ownership is the point: a user can neither
inflate nor erase another's counts.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from collector_db import make_db, samples, value
from hook_events import event, run_hook
from test_hook_spool import NO_WAIT, as_nobody, home_env, locked

from agentmon import spoolstatus
from agentmon.collector.collector import ExporterCollector
from agentmon.hook import spool
from agentmon.schema import migrations


def data_db(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return make_db(tmp_path / "data" / "a.db", migrations.LATEST)


def status_folder(db: Path, mode: int = 0o3770) -> Path:
    """The folder the agentmon_db role creates beside the database."""
    folder = db.parent / spoolstatus.DIR_NAME
    folder.mkdir()
    folder.chmod(mode)
    return folder


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
    folder = status_folder(db)
    env = home_env(tmp_path)
    before = time.time()
    with locked(db):
        for name in ("Stop", "Notification"):
            _code, err = run_hook(event(name), db, *NO_WAIT, env=env)
            assert "event kept in" in err
    (status,) = folder.iterdir()
    assert status.name.startswith(f"{os.geteuid()}.")
    assert stat.S_IMODE(status.stat().st_mode) == 0o640
    assert status.read_text().startswith("waiting 2\ndropped 0\noldest ")
    got = exported(db)
    assert got["events_waiting"] == 2
    assert got["events_dropped_total"] == 0
    assert int(before) <= got["oldest_event_timestamp_seconds"] <= time.time()
    # The lock is gone: the next event brings the two in, and the status says none waits.
    assert run_hook(event("Notification", session="sess-2"), db, *NO_WAIT, env=env) == (0, "")
    (status,) = folder.iterdir()  # the older file replaced, not added to
    assert exported(db) == {"events_waiting": 0, "events_dropped_total": 0,
                            "oldest_event_timestamp_seconds": 0, "status_files_ignored": 0}


def test_dropped_events_are_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = data_db(tmp_path)
    status_folder(db)
    env = home_env(tmp_path)
    monkeypatch.setattr(spool, "MAX_EVENTS", 1)
    with locked(db):
        for name in ("Stop", "Notification", "Notification"):
            run_hook(event(name), db, *NO_WAIT, env=env)
    got = exported(db)
    assert (got["events_waiting"], got["events_dropped_total"]) == (1, 2)


def test_no_status_folder_no_status_and_the_event_is_still_kept(tmp_path: Path) -> None:
    db = data_db(tmp_path)
    env = home_env(tmp_path)
    with locked(db):
        _code, err = run_hook(event("Stop"), db, *NO_WAIT, env=env)
    assert "event kept in" in err
    assert not (db.parent / spoolstatus.DIR_NAME).exists()  # the hook never makes it
    assert exported(db)["events_waiting"] == 0


@pytest.mark.parametrize("mode", [0o770, 0o2770])
def test_a_folder_without_the_sticky_bit_gets_no_status(tmp_path: Path, mode: int) -> None:
    """Without the sticky bit any member could remove another's status: the hook refuses it
    and keeps its event all the same."""
    db = data_db(tmp_path)
    folder = status_folder(db, mode)
    env = home_env(tmp_path)
    with locked(db):
        _code, err = run_hook(event("Stop"), db, *NO_WAIT, env=env)
    assert "event kept in" in err
    assert list(folder.iterdir()) == []
    with pytest.raises(spoolstatus.StatusUnsafe, match="not the role's sticky folder"):
        spoolstatus.write(str(folder), 1, 0, 0)


def test_a_status_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    db = data_db(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o1777)
    (db.parent / spoolstatus.DIR_NAME).symlink_to(elsewhere)
    with pytest.raises(OSError, match=r"Too many levels|Not a directory"):
        spoolstatus.write(spoolstatus.status_dir(str(db)), 1, 0, 0)
    assert list(elsewhere.iterdir()) == []


def test_the_reader_ignores_what_it_cannot_trust(tmp_path: Path) -> None:
    folder = tmp_path / "status"
    folder.mkdir(mode=0o1777)
    uid = os.geteuid()
    (folder / f"{uid}.{'a' * 16}").write_text("waiting 3\ndropped 1\noldest 100\n")
    (folder / f"{uid + 1}.{'b' * 16}").write_text("waiting 50\ndropped 50\noldest 1\n")  # owner
    (folder / f"{uid}.{'c' * 16}").symlink_to(folder / f"{uid}.{'a' * 16}")  # a link
    os.mkfifo(folder / f"{uid}.{'d' * 16}")  # must not hang the reader
    (folder / f"{uid}.{'e' * 16}").write_text("waiting lots\n")  # malformed
    (folder / "notes").write_text("hello")  # bad name
    (folder / f".{uid}.tmp").write_text("waiting 9\ndropped 9\noldest 9\n")  # a writer's temp
    totals = spoolstatus.read_all(str(folder))
    assert (totals.waiting, totals.dropped, totals.oldest, totals.users) == (3, 1, 100.0, 1)
    assert totals.ignored == 5


def as_uid(uid: int, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c",
         code, *args], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", "")})


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the hook as other real users")
def test_one_user_can_neither_inflate_nor_erase_anothers_counts() -> None:
    top = Path(tempfile.mkdtemp(prefix="agentmon-spool-status-"))  # pytest's are root-only
    try:
        _two_real_users(top)
    finally:
        shutil.rmtree(top)


def _two_real_users(top: Path) -> None:
    top.chmod(0o755)
    shared = top / "shared"
    shared.mkdir()
    db = make_db(shared / "a.db", migrations.LATEST)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            path.chmod(0o666)
    shared.chmod(0o1777)
    folder = status_folder(db, 0o1777)  # the role's is 3770 with the hook group; here: all
    state = top / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    with locked(db):
        err = as_nobody(db, state, event("Stop", session="nobody-1"))
    assert "event kept in" in err
    (mine,) = folder.iterdir()
    assert mine.stat().st_uid == 65534
    assert mine.name.startswith("65534.")
    # uid 12345 claims nobody's name with big counts, and tries to remove nobody's file.
    planted = folder / f"65534.{'f' * 16}"
    attack = as_uid(12345, (
        "import os, sys\n"
        "open(sys.argv[1], 'w').write('waiting 999\\ndropped 999\\noldest 1\\n')\n"
        "try:\n    os.unlink(sys.argv[2])\nexcept PermissionError:\n    print('refused')\n"),
        str(planted), str(mine))
    assert attack.returncode == 0, attack.stderr
    assert attack.stdout.strip() == "refused"
    got = exported(db)
    assert (got["events_waiting"], got["events_dropped_total"]) == (1, 0)
    assert got["status_files_ignored"] == 1
    # nobody's next run drains its event and leaves waiting 0; the planted file stays ignored.
    assert as_nobody(db, state, event("Notification", session="nobody-2")) == ""
    got = exported(db)
    assert (got["events_waiting"], got["status_files_ignored"]) == (0, 1)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2
    assert planted.name in names


def test_status_counts_of_a_spool(tmp_path: Path) -> None:
    """Spool.counts(): the oldest waiting event's time comes from its file name."""
    with spool.Spool(str(tmp_path / "spool")) as kept:
        assert kept.counts() == (0, 0, 0.0)
        before = time.time()
        kept.put(event("Stop"))
        waiting, dropped, oldest = kept.counts()
    assert (waiting, dropped) == (1, 0)
    assert before - 1 <= oldest <= time.time()
