"""``agentmon ingest``: the database's one writer behind a local socket, and the hook through it.

Real Unix sockets, real SQLite, real descriptors passed with SCM_RIGHTS; the service runs in a
thread of the test process (ingest_helpers.running) or, where its life as a process is the
point (down and back, systemd's socket, a release switch), as its own process. Where the
uid of a peer is the point, the peer runs as another real user (setpriv, as root).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from collector_db import by_name, make_db, samples, value
from hook_events import event, rows, run_hook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import (
    AGENTMON,
    WAIT,
    as_user,
    can_switch_users,
    connect,
    event_request,
    process,
    ready,
    request,
    request_passing,
    running,
    short_dir,
)
from test_hook_order import exported, subagent_events, tool_use_events
from test_hook_spool import home_env, locked, spool_files

from agentmon import cli
from agentmon.collector.collector import ExporterCollector
from agentmon.ingest import cli as ingest_cli
from agentmon.ingest import client, peer, protocol
from agentmon.schema import migrations
from agentmon.serve import cli as serve_cli

SHORT = ("--busy-timeout-ms", "300")  # how long the hook lets the service wait for the lock


def assistant_line(mid: str, output: int) -> str:
    return json.dumps({"type": "assistant", "requestId": f"req_{mid}", "message": {
        "id": mid, "model": "claude-sonnet-4-5-20250929",
        "usage": {"input_tokens": 10, "output_tokens": output}}}) + "\n"


# --- the hook through the socket ---------------------------------------------------------


def test_an_event_through_the_socket_is_stored_and_the_hook_says_nothing(db: Path,
                                                                          tmp_path: Path) -> None:
    with running(db) as ingest:
        assert run_hook(event("SessionStart", source="startup"), None, *ingest.argv(),
                        env=home_env(tmp_path)) == (0, "")
        assert ingest.server.stored == 1
    assert rows(db, "SELECT session_id, status FROM sessions") == [("sess-1", "active")]


def test_the_hook_passes_its_transcript_and_the_service_reads_it(db: Path,
                                                                 tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(assistant_line("m1", 7) + assistant_line("m2", 5))
    stop = event("Stop", transcript_path=str(transcript), stop_hook_active=False)
    with running(db) as ingest:
        assert run_hook(stop, None, *ingest.argv(), env=home_env(tmp_path)) == (0, "")
        with transcript.open("a") as more:
            more.write(assistant_line("m3", 11))
        assert run_hook(stop, None, *ingest.argv(), env=home_env(tmp_path)) == (0, "")
    assert rows(db, "SELECT sum(output_tokens), count(*) FROM agent_usage") == [(23, 3)]
    (offset,) = rows(db, "SELECT offset FROM agentmon_transcripts")[0]
    assert offset == transcript.stat().st_size


SESSION = [*tool_use_events("PostToolUse"), *subagent_events("PostToolUse"),
           event("SessionEnd")]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fates=st.lists(st.sampled_from(["stored", "locked", "down"]), min_size=len(SESSION),
                      max_size=len(SESSION)))
def test_whatever_fails_the_numbers_through_the_socket_equal_direct_writes(
        tmp_path_factory: Any, fates: list[str]) -> None:
    """Each event of a session is stored, refused by a locked database, or meets no service;
    once the service is back every event is in and the numbers equal direct writes."""
    folder = tmp_path_factory.mktemp("via-socket")
    direct = make_db(folder / "direct.db")
    for item in SESSION:
        assert run_hook(item, direct) == (0, "")
    db = make_db(folder / "socket.db")
    env = home_env(folder)
    nowhere = ["--socket", str(short_dir() / "nobody-listens.sock")]
    with running(db) as ingest:
        for item, fate in zip(SESSION, fates, strict=True):
            if fate == "locked":
                with locked(db):
                    _, err = run_hook(item, None, *ingest.argv(), *SHORT, env=env)
                assert "database is locked" in err
                assert "event kept in" in err
            elif fate == "down":
                _, err = run_hook(item, None, *nowhere, env=env)
                assert "cannot connect" in err
                assert "event kept in" in err
            else:
                assert run_hook(item, None, *ingest.argv(), env=env) == (0, "")
        assert run_hook(event("Notification", session="other"), None, *ingest.argv(),
                        env=env) == (0, "")
    assert spool_files(env) == []
    assert exported(db) == exported(direct)
    for sql in ("SELECT tool_use_id, status FROM agent_tool_uses ORDER BY 1",
                "SELECT tool_use_id, status, agent_name FROM agent_invocations ORDER BY 1"):
        assert rows(db, sql) == rows(direct, sql)


def test_the_service_down_events_wait_then_arrive_in_order(db: Path, tmp_path: Path) -> None:
    """The service stops (SIGTERM, as systemd stops it): hooks keep their events; once it is
    back the next hook run stores them first, oldest first (tool uses are numbered in the order
    they are stored), then its own."""
    env = home_env(tmp_path)
    sock = short_dir() / "ingest.sock"
    with process(db, sock=sock):
        assert run_hook(event("SessionStart", source="startup"), None, "--socket", str(sock),
                        env=env) == (0, "")
    for n in (1, 2, 3):
        _, err = run_hook(event("PreToolUse", tool_name="Bash", tool_input={"command": "ls"},
                                tool_use_id=f"t{n}"), None, "--socket", str(sock), env=env)
        assert "event kept in" in err
    assert len(spool_files(env)) == 3
    with process(db, sock=sock):
        assert run_hook(event("PreToolUse", tool_name="Bash", tool_input={"command": "ls"},
                              tool_use_id="t4"), None, "--socket", str(sock), env=env) == (0, "")
    assert spool_files(env) == []
    assert rows(db, "SELECT tool_use_id FROM agent_tool_uses ORDER BY sequence_number") == [
        ("t1",), ("t2",), ("t3",), ("t4",)]


def test_a_database_at_another_schema_version_refuses_and_the_hook_keeps_it(
        tmp_path: Path) -> None:
    db = make_db(tmp_path / "old.db", migrations.LATEST - 1)
    env = home_env(tmp_path)
    with running(db) as ingest:
        _, err = run_hook(event("Stop"), None, *ingest.argv(), env=env)
        assert f"is at schema version {migrations.LATEST - 1}" in err
        assert "event kept in" in err
        ok, retry, why = client.exchange(str(ingest.socket), protocol.header("ping"))
        assert (ok, retry) == (False, True)
        assert why is not None
        assert "agentmon migrate" in why
    assert rows(db, "PRAGMA user_version") == [(migrations.LATEST - 1,)]  # never migrates


def test_a_missing_database_refuses_until_it_exists(tmp_path: Path) -> None:
    db = tmp_path / "later.db"
    env = home_env(tmp_path)
    with running(db) as ingest:
        _, err = run_hook(event("Stop"), None, *ingest.argv(), env=env)
        assert "does not exist" in err
        assert not db.exists()  # the service never creates it
        make_db(db)
        assert run_hook(event("Notification", session="s2"), None, *ingest.argv(),
                        env=env) == (0, "")
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("s2",), ("sess-1",)]


def test_a_database_removed_and_made_again_is_reopened(db: Path, tmp_path: Path) -> None:
    env = home_env(tmp_path)
    with running(db) as ingest:
        assert run_hook(event("Stop"), None, *ingest.argv(), env=env) == (0, "")
        for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            name.unlink(missing_ok=True)
        _, err = run_hook(event("Stop", session="s2"), None, *ingest.argv(), env=env)
        assert "does not exist" in err
        assert "event kept in" in err
        make_db(db)
        assert run_hook(event("Stop", session="s3"), None, *ingest.argv(), env=env) == (0, "")
    assert rows(db, "SELECT session_id FROM sessions ORDER BY 1") == [("s2",), ("s3",)]


# --- what a peer passes -------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
def test_a_transcript_of_a_file_the_peer_does_not_own_is_not_read(db: Path,
                                                                  tmp_path: Path) -> None:
    transcript = tmp_path / "theirs.jsonl"
    transcript.write_text(assistant_line("m1", 7))
    os.chown(transcript, 65534, 65534)
    stop = event("Stop", transcript_path=str(transcript), stop_hook_active=False)
    with running(db) as ingest:
        ok, _retry, said = request_passing(ingest.socket, event_request(
            stop, ("transcript_path",)), transcript)
        assert ok
        assert said == ("transcript_path passed owned by uid 65534, not by the sender"
                        " (uid 0); not read")
        assert rows(db, "SELECT count(*) FROM agent_usage") == [(0,)]
        os.chown(transcript, 0, 0)  # now the sender's own: read
        assert request_passing(ingest.socket, event_request(stop, ("transcript_path",)),
                               transcript) == (True, False, None)
    assert rows(db, "SELECT sum(output_tokens) FROM agent_usage") == [(7,)]


@pytest.mark.skipif(not can_switch_users(), reason="needs root to run a peer as another user")
def test_another_user_passing_roots_transcript_gets_nothing_read(db: Path) -> None:
    """nobody opens a root-owned, world-readable transcript and passes it: the service sees
    uid 65534 from the kernel, whatever the request says, and reads nothing."""
    transcript = short_dir() / "root.jsonl"  # pytest's folders are root-only
    transcript.write_text(assistant_line("m1", 7))
    transcript.chmod(0o644)
    stop = event("Stop", transcript_path=str(transcript), stop_hook_active=False)
    with running(db) as ingest:
        peer_code = (
            "import os, sys\n"
            "from agentmon.ingest import client\n"
            "fd = os.open(sys.argv[2], os.O_RDONLY)\n"
            "print(client.exchange(sys.argv[1], sys.argv[3].encode(), [fd], timeout=60))\n")
        done = as_user(65534, peer_code, str(ingest.socket), str(transcript),
                       event_request(stop, ("transcript_path",)).decode())
        assert done.returncode == 0, done.stderr
        assert "owned by uid 0, not by the sender (uid 65534); not read" in done.stdout
    assert rows(db, "SELECT count(*) FROM agent_usage") == [(0,)]
    assert rows(db, "SELECT count(*) FROM sessions") == [(1,)]  # the event itself is stored


def test_a_fifo_or_a_folder_passed_as_a_transcript_is_not_read(db: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    stop = event("SubagentStop", agent_id="a1", agent_transcript_path=str(fifo),
                 stop_hook_active=False)
    with running(db) as ingest:
        for path in (fifo, tmp_path):
            ok, _, said = request_passing(ingest.socket, event_request(
                stop, ("agent_transcript_path",)), path, os.O_RDONLY | os.O_NONBLOCK)
            assert ok
            assert said == "agent_transcript_path passed not a regular file; not read"


def test_the_filesystem_type_of_a_descriptor(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    fd = os.open(file, os.O_RDONLY)
    try:
        assert peer.filesystem_type(fd) != peer.FUSE_SUPER_MAGIC
        assert peer.readable(fd, os.geteuid()) is None
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        peer.filesystem_type(fd)


@pytest.mark.parametrize(("data", "fds", "reason"), [
    (b"", 0, "bad request: no header line"),
    (b"{not json\n{}", 0, "bad request: the header is not JSON"),
    (b'{"v":2,"kind":"event"}\n{}', 0, "bad request: the header is not a version 1 request"),
    (b'{"v":1,"kind":"event","uid":0}\n{}', 0, "bad request: the header has unknown fields"),
    (b'{"v":1,"kind":"event","deadline_ns":-1}\n{}', 0, "deadline_ns must be"),
    (b'{"v":1,"kind":"event","phase":7}\n{}', 0, "phase must be a string"),
    (b'{"v":1,"kind":"event","fds":["/etc/passwd"]}\n{}', 0, "fds must list distinct names"),
    (b'{"v":1,"kind":"status"}\n', 0, "a status request carries spool counts"),
    (b'{"v":1,"kind":"status","spool":[1,2]}\n', 0, "spool counts must be three integers"),
    (b'{"v":1,"kind":"status","spool":[1,2,-3]}\n', 0, "spool counts must be three integers"),
    (b'{"v":1,"kind":"event"}\n{"hook_event_name": "Stop"}', 0, "rejected event:"),
    (b'{"v":1,"kind":"event"}\n{"hook_event_name"', 0, "rejected event: invalid JSON"),
    (b'{"v":1,"kind":"event","fds":["transcript_path"]}\n{}', 0,
     "descriptors passed do not match"),
    (b'{"v":1,"kind":"event"}\n{}', 1, "descriptors passed do not match"),
    (b'{"v":1,"kind":"event"}\n{}', 3, "descriptors passed do not match"),
    (b"x" * 5000, 0, "bad request: no header line"),
    (b'{"v":1,"kind":"event"}\n' + b" " * 2000, 0, "event larger than 1000 bytes"),
])
def test_malformed_or_oversized_requests_get_one_line_and_nothing_is_lost(
        db: Path, tmp_path: Path, data: bytes, fds: int, reason: str) -> None:
    passed = [os.open(tmp_path, os.O_RDONLY) for _ in range(fds)]
    try:
        with running(db, max_input_bytes=1000) as ingest:
            ok, retry, said = request(ingest.socket, data, passed)
            assert (ok, retry) == (False, False)
            assert said is not None
            assert reason in said
            assert "\n" not in said
            # the next request, from the same client, is stored as ever
            assert request(ingest.socket, event_request(event("Stop"))) == (True, False, None)
    finally:
        for fd in passed:
            os.close(fd)
    assert rows(db, "SELECT session_id FROM sessions") == [("sess-1",)]


def test_a_request_much_larger_than_the_cap_is_refused_while_it_streams(db: Path) -> None:
    with running(db, max_input_bytes=1000) as ingest:
        ok, retry, said = request(ingest.socket, event_request(event("Stop")) + b" " * 10**6)
    assert (ok, retry) == (False, False)
    assert said == "request larger than 1000 bytes of event; not stored"


def test_the_hook_cuts_an_oversized_event_and_the_service_stores_it(db: Path,
                                                                    tmp_path: Path) -> None:
    big = event("PostToolUse", tool_name="Read", tool_use_id="t1", tool_input={"f": 1},
                tool_response={"content": "x" * 50_000})
    with running(db) as ingest:
        assert run_hook(big, None, *ingest.argv(), "--max-input-bytes", "4096",
                        env=home_env(tmp_path)) == (0, "")
    (output,) = rows(db, "SELECT tool_output FROM agent_tool_uses")[0]
    assert "over --max-input-bytes 4096" in output


def test_bad_input_to_the_hook_is_one_line_and_nothing_is_sent_or_kept(db: Path,
                                                                       tmp_path: Path) -> None:
    env = home_env(tmp_path)
    with running(db) as ingest:
        code, err = run_hook(b"{not json", None, *ingest.argv(), env=env)
        assert code == 0
        assert err.startswith("agentmon hook: rejected event: invalid JSON")
        assert err.count("\n") == 1
        assert ingest.server.stored == 0
    assert spool_files(env) == []


# --- one user cannot stop the others --------------------------------------------------------


def test_a_slow_client_does_not_block_others_and_is_cut_at_its_deadline(db: Path,
                                                                        tmp_path: Path) -> None:
    with running(db, request_timeout=2.0) as ingest:
        slow = connect(ingest.socket)
        slow.sendall(b'{"v":1,"kind":"event"')  # and never more
        # Others are stored while it holds its connection.
        for n in range(3):
            assert run_hook(event("Stop", session=f"s{n}"), None, *ingest.argv(),
                            env=home_env(tmp_path)) == (0, "")
        assert rows(db, "SELECT count(*) FROM sessions") == [(3,)]
        answer = slow.recv(protocol.MAX_ANSWER)  # the cut (its own failure guard: WAIT)
        slow.close()
    assert protocol.parse_answer(answer) == (False, True, "request not finished in time")


def test_one_uid_holding_connections_open_does_not_stop_another(db: Path) -> None:
    with running(db, max_per_user=4, request_timeout=600.0) as ingest:
        held = [connect(ingest.socket) for _ in range(4)]
        try:
            ready(ingest.socket)  # the service holds all four (it answered the ping after them)
            ok, retry, said = request(ingest.socket, event_request(event("Stop")))
            assert (ok, retry) == (False, True)
            assert said == "uid 0 has 4 connections open already"
            if can_switch_users():  # another user is stored all the same
                done = as_user(65534, (
                    "import sys\nfrom agentmon.ingest import client\n"
                    "print(client.exchange(sys.argv[1], sys.argv[2].encode(), timeout=60))\n"),
                    str(ingest.socket), event_request(event("Stop", session="other")).decode())
                assert done.stdout.strip() == "(True, False, None)", done.stderr
        finally:
            for sock in held:
                sock.close()
        assert request(ingest.socket, event_request(event("Stop"))) == (True, False, None)


def test_a_client_that_hangs_up_before_the_commit_has_nothing_stored(db: Path) -> None:
    """The hook gave up (it closed its socket) while the lock was held: the service must not
    store what the hook has spooled, or the event would be there twice."""
    with running(db) as ingest:
        with locked(db):
            gone = connect(ingest.socket)
            gone.sendall(event_request(event("Stop"), deadline_ns=time.monotonic_ns()
                                       + 10**12))
            gone.shutdown(socket.SHUT_WR)
            ready(ingest.socket)  # read and queued behind the lock
            gone.close()
        assert request(ingest.socket, event_request(event("Stop", session="s2"))) == (
            True, False, None)
    assert rows(db, "SELECT session_id FROM sessions") == [("s2",)]


def test_an_event_past_its_deadline_is_answered_retry_not_stored(db: Path) -> None:
    with running(db) as ingest, locked(db):
        said = request(ingest.socket, event_request(event("Stop"),
                                                    deadline_ns=time.monotonic_ns()))
    assert said == (False, True, "database is locked (another writer holds it)")
    assert rows(db, "SELECT count(*) FROM sessions") == [(0,)]


# --- spool counts ---------------------------------------------------------------------------


def status_files(db: Path) -> dict[str, str]:
    folder = db.parent / "spool-status"
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_spool_counts_are_kept_per_sender_uid_only(db: Path) -> None:
    uid = os.geteuid()
    with running(db) as ingest:
        assert request(ingest.socket, protocol.header("status", spool=(3, 1, 100))) == (
            True, False, None)
        assert request(ingest.socket, event_request(event("Stop"), spool=(0, 1, 0))) == (
            True, False, None)
        if can_switch_users():
            done = as_user(65534, (
                "import sys\nfrom agentmon.ingest import client, protocol\n"
                "print(client.exchange(sys.argv[1], protocol.header('status',"
                " spool=(999, 999, 1)), timeout=60))\n"), str(ingest.socket))
            assert done.stdout.strip() == "(True, False, None)", done.stderr
    files = status_files(db)
    assert files[str(uid)] == "waiting 0\ndropped 1\noldest 0\n"
    if can_switch_users():
        assert files == {str(uid): "waiting 0\ndropped 1\noldest 0\n",
                         "65534": "waiting 999\ndropped 999\noldest 1\n"}


def test_the_service_takes_back_an_older_layouts_status_folder(db: Path) -> None:
    folder = db.parent / "spool-status"
    folder.mkdir()
    folder.chmod(0o3777)
    (folder / f"{os.geteuid()}.{'a' * 16}").write_text("waiting 5\ndropped 0\noldest 1\n")
    (folder / "planted").symlink_to("/etc/passwd")
    with running(db):
        pass
    # the setgid and sticky bits and the group's and others' write gone
    assert folder.stat().st_mode & 0o7777 == 0o750
    assert list(folder.iterdir()) == []


# --- the service as a process -------------------------------------------------------------


def test_systemds_socket_is_used_and_sigterm_stops_it(db: Path, tmp_path: Path) -> None:
    """As agentmon-ingest.socket starts it: the listening socket as fd 3, LISTEN_FDS=1 and
    LISTEN_PID its own pid; no --socket."""
    path = short_dir() / "ingest.sock"
    listener = ingest_cli.bind(str(path))
    fd = listener.fileno()

    def as_fd_3() -> None:
        os.dup2(fd, 3)

    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", str(AGENTMON),
         "ingest", "--db", str(db)], preexec_fn=as_fd_3, pass_fds=(3,),
        stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        ready(path, proc)
        assert run_hook(event("Stop"), None, "--socket", str(path),
                        env=home_env(tmp_path)) == (0, "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        assert "stopped after 1 event(s) stored" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


@pytest.mark.parametrize(("env", "problem"), [
    ({}, "no socket: systemd passed none and --socket is not given"),
])
def test_without_a_socket_it_says_so_in_one_line(db: Path, env: dict[str, str],
                                                  problem: str) -> None:
    done = subprocess.run([str(AGENTMON), "ingest", "--db", str(db)], capture_output=True,
                          text=True, timeout=WAIT, check=False, env={**os.environ, **env})
    assert done.returncode == 1
    assert done.stderr == f"agentmon ingest: error: {problem}\n"


def test_a_second_service_on_the_same_socket_is_refused(db: Path) -> None:
    with process(db) as first:
        sock = next(a for a in first.args if a.endswith(".sock"))
        done = subprocess.run([str(AGENTMON), "ingest", "--db", str(db), "--socket", sock],
                              capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 1
    assert done.stderr == f"agentmon ingest: error: {sock}: another service listens there\n"


def test_something_else_at_the_socket_path_is_refused(db: Path, tmp_path: Path) -> None:
    there = tmp_path / "file"
    there.write_text("x")
    done = subprocess.run([str(AGENTMON), "ingest", "--db", str(db), "--socket", str(there)],
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 1
    assert "exists and is not a socket" in done.stderr
    assert there.read_text() == "x"


def test_it_exits_once_the_release_link_moves(db: Path, tmp_path: Path) -> None:
    """A deploy or rollback points current elsewhere: the running service finishes and exits,
    and systemd starts the new release on the next connection."""
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "r1")
    with process(db, "--release-link", str(current)) as proc:
        sock = next(a for a in proc.args if a.endswith(".sock"))
        assert run_hook(event("Stop"), None, "--socket", sock,
                        env=home_env(tmp_path)) == (0, "")
        (tmp_path / "next").symlink_to(tmp_path / "r2")
        os.replace(tmp_path / "next", current)
        assert proc.wait(WAIT) == 0
        assert "no longer points at" in proc.stderr.read()


def test_the_dispatcher_lists_ingest(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "ingest" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["ingest", "--max-connections", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_systemds_variables_are_for_this_process_and_one_socket() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    with pytest.raises(ValueError, match="passed 2 sockets"):
        ingest_cli.systemd_socket(env)
    assert env == {}  # not passed on
    assert ingest_cli.systemd_socket({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None


def test_sqlite_errors_other_than_busy_refuse_with_retry(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    with running(db) as ingest:
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE agent_usage")
        conn.commit()
        conn.close()
        ok, retry, said = request(ingest.socket, event_request(event("StopFailure",
                                                                     error="rate_limit")))
    assert (ok, retry) == (False, True)
    assert said is not None
    assert "no such table: agent_usage" in said



# --- the exporter asks ----------------------------------------------------------------------


def test_the_exporter_says_whether_the_service_can_store(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    db = make_db(tmp_path / "a.db")
    collector = ExporterCollector(db)
    collector.refresh()
    assert by_name(samples(collector), "agentmon_ingest_up") == {}  # not asked: absent
    with running(db) as ingest:
        collector = ExporterCollector(db, ingest_socket=ingest.socket)
        collector.refresh()
        assert value(samples(collector), "agentmon_ingest_up") == 1
        old = make_db(tmp_path / "b.db", migrations.LATEST - 1)
        os.replace(old, db)  # at another schema version: it answers, but cannot store
        collector.refresh()
        assert value(samples(collector), "agentmon_ingest_up") == 0
    collector.refresh()  # nobody listens any more
    assert value(samples(collector), "agentmon_ingest_up") == 0
    assert "ingest service cannot store events" in caplog.text


def test_serve_takes_the_ingest_socket() -> None:
    args = serve_cli.build_parser().parse_args(["--db", "/x.db", "--ingest.socket", "/s"])
    assert serve_cli.settings_from_args(args).ingest_socket == Path("/s")


def test_the_command_in_this_process_until_sigterm(db: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """agentmon ingest's main() as the console script runs it (the thread-run tests build the
    server by hand): it binds --socket, stores, stops on SIGTERM and removes its socket."""
    sock = short_dir() / "ingest.sock"
    results: list[tuple[int, str]] = []

    def client_then_sigterm() -> None:
        try:
            ready(sock)
            results.append(run_hook(event("Stop"), None, "--socket", str(sock),
                                    env=home_env(tmp_path)))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    helper = threading.Thread(target=client_then_sigterm)
    helper.start()
    try:
        with caplog.at_level(logging.INFO, logger="agentmon.ingest"):
            assert ingest_cli.main(["--db", str(db), "--socket", str(sock),
                                    "--spool-status-dir", str(tmp_path / "counts")]) == 0
    finally:
        helper.join(WAIT)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert results == [(0, "")]
    assert not sock.exists()
    assert "stopped after 1 event(s) stored" in caplog.text
    assert rows(db, "SELECT session_id FROM sessions") == [("sess-1",)]


def test_a_status_folder_it_cannot_take_is_logged_and_events_are_stored(
        db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "counts").symlink_to(elsewhere)
    sock = short_dir() / "ingest.sock"

    def stop_soon() -> None:
        ready(sock)
        os.kill(os.getpid(), signal.SIGTERM)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    helper = threading.Thread(target=stop_soon)
    helper.start()
    try:
        assert ingest_cli.main(["--db", str(db), "--socket", str(sock), "--spool-status-dir",
                                str(tmp_path / "counts"), "--log.level", "warning"]) == 0
    finally:
        helper.join(WAIT)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert "spool counts not kept" in caplog.text


def test_a_bug_storing_one_event_refuses_that_event_and_stops_nobody(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever one event makes the store raise (here a fault put in its way), that event is
    refused with one line and the service goes on: one user's event cannot stop everyone's
    recording by crashing it."""
    with running(db) as ingest:
        real = ingest.server.writer.store

        def broken(event: dict[str, Any], **kwargs: Any) -> str | None:
            if event["session_id"] == "poison":
                raise RuntimeError("a bug")
            return real(event, **kwargs)

        monkeypatch.setattr(ingest.server.writer, "store", broken)
        assert request(ingest.socket, event_request(event("Stop", session="poison"))) == (
            False, False, "internal error: RuntimeError: a bug")
        assert request(ingest.socket, event_request(event("Stop"))) == (True, False, None)
    assert rows(db, "SELECT session_id FROM sessions") == [("sess-1",)]
