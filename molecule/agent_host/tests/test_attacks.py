"""The data folder's trust boundary, attacked as a hook user (alice) would, and as a service
account gone bad would.

alice's hook hands its events to the ingest socket; she is in no group of agentmon's and can
neither read the database nor add, remove or replace anything in its folder, nor make the
service read a file she could not open herself. A service account (the exporter's, a member of
the data group) can still add files there: a link it plants where root's next converge looks
must stop the converge with one line naming the link, and leave the link's target exactly as
it was.

These tests change the host and run the converge playbook again (ansible-playbook with the
scenario's inventory and Molecule's environment); each puts the host back as it found it. The
last one is the scenario's idempotence check: a converge that changes nothing. Runs after
test_agent_host.py and before test_tls_client_cert.py (file names sort so).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from verify_helpers import changed_tasks, playbook, recap, ssh_host

HOST = os.environ.get("AGENTMON_AGENT_HOST", "agentmon-agent-host")
testinfra_hosts = [ssh_host(HOST)]

DATA = "/var/lib/agentmon"
DB = f"{DATA}/agent_workflow.db"
BACKUPS = "/var/backups/agentmon"
SERVICE = "agentmon-exporter.service"
INGEST = ("agentmon-ingest.socket", "agentmon-ingest.service")
SOCKET = "/run/agentmon/ingest.sock"
HOOK = "/opt/agentmon/current/bin/agentmon"
# A service account of the data group, as if compromised: it can add files to the data folder.
INSIDER = "agentmon-exporter"
# Root's own things a hook user wants root to hand over: a 0600 file and a 0700 folder.
ROOT_FILE = "/root/attack-target.secret"
ROOT_DIR = "/root/attack-target.d"


def converge(*extra: str) -> tuple[int, str]:
    """Run the scenario's converge playbook as `molecule converge` does."""
    return playbook(str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
                    *extra)


def as_alice(host: Any, command: str, *args: str) -> Any:
    return host.run("runuser -u alice -- " + command, *args)


def as_insider(host: Any, command: str, *args: str) -> Any:
    return host.run(f"runuser -u {INSIDER} -- " + command, *args)


def count(host: Any, sql: str, *params: str) -> int:
    script = ("import json, sqlite3, sys;"
              " c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True);"
              " print(c.execute(sys.argv[2], json.loads(sys.argv[3])).fetchone()[0])")
    return int(host.check_output("python3 -c %s %s %s %s", script, DB, sql, json.dumps(params)))


def fingerprint(host: Any, path: str) -> str:
    """Owner, group, mode, link-ness and content (of a file or of a folder's listing)."""
    meta = host.check_output("stat -c '%%U:%%G %%a %%F' %s", path)
    content = host.check_output("sha256sum %s || ls -la %s", path, path)
    return f"{meta}\n{content}"


@pytest.fixture(scope="module")
def root_file(host: Any) -> Iterator[str]:
    host.check_output("install -m 0600 -o root -g root /dev/null %s && echo root-only > %s",
                      ROOT_FILE, ROOT_FILE)
    yield ROOT_FILE
    host.run("rm -f %s", ROOT_FILE)


@pytest.fixture(scope="module")
def root_dir(host: Any) -> Iterator[str]:
    host.check_output("install -d -m 0700 -o root -g root %s && echo root-only > %s/kept",
                      ROOT_DIR, ROOT_DIR)
    yield ROOT_DIR
    host.run("rm -rf %s", ROOT_DIR)


@pytest.fixture(scope="module")
def planted(host: Any, root_file: str, root_dir: str) -> dict[str, Any]:
    """Both links a service account of the data group can plant (hook users no longer can),
    then one converge as root: one at a name that does not exist yet (the database, set aside
    as during an incident), one as backups/ in the data folder. The play looks at every name
    before it stops, so one run refuses each. The host is put back before the tests look at
    the outcome."""
    before = {path: fingerprint(host, path) for path in (root_file, root_dir)}
    host.check_output("systemctl stop %s %s %s", SERVICE, *INGEST)
    host.check_output("install -d -m 0700 /root/aside && mv %s* /root/aside/", DB)
    try:
        assert as_insider(host, "ln -s %s %s", root_file, DB).rc == 0
        assert as_insider(host, "ln -s %s %s/backups", root_dir, DATA).rc == 0
        rc, out = converge()
        after = {path: fingerprint(host, path) for path in (root_file, root_dir)}
        return {"rc": rc, "out": out, "before": before, "after": after,
                "is_link": host.file(DB).is_symlink}  # left for the operator to look at
    finally:
        host.run("rm -f %s %s/backups", DB, DATA)
        host.check_output("mv /root/aside/* %s/ && rmdir /root/aside", DATA)
        host.check_output("systemctl start %s %s", INGEST[0], SERVICE)


def test_a_hook_user_can_neither_read_nor_touch_the_data_folder(host: Any,
                                                                  root_file: str) -> None:
    """She is in no group of agentmon's: the folder is closed to her. Attack 1 as first
    reported (the database replaced by a link to a root-only file) and every plant of issue 19
    (a -journal link that stopped everyone's recording) fail at the folder's door."""
    assert "agentmon" not in host.user("alice").groups
    before = fingerprint(host, root_file)
    for attempt in (f"cat {DB}", f"test -r {DB}", f"ls {DATA}",
                    f"ln -sfn {root_file} {DB}", f"ln -s {root_file} {DB}-journal",
                    f"mv {DB} {DB}.moved", f"touch {DATA}/spool-status/{uuid.uuid4().hex}",
                    f"rm -f {DB}-wal"):
        denied = as_alice(host, attempt)
        assert denied.rc != 0, (attempt, denied.stdout)
        assert "Permission denied" in denied.stderr or attempt.startswith("test "), (
            attempt, denied.stderr)
    assert not host.file(DB).is_symlink
    assert not host.file(f"{DB}-journal").exists
    assert host.file(DB).user == "agentmon-db"
    assert fingerprint(host, root_file) == before


