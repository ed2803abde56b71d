"""The command's contract: options, exit code 0 for every fault, one line on stderr."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hook_events import event, rows, run_hook

from agentmon import cli
from agentmon.hook import cli as hook
from agentmon.hook import store as hook_store
from agentmon.schema import migrations
from agentmon.schema.migrate import migrate

AGENTMON = Path(sys.executable).with_name("agentmon")


def one_line(err: str, prefix: str) -> str:
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert err.startswith(f"agentmon hook: {prefix}"), err
    assert "Traceback" not in err
    return err


def test_schema_version_constant_matches_the_migrations() -> None:
    assert hook.SCHEMA_VERSION == migrations.LATEST


def test_help_goes_to_stdout_and_exits_0() -> None:
    out = io.StringIO()
    assert hook.run(["--help"], None, out, io.StringIO(), {}) == 0
    assert "usage: agentmon hook" in out.getvalue()
    assert "--max-payload-bytes" in out.getvalue()
    assert hook.run(["-h"], None, None, None, {}) == 0


def test_help_through_the_dispatcher(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hook", "--help"]) == 0
    assert "AGENTMON_DB" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "env", "reason"), [
    (["--bogus"], {}, "unknown argument '--bogus'"),
    (["--db"], {}, "--db needs a value"),
    (["--max-input-bytes", "lots"], {}, "--max-input-bytes must be an integer"),
    (["--max-payload-bytes=100"], {}, "--max-payload-bytes must be at least 256"),
    ([], {"AGENTMON_MAX_INPUT_BYTES": "0"}, "AGENTMON_MAX_INPUT_BYTES must be at least 1"),
    ([], {"AGENTMON_BUSY_TIMEOUT_MS": "soon"}, "AGENTMON_BUSY_TIMEOUT_MS must be an integer"),
    (["--socket", "/run/agentmon/ingest.sock"], {}, "give --socket or --db, not both"),
    ([], {"AGENTMON_SOCKET": "/run/agentmon/ingest.sock"}, "give --socket or --db, not both"),
])
def test_bad_arguments_exit_0_with_one_line(tmp_path: Path, argv: list[str],
                                            env: dict[str, str], reason: str) -> None:
    err = io.StringIO()
    data = io.BytesIO(b'{"hook_event_name":"Stop","session_id":"s"}')
    assert hook.run(["--db", str(tmp_path / "x.db"), *argv], data, None, err, env) == 0
    assert reason in one_line(err.getvalue(), "bad arguments: ")
    assert not (tmp_path / "x.db").exists()


def test_options_beat_environment_beats_defaults(tmp_path: Path) -> None:
    env = {"AGENTMON_DB": str(tmp_path / "env.db"), "AGENTMON_MAX_PAYLOAD_BYTES": "300",
           "AGENTMON_MAX_INPUT_BYTES": "5000"}
    config = hook.parse_args(["--max-input-bytes=100"], env)
    assert config == {"socket": None, "db": str(tmp_path / "env.db"), "--max-input-bytes": 100,
                      "--max-payload-bytes": 300, "--busy-timeout-ms": 15_000,
                      "--interrupt-after-seconds": 86_400, "phase": None}
    big = event("PreToolUse", tool_input={"content": "x" * 2000})
    assert run_hook(big, None, env=env) == (0, "")
    (stored,) = rows(tmp_path / "env.db", "SELECT tool_input FROM agent_tool_uses")[0]
    assert len(stored) <= 300
    assert "[TRUNCATED" in stored
    # over --max-input-bytes: recorded, its large value dropped with a marker
    assert run_hook({**big, "tool_use_id": "big"}, None, "--max-input-bytes", "1000",
                    env=env) == (0, "")
    (stored,) = rows(tmp_path / "env.db",
                     "SELECT tool_input FROM agent_tool_uses WHERE tool_use_id = 'big'")[0]
    assert json.loads(stored) == {"truncated": "[TRUNCATED: 2015 bytes, event over"
                                  " --max-input-bytes 1000, value cut or dropped]"}


def test_default_database_in_home_is_private_to_the_group(tmp_path: Path) -> None:
    assert run_hook(event("Stop"), None, env={"HOME": str(tmp_path)}) == (0, "")
    folder = tmp_path / ".local/share/agentmon"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    db = folder / "agent_workflow.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o660
    assert rows(db, "SELECT session_id FROM sessions") == [("sess-1",)]


def test_umask_is_restored_after_the_run(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        run_hook(event("Stop"), tmp_path / "a.db")
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


def test_no_home_folder_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)
    assert hook.default_db({}) is None
    _code, err = run_hook(event("Stop"), None, env={})
    assert "no home folder" in one_line(err, "database unavailable: ")


def make_file(path: Path, content: bytes = b"") -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("where", ["under_a_file", "is_a_directory", "not_a_database"])
def test_unusable_database_path(tmp_path: Path, where: str) -> None:
    if where == "under_a_file":
        db = make_file(tmp_path / "plain") / "agent_workflow.db"
    elif where == "is_a_directory":
        db = tmp_path / "dir.db"
        db.mkdir()
    else:
        db = make_file(tmp_path / "junk.db", b"this is not sqlite at all" * 100)
    code, err = run_hook(event("Stop"), db)
    assert code == 0
    one_line(err, f"database unavailable: {db}: ")


def test_locked_database_times_out_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert run_hook(event("Stop"), db) == (0, "")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code, err = run_hook(event("Stop", session="other"), db, "--busy-timeout-ms", "50")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 0
    assert "database is locked" in one_line(err, "database unavailable: ")


def test_database_from_a_newer_agentmon_is_refused_at_once(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    migrate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    before = db.read_bytes()
    _code, err = run_hook(event("Stop"), db)
    assert "newer than this agentmon knows" in one_line(err, "database unavailable: ")
    # no backup (it used to write a full verified copy per event), nothing written
    assert not (tmp_path / "backups").exists()
    assert db.read_bytes() == before


# --- planted links (issue 7): a hook user, or anyone who may write the data folder ----------


def test_a_planted_link_at_the_database_is_refused(tmp_path: Path) -> None:
    name = ""
    db = tmp_path / "a.db"
    assert run_hook(event("Stop"), db) == (0, "")
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file\n")
    victim.chmod(0o600)
    link = Path(f"{db}{name}")
    if name == "":
        db.rename(tmp_path / "moved.db")
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    _code, err = run_hook(event("PreToolUse", session="s2"), db)
    assert f"{link} is a symbolic link; refusing to follow it" in one_line(
        err, "database unavailable: ")
    assert victim.read_bytes() == b"root's file\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert link.is_symlink()


@pytest.mark.parametrize("name", ["-wal", "-shm", "-journal"])
def test_a_planted_link_beside_the_database_is_removed_not_followed(tmp_path: Path,
                                                                   name: str) -> None:
    """One member of the hook group cannot stop everyone's recording with a link (issue 19)."""
    db = tmp_path / "a.db"
    assert run_hook(event("Stop"), db) == (0, "")
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file\n")
    victim.chmod(0o600)
    link = Path(f"{db}{name}")
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    _code, err = run_hook(event("PreToolUse", session="s2"), db)
    assert err == f"agentmon hook: removed planted symbolic link(s) {link}; event recorded\n"
    assert not link.is_symlink()
    assert victim.read_bytes() == b"root's file\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("s2",), ("sess-1",)]


