"""The data folder's trust boundary, attacked as a hook user (alice, a member of the data group)
would: plant links where she can write, then let root's next converge run. The converge must
stop with one line naming each link, change nothing, and leave each link's target exactly as it
was.

These tests change the host and run the converge playbook again (ansible-playbook with the
scenario's inventory and Molecule's environment); each puts the host back as it found it. The
last one is the scenario's idempotence check: a converge that changes nothing. Runs after
test_agent_host.py and before test_tls_client_cert.py (file names sort so).
"""

from __future__ import annotations

import os
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
# Root's own things a hook user wants root to hand over: a 0600 file and a 0700 folder.
ROOT_FILE = "/root/attack-target.secret"
ROOT_DIR = "/root/attack-target.d"


def converge(*extra: str) -> tuple[int, str]:
    """Run the scenario's converge playbook as `molecule converge` does."""
    return playbook(str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
                    *extra)


def as_alice(host: Any, command: str, *args: str) -> Any:
    return host.run("runuser -u alice -- " + command, *args)


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
    """Both links a hook user can still plant, then one converge as root: one at a name that
    does not exist yet (the database, set aside as during an incident), one as backups/ in the
    data folder. The play looks at every name before it stops, so one run refuses each. The
    host is put back before the tests look at the outcome."""
    before = {path: fingerprint(host, path) for path in (root_file, root_dir)}
    host.check_output("systemctl stop %s", SERVICE)
    host.check_output("install -d -m 0700 /root/aside && mv %s* /root/aside/", DB)
    try:
        assert as_alice(host, "ln -s %s %s", root_file, DB).rc == 0
        assert as_alice(host, "ln -s %s %s/backups", root_dir, DATA).rc == 0
        rc, out = converge()
        after = {path: fingerprint(host, path) for path in (root_file, root_dir)}
        return {"rc": rc, "out": out, "before": before, "after": after,
                "is_link": host.file(DB).is_symlink}  # left for the operator to look at
    finally:
        host.run("rm -f %s %s/backups", DB, DATA)
        host.check_output("mv /root/aside/* %s/ && rmdir /root/aside", DATA)
        host.check_output("systemctl start %s", SERVICE)


def test_a_hook_user_can_write_the_database(host: Any) -> None:
    assert "agentmon" in host.user("alice").groups
    assert as_alice(host, "test -w %s", DB).rc == 0


def test_a_hook_user_cannot_replace_the_database_by_a_link(host: Any, root_file: str) -> None:
    # Attack 1 as first reported: the database replaced by a link to a root-only file. The
    # sticky folder and a database that is not hers stop it before any converge.
    before = fingerprint(host, root_file)
    planted = as_alice(host, "ln -sfn %s %s", root_file, DB)
    assert planted.rc != 0
    assert "Operation not permitted" in planted.stderr
    assert as_alice(host, "mv %s %s.moved", DB, DB).rc != 0
    assert not host.file(DB).is_symlink
    assert host.file(DB).user == "agentmon-db"
    assert fingerprint(host, root_file) == before


def test_a_hook_user_cannot_reach_the_backups(host: Any) -> None:
    backup = host.check_output("ls %s", BACKUPS).split()[0]
    assert "Permission denied" in as_alice(host, "ls %s", BACKUPS).stderr
    assert as_alice(host, "rm -f %s/%s", BACKUPS, backup).rc != 0
    assert as_alice(host, "ln -s /tmp %s/planted", BACKUPS).rc != 0
    assert host.file(f"{BACKUPS}/{backup}").exists


def test_a_link_planted_at_a_missing_database_stops_the_play(planted: dict[str, Any],
                                                             root_file: str) -> None:
    # Where a hook user still can plant: a name that does not exist yet. Root's next converge
    # must not follow it.
    assert planted["rc"] != 0
    message = f"refusing to deploy: {DB} is a symbolic link (to {root_file}, owned by alice)"
    assert message in " ".join(planted["out"].split())
    assert planted["after"][root_file] == planted["before"][root_file]
    assert planted["is_link"]


def test_a_link_planted_as_backups_stops_the_play(planted: dict[str, Any], root_dir: str) -> None:
    # Attack 2 as first reported: backups/ in the data folder a link to a root-only folder.
    # The role's backups are elsewhere now, but the hook's own migration would write there.
    assert planted["rc"] != 0
    message = (f"refusing to deploy: {DATA}/backups is a symbolic link "
               f"(to {root_dir}, owned by alice)")
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
