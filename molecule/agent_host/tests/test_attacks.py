"""The data folder's trust boundary, attacked as a hook user (alice, a member of the data group)
would: plant links where she can write, then let root's next converge run. The converge must
stop with one line naming the link, and leave the link's target exactly as it was.

These tests change the host and run the converge playbook again (ansible-playbook with the
scenario's inventory); each puts the host back as it found it. Runs after test_agent_host.py
(file names sort so).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from verify_helpers import ssh_host

HOST = os.environ.get("AGENTMON_AGENT_HOST", "agentmon-agent-host")
testinfra_hosts = [ssh_host(HOST)]

DATA = "/var/lib/agentmon"
DB = f"{DATA}/agent_workflow.db"
BACKUPS = "/var/backups/agentmon"
SERVICE = "agentmon-exporter.service"
# Root's own things a hook user wants root to hand over: a 0600 file and a 0700 folder.
ROOT_FILE = "/root/attack-target.secret"
ROOT_DIR = "/root/attack-target.d"


def converge(*extra: str) -> subprocess.CompletedProcess[str]:
    """Run the scenario's converge playbook as `molecule converge` does."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(playbook), *extra],
        capture_output=True, text=True, check=False, timeout=600)
    # ansible-core prints a failed task's message on stderr: keep both, in order of importance.
    result.stdout = result.stdout + "\n" + result.stderr
    print(result.stdout[-3000:])
    return result


def as_alice(host: Any, command: str, *args: str) -> Any:
    return host.run("runuser -u alice -- " + command, *args)


def fingerprint(host: Any, path: str) -> str:
    """Owner, group, mode, link-ness and content (of a file or of a folder's listing)."""
    meta = host.check_output("stat -c '%%U:%%G %%a %%F' %s", path)
    content = host.check_output("sha256sum %s || ls -la %s", path, path)
    return f"{meta}\n{content}"


@pytest.fixture
def root_file(host: Any) -> Iterator[str]:
    host.check_output("install -m 0600 -o root -g root /dev/null %s && echo root-only > %s",
                      ROOT_FILE, ROOT_FILE)
    yield ROOT_FILE
    host.run("rm -f %s", ROOT_FILE)


@pytest.fixture
def root_dir(host: Any) -> Iterator[str]:
    host.check_output("install -d -m 0700 -o root -g root %s && echo root-only > %s/kept",
                      ROOT_DIR, ROOT_DIR)
    yield ROOT_DIR
    host.run("rm -rf %s", ROOT_DIR)


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


def test_a_link_planted_at_a_missing_database_stops_the_play(host: Any, root_file: str) -> None:
    # Where a hook user still can plant: a name that does not exist yet (here the database,
    # set aside as during an incident). Root's next converge must not follow it.
    host.check_output("systemctl stop %s", SERVICE)
    host.check_output("install -d -m 0700 /root/aside && mv %s* /root/aside/", DB)
    try:
        before = fingerprint(host, root_file)
        assert as_alice(host, "ln -s %s %s", root_file, DB).rc == 0
        result = converge()
        assert result.returncode != 0
        message = f"refusing to deploy: {DB} is a symbolic link (to {root_file}, owned by alice)"
        assert message in " ".join(result.stdout.split())
        assert fingerprint(host, root_file) == before
        assert host.file(DB).is_symlink  # left for the operator to look at
    finally:
        host.run("rm -f %s", DB)
        host.check_output("mv /root/aside/* %s/ && rmdir /root/aside", DATA)
        host.check_output("systemctl start %s", SERVICE)


def test_a_link_planted_as_backups_stops_the_play(host: Any, root_dir: str) -> None:
    # Attack 2 as first reported: backups/ in the data folder a link to a root-only folder.
    # The role's backups are elsewhere now, but the hook's own migration would write there.
    before = fingerprint(host, root_dir)
    assert as_alice(host, "ln -s %s %s/backups", root_dir, DATA).rc == 0
    try:
        result = converge()
        assert result.returncode != 0
        message = (f"refusing to deploy: {DATA}/backups is a symbolic link "
                   f"(to {root_dir}, owned by alice)")
        assert message in " ".join(result.stdout.split())
        assert fingerprint(host, root_dir) == before
    finally:
        host.run("rm -f %s/backups", DATA)


def test_a_failed_migration_shows_its_own_error(host: Any) -> None:
    result = converge("-e", "agentmon_db_schema_version=999")
    assert result.returncode != 0
    assert "agentmon migrate: error:" in result.stdout
    assert "Expecting value" not in result.stdout


def test_the_host_converges_cleanly_again_and_changes_nothing(host: Any) -> None:
    result = converge()
    assert result.returncode == 0, result.stdout[-2000:]
    recap = re.search(rf"{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout)
    assert recap is not None
    assert recap.group(1) == "0", result.stdout[-3000:]
    assert host.service(SERVICE).is_running