def test_a_dangling_planted_link_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    target = tmp_path / "elsewhere" / "created-by-the-hook"
    target.parent.mkdir()
    db.symlink_to(target)
    _code, err = run_hook(event("Stop"), db)
    assert "is a symbolic link" in one_line(err, "database unavailable: ")
    assert not target.exists()


def test_open_database_file_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    # the lstat check can race with a planter: O_NOFOLLOW and the identity check close it
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(hook.Unsafe, match="is a symbolic link"):
        hook.open_database_file(str(tmp_path / "link"))
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # so opening it for RW returns
    try:
        with pytest.raises(hook.Unsafe, match="is not a regular file"):
            hook.open_database_file(str(tmp_path / "fifo"))
    finally:
        os.close(fd)


def test_a_database_swapped_while_opening_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "a.db"
    assert run_hook(event("Stop"), db) == (0, "")
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    real = hook.open_database_file

    def swapped(path: str) -> os.stat_result:
        return real(str(other))  # what an attacker's rename between the checks would give

    monkeypatch.setattr(hook, "open_database_file", swapped)
    _code, err = run_hook(event("Stop"), db)
    assert "was replaced while it was being opened" in one_line(err, "database unavailable: ")


def test_unexpected_errors_are_one_line_too(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, event: object) -> None:
        raise TypeError("a bug\nwith two lines")

    monkeypatch.setattr(hook_store.Store, "record", broken)
    code, err = run_hook(event("Stop"), tmp_path / "a.db")
    assert code == 0
    assert one_line(err, "internal error: TypeError: a bug with two lines")