def test_a_hook_user_cannot_make_the_service_read_anothers_transcript(host: Any) -> None:
    """A file of bob's that alice can read (0644 in a folder of his that others may enter;
    Claude Code's own ~/.claude is 0700): the hook refuses a file that is not hers, and so does
    the service when she opens it herself and passes the descriptor."""
    transcript = "/home/bob/public/bob.jsonl"
    line = {"type": "assistant", "requestId": "req_bob", "message": {
        "id": f"msg_bob_{uuid.uuid4().hex[:8]}", "model": "claude-sonnet-4-5-20250929",
        "usage": {"input_tokens": 1000, "output_tokens": 1000}}}
    host.check_output("runuser -u bob -- install -d -m 0755 /home/bob/public")
    host.check_output("runuser -u bob -- python3 -c %s %s %s",
                      "import sys; open(sys.argv[1], 'w').write(sys.argv[2] + '\\n')",
                      transcript, json.dumps(line))
    host.check_output("chmod 0755 /home/bob && chmod 0644 %s", transcript)
    mine = f"attack-{uuid.uuid4().hex[:8]}"
    stop = {"session_id": mine, "transcript_path": transcript, "cwd": "/home/alice",
            "hook_event_name": "Stop", "stop_hook_active": False}
    before = count(host, "SELECT count(*) FROM agent_usage")
    # Through her hook, as Claude Code runs it: the event is stored, bob's file is not read.
    hooked = host.run("printf %%s %s | runuser -u alice -- %s hook --socket %s",
                      json.dumps(stop), HOOK, SOCKET)
    assert hooked.rc == 0
    assert "is not a regular file of this user; not read" in hooked.stderr, hooked.stderr
    # Past the hook: her own program opens bob's file and passes the descriptor.
    raw = ("import os, sys\nfrom agentmon.ingest import client, protocol\n"
           "fd = os.open(sys.argv[2], os.O_RDONLY)\n"
           "print(client.exchange(sys.argv[1], protocol.header('event',"
           " fds=['transcript_path']) + sys.argv[3].encode(), [fd], timeout=30))\n")
    passed = as_alice(host, "/opt/agentmon/current/bin/python -c %s %s %s %s", raw, SOCKET,
                      transcript, json.dumps(stop))
    assert passed.rc == 0, passed.stderr
    bob = host.user("bob").uid
    alice = host.user("alice").uid
    assert f"owned by uid {bob}, not by the sender (uid {alice}); not read" in passed.stdout
    assert count(host, "SELECT count(*) FROM agent_usage") == before
    assert count(host, "SELECT count(*) FROM sessions WHERE session_id = ?", mine) == 1


def test_a_hook_user_cannot_reach_the_backups(host: Any) -> None:
    backup = host.check_output("ls %s", BACKUPS).split()[0]
    assert "Permission denied" in as_alice(host, "ls %s", BACKUPS).stderr
    assert as_alice(host, "rm -f %s/%s", BACKUPS, backup).rc != 0
    assert as_alice(host, "ln -s /tmp %s/planted", BACKUPS).rc != 0
    assert host.file(f"{BACKUPS}/{backup}").exists


def test_a_link_planted_at_a_missing_database_stops_the_play(planted: dict[str, Any],
                                                             root_file: str) -> None:
    # Where a service account still can plant: a name that does not exist yet. Root's next
    # converge must not follow it.
    assert planted["rc"] != 0
    message = f"refusing to deploy: {DB} is a symbolic link (to {root_file}, owned by {INSIDER})"
    assert message in " ".join(planted["out"].split())
    assert planted["after"][root_file] == planted["before"][root_file]
    assert planted["is_link"]


def test_a_link_planted_as_backups_stops_the_play(planted: dict[str, Any], root_dir: str) -> None:
    # Attack 2 as first reported: backups/ in the data folder a link to a root-only folder. The
    # role's backups are elsewhere, but a direct writer's own migration would write there.
    assert planted["rc"] != 0
    message = (f"refusing to deploy: {DATA}/backups is a symbolic link "
               f"(to {root_dir}, owned by {INSIDER})")
    assert message in " ".join(planted["out"].split())
    assert planted["after"][root_dir] == planted["before"][root_dir]


def test_a_refused_deploy_changes_nothing(planted: dict[str, Any]) -> None:
    assert recap(planted["out"], HOST)["changed"] == 0, changed_tasks(planted["out"], HOST)


def test_a_failed_migration_shows_its_own_error() -> None:
    rc, out = converge("-e", "agentmon_db_schema_version=999")
    assert rc != 0
    assert "agentmon migrate: error:" in out
    assert "Expecting value" not in out
    # rescued: the schema stays where the live release needs it, nothing else was changed
    assert recap(out, HOST)["changed"] == 0, changed_tasks(out, HOST)


def test_the_host_converges_cleanly_again_and_changes_nothing(host: Any) -> None:
    """The scenario's idempotence check (its sequence has no idempotence step): the converge
    playbook with the same inventory and environment as Molecule's idempotence step, on the
    host the first converge left. Between the two, the converges above stopped in their
    preflight or migration having changed nothing, and each test put back what it changed."""
    rc, out = converge()
    assert rc == 0, out[-2000:]
    assert recap(out, HOST)["changed"] == 0, changed_tasks(out, HOST)
    assert host.service(SERVICE).is_running