class Exploding(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise OSError("stdin went away")


class ClosedStderr(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("closed")


def test_unreadable_stdin_and_unwritable_stderr(tmp_path: Path) -> None:
    err = io.StringIO()
    assert hook.run(["--db", str(tmp_path / "a.db")], Exploding(), None, err, {}) == 0
    assert "cannot read stdin: stdin went away" in one_line(err.getvalue(), "rejected event: ")
    assert hook.run([], None, None, err, {}) == 0
    assert err.getvalue().endswith("agentmon hook: rejected event: no stdin\n")
    assert hook.run([], None, None, ClosedStderr(), {}) == 0
    assert hook.run([], None, None, None, {}) == 0


def test_large_input_that_is_no_object_is_read_through_and_refused() -> None:
    stream = io.BytesIO(b" " * (3 * 1024 * 1024))
    config = {"--max-input-bytes": 1024, "--max-payload-bytes": 256}
    with pytest.raises(hook.Rejected, match="input larger than 1024 bytes and not a JSON object"):
        hook.read_event(stream, config)
    assert stream.tell() == 3 * 1024 * 1024


def test_input_beyond_the_scan_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook, "DRAIN_LIMIT", 300_000)
    stream = io.BytesIO(b'{"a": "' + b"x" * 400_000 + b'"}')
    config = {"--max-input-bytes": 1024, "--max-payload-bytes": 256}
    with pytest.raises(hook.Rejected, match="input larger than 300000 bytes, not recorded"):
        hook.read_event(stream, config)


def test_one_line_flattens_and_bounds() -> None:
    assert hook.one_line("a\nb\x00c\td") == "a b c d"
    assert len(hook.one_line("x" * 1000)) == 400


def test_real_process_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    env = {**os.environ, "AGENTMON_DB": str(db)}
    env.pop("COVERAGE_PROCESS_START", None)
    for payload in (event("PreToolUse"), event("PostToolUse")):
        proc = subprocess.run([str(AGENTMON), "hook"], input=hook_json(payload),
                              capture_output=True, env=env, timeout=60, check=False)
        assert (proc.returncode, proc.stderr, proc.stdout) == (0, b"", b"")
    assert rows(db, "SELECT status FROM agent_tool_uses") == [("completed",)]
    proc = subprocess.run([str(AGENTMON), "hook", "--nope"], input=b"", capture_output=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0
    assert proc.stderr.count(b"\n") == 1


def hook_json(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


def test_the_hook_path_does_not_import_heavy_modules(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    migrate(db)
    code = ("import sys, io, json\n"
            "from agentmon import cli\n"
            "sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[2].encode()))\n"
            "cli.main(['hook', '--db', sys.argv[1]])\n"
            "heavy = {'jsonschema', 'argparse', 'typing', 'pathlib', 'prometheus_client', 'yaml',"
            " 'bcrypt', 'agentmon.schema.migrations', 'urllib.parse', 'dataclasses'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    payload = hook_json(event("PreToolUse", tool_input={"password": "x"}))
    proc = subprocess.run([sys.executable, "-c", code, str(db), payload.decode()],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (proc.stdout.strip(), proc.stderr) == ("[]", "")
    assert rows(db, "SELECT tool_input FROM agent_tool_uses") == [('{"password":"[REDACTED]"}',)]
