"""A user's repository deployed agentmon over SSH: the roles that ran were the installed
artifact's (every task path of every inner run), the deploy went over SSH as the unprivileged
`deploy` account with sudo (sshd and sudo's own logs on the hosts), sshd takes keys only, and
what it deployed works as in multi_host: Prometheus scrapes the agent host over TLS through its
nginx, a hook event reaches Prometheus, and wrong or missing passwords get 401."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import testinfra
import yaml
from verify_helpers import http, ssh_host, wait_for

AGENT, MONITOR = "agentmon-ur-agent", "agentmon-ur-monitor"
testinfra_hosts = [ssh_host(name) for name in (AGENT, MONITOR)]

PROJECT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
REPO = EPHEMERAL / "user-repo"
KEY = EPHEMERAL / "deploy-ssh" / "id_ed25519"
INSTALLED = REPO / "collections" / "ansible_collections" / "agentmon" / "stack"
# The roles the README's playbook and agentmon.stack.monitoring name, and the internal ones
# they include.
ROLES = {"db", "exporter", "hooks", "pki", "nginx", "alertmanager", "prometheus", "grafana",
         "_release"}
CA = "/etc/ssl/agentmon/ca.crt"
DROP_IN = "/etc/claude-code/managed-settings.d/50-agentmon.json"
# The test-only secrets molecule.yml gives the user repository's vault.
ADMIN = ("admin", "molecule-ur-admin-password")
AM_ADMIN = ("admin", "molecule-ur-am-admin-password")
SCRAPER = ("prometheus", "molecule-ur-scrape-password")
PROMETHEUS = f"https://{MONITOR}/prometheus"
ALERTMANAGER = f"https://{MONITOR}/alertmanager"
# The environment a user's shell gives ansible-galaxy: none of this repository's settings.
CLEAN_ENV = {"HOME": os.environ["HOME"], "LANG": "C.UTF-8",
             "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}


def on(name: str) -> Any:
    return testinfra.get_host(ssh_host(name))


def get(url: str, auth: tuple[str, str] | None = None, origin: str = AGENT) -> dict[str, Any]:
    """From `origin`, with the internal CA, not following redirects."""
    return http(on(origin), url, basic=auth, ca=CA, follow_redirects=False, timeout=10)


def query(promql: str) -> list[dict[str, Any]]:
    answer = get(f"{PROMETHEUS}/api/v1/query?{urlencode({'query': promql})}", ADMIN)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])["data"]["result"]


def runs() -> dict[str, str]:
    """The inner ansible-playbook runs' output (converge.yml), oldest first: name -> text."""
    logs = sorted((REPO / "runs").glob("*.log"))
    return {log.name: log.read_text() for log in logs}


def addresses() -> dict[str, str]:
    inventory = yaml.safe_load((REPO / "inventory" / "hosts.yml").read_text())
    groups = inventory["all"]["children"]
    return {name: host["ansible_host"] for group in groups.values()
            for name, host in group["hosts"].items()}


def ssh(user: str, address: str, *options: str) -> subprocess.CompletedProcess[str]:
    """ssh from the controller with the test's key and the user repository's known_hosts."""
    command = ["ssh", "-i", str(KEY), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={REPO / 'known_hosts'}",
               "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no",
               "-o", "ConnectTimeout=20",
               *options, f"{user}@{address}", "id -un; sudo -n id -un"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          check=False)


# --- the user's repository and the artifact in it --------------------------------------------


def test_the_user_repository_is_outside_this_checkout_and_holds_no_link_into_it() -> None:
    assert not REPO.resolve().is_relative_to(PROJECT.resolve())
    for path in REPO.rglob("*"):
        if path.is_symlink():
            assert not path.resolve().is_relative_to(PROJECT.resolve()), path
    assert INSTALLED.is_dir()
    assert not INSTALLED.is_symlink()


def test_the_playbook_is_the_readmes() -> None:
    readme = (PROJECT / "README.md").read_text()
    section = re.search(r"(?ms)^## Use the collection in your own repository$.*?(?=^## )", readme)
    assert section, "README has no 'Use the collection in your own repository' section"
    block = re.search(r"(?ms)^```yaml\n(.*?)^```$", section.group(0))
    assert block
    assert (REPO / "site.yml").read_text() == "---\n" + block.group(1)


def test_the_installed_collection_is_the_artifact() -> None:
    """Its version is galaxy.yml's, its FILES.json the tarball's, and ansible-galaxy verifies
    every installed file against it, offline (a network namespace without a network)."""
    [artifact] = REPO.glob("agentmon-stack-*.tar.gz")
    version = yaml.safe_load((PROJECT / "galaxy.yml").read_text())["version"]
    assert artifact.name == f"agentmon-stack-{version}.tar.gz"
    manifest = json.loads((INSTALLED / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == version
    with tarfile.open(artifact) as tar:
        member = tar.extractfile("FILES.json")
        assert member is not None
        assert json.loads(member.read()) == json.loads((INSTALLED / "FILES.json").read_text())
    # community.crypto, its dependency, came from the installed `ansible` package.
    assert not (REPO / "collections" / "ansible_collections" / "community").exists()
    verify = subprocess.run(
        ["unshare", "--net", "ansible-galaxy", "collection", "verify", "--offline",
         "agentmon.stack"], cwd=REPO, env=CLEAN_ENV, capture_output=True, text=True,
        timeout=300, check=False)
    # Python compiles the filter plugin it loads into __pycache__ beside it: verify skips the
    # .pyc files (ansible/ansible#81628) but still lists their folder. Anything else added or
    # changed is a failure (the internal CA's keys were).
    out = verify.stdout
    head, _, listed = out.partition("contains modified content in the following files:\n")
    assert f"Installed collection found at '{INSTALLED}'" in head, out + verify.stderr
    modified = listed.split()
    assert [path for path in modified if not path.endswith("/__pycache__")] == [], out
    assert (verify.returncode == 0) == (modified == []), out + verify.stderr
    print(f"ansible-galaxy collection verify --offline: rc {verify.returncode}, "
          f"modified: {modified or 'none'}")


def test_every_role_that_ran_was_the_installed_artifacts() -> None:
    """Every task path in every inner run (converge, idempotence, check) is in the user
    repository's collections folder, under the README's ansible.cfg, without pipelining."""
    logs = runs()
    assert any(name.endswith("-run.log") for name in logs), sorted(logs)
    config = (REPO / "ansible.cfg").read_text()
    assert "collections_path = ./collections" in config
    assert "pipelining" not in config
    for name, text in logs.items():
        assert f"Using {REPO}/ansible.cfg as config file" in text, name
        paths = set(re.findall(r"^task path: (\S+):\d+$", text, re.M))
        # The user's own playbook (its fact gathering), the rest the artifact's.
        outside = sorted(p for p in paths if not p.startswith(f"{INSTALLED}/")
                         and p != f"{REPO}/site.yml")
        assert outside == [], (name, outside)
        assert f"{INSTALLED}/playbooks/monitoring.yml" in paths, name
        roles = {p.removeprefix(f"{INSTALLED}/roles/").split("/")[0] for p in paths
                 if p.startswith(f"{INSTALLED}/roles/")}
        assert roles >= ROLES, (name, sorted(roles))
        # Nothing of this checkout but the Ansible installation in its venv.
        leaks = [line for line in text.splitlines()
                 if str(PROJECT) in line and f"{PROJECT}/.venv/" not in line]
        assert leaks == [], (name, leaks)
        recap = re.findall(
            r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", text, re.M)
        print(f"{name}: {[' '.join(r) for r in recap]}")
        assert {AGENT, MONITOR} <= {r[0] for r in recap} <= {AGENT, MONITOR, "localhost"}, recap
        assert all(r[3] == "0" and r[4] == "0" for r in recap), recap


def test_the_internal_ca_is_beside_the_inventory_not_in_the_collection() -> None:
    """agentmon_internal_ca: true makes the CA on the controller, in the inventory's folder
    (the play that makes it is the collection's, whose playbook_dir is the installed
    collection: ansible-galaxy collection verify above finds any file added there)."""
    pki = REPO / "inventory" / ".pki"
    assert (pki / "ca.crt").is_file()
    assert pki.stat().st_mode & 0o777 == 0o700
    for name in ("ca.key", f"{AGENT}.key", f"{MONITOR}.key"):
        assert (pki / name).stat().st_mode & 0o777 == 0o600, name
    assert not list(INSTALLED.rglob(".pki"))


def test_no_secret_in_the_repository_or_the_run_logs_but_the_vault() -> None:
    vault = (REPO / "inventory" / "group_vars" / "all" / "vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    secrets = [password for _, password in (ADMIN, AM_ADMIN, SCRAPER)]
    for path in REPO.rglob("*"):
        if path.is_file() and "collections" not in path.parts and path.suffix != ".gz":
            text = path.read_text(errors="replace")
            assert not [s for s in secrets if s in text], path


# --- over SSH as deploy, with sudo --------------------------------------------------------------


@pytest.mark.parametrize("name", [AGENT, MONITOR])
def test_sshd_takes_the_deploy_key_only(name: str) -> None:
    address = addresses()[name]
    good = ssh("deploy", address)
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["deploy", "root"]
    for user, options in (("deploy", ("-o", "PubkeyAuthentication=no")),
                          ("root", ())):
        refused = ssh(user, address, *options)
        assert refused.returncode == 255, (user, options, refused.stdout)
        assert "Permission denied (publickey)" in refused.stderr, (user, options, refused.stderr)


@pytest.mark.parametrize("name", [AGENT, MONITOR])
def test_the_deploy_went_over_ssh_as_deploy_with_sudo(name: str) -> None:
    """sshd logged deploy's key logins, sudo logged deploy becoming root for Ansible's modules,
    and no task became root any other way."""
    host = on(name)
    sshd = host.check_output("journalctl --no-pager -o cat -u ssh.service")
    assert re.search(r"^Accepted publickey for deploy from \S+ port \d+ ssh2: ED25519 ", sshd,
                     re.M), sshd[-2000:]
    assert "Accepted publickey for root" not in sshd
    assert "Accepted password" not in sshd
    sudo = host.check_output("journalctl --no-pager -o cat _COMM=sudo")
    become = re.findall(r"^\s*deploy : .*USER=root ; COMMAND=/bin/sh -c '?echo BECOME-SUCCESS-",
                        sudo, re.M)
    assert len(become) > 50, sudo[-2000:]
    user = host.user("deploy")
    assert user.uid >= 1000
    assert "sudo" not in user.groups


# --- what it deployed works, as in multi_host ---------------------------------------------------


def test_prometheus_scrapes_the_agent_host_over_tls_through_nginx() -> None:
    def target() -> dict[str, Any] | None:
        answer = get(f"{PROMETHEUS}/api/v1/targets?state=active", ADMIN)
        assert answer["status"] == 200, answer
        found = [t for t in json.loads(answer["body"])["data"]["activeTargets"]
                 if t["labels"]["job"] == "agentmon"]
        return found[0] if len(found) == 1 and found[0]["health"] == "up" else None

    up = wait_for(target, "the agent host's target up")
    assert up["scrapeUrl"] == f"https://{AGENT}:443/metrics"
    monitor = on(MONITOR)
    with monitor.sudo():
        config = monitor.file("/etc/prometheus/prometheus.yml").content_string
    assert f"ca_file: {CA}" in config
    assert "insecure_skip_verify: false" in config
    assert SCRAPER[1] not in config
    # The door Prometheus uses: nginx on the agent host, TLS against the internal CA.
    door = f"https://{AGENT}/metrics"
    answer = get(door, SCRAPER, origin=MONITOR)
    assert answer["status"] == 200, answer
    assert re.search(r"^agentmon_db_up(\{[^}]*\})? 1(\.0)?$", answer["body"], re.M)
    assert answer["headers"]["strict-transport-security"].startswith("max-age=")
    for auth in (None, ("prometheus", "wrong-password"), ("nobody", SCRAPER[1])):
        assert get(door, auth, origin=MONITOR)["status"] == 401, auth
    # The exporter itself only on loopback.
    refused = get(f"http://{AGENT}:9477/metrics", SCRAPER, origin=MONITOR)
    assert refused["status"] == 0, refused


@pytest.mark.parametrize(("url", "auth"), [
    (f"{PROMETHEUS}/api/v1/query?query=up", ADMIN),
    (f"{ALERTMANAGER}/api/v2/status", AM_ADMIN),
])
def test_wrong_or_no_password_gets_401(url: str, auth: tuple[str, str]) -> None:
    assert get(url, auth)["status"] == 200
    for wrong in (None, (auth[0], "wrong-password"), ("nobody", auth[1])):
        answer = get(url, wrong)
        assert answer["status"] == 401, (url, wrong, answer["status"])


def test_a_hook_event_reaches_prometheus() -> None:
    """alice runs the managed drop-in's hooks as Claude Code would; Prometheus, through the
    agent host's nginx, counts the finished tool use."""
    tool = f"mcp__verify__ur{uuid.uuid4().hex[:8]}"
    promql = f'agentmon_tool_uses_total{{tool="{tool}",status="completed"}}'
    assert query(promql) == []
    agent = on(AGENT)
    hooks = json.loads(agent.file(DROP_IN).content_string)["hooks"]

    def command(event: str) -> str:
        found = [h for entry in hooks[event] for h in entry["hooks"] if h.get("type") == "command"]
        assert len(found) == 1, found
        hook = found[0]
        # As Claude Code runs it: exec form (args, no shell) or a shell command.
        return shlex.join([hook["command"], *hook["args"]]) if "args" in hook else hook["command"]

    base = {"session_id": f"ur-{uuid.uuid4().hex[:8]}", "cwd": "/home/alice",
            "transcript_path": "/home/alice/.claude/t.jsonl", "permission_mode": "default"}
    events = [("PreToolUse", {"tool_name": tool, "tool_input": {"q": 1}, "tool_use_id": "u1"}),
              ("PostToolUse", {"tool_name": tool, "tool_input": {"q": 1}, "tool_use_id": "u1",
                               "tool_response": {"ok": True}})]
    for name, fields in events:
        run = agent.run("printf %%s %s | runuser -u alice -- sh -c %s",
                        json.dumps({**base, "hook_event_name": name, **fields}), command(name))
        assert run.rc == 0, run.stderr
        assert run.stderr == "", run.stderr
    written = time.monotonic()
    result = wait_for(lambda: query(promql), "the hook event in Prometheus", every=0.5)
    print(f"hook event visible in Prometheus after {time.monotonic() - written:.1f} s")
    assert len(result) == 1
    assert result[0]["metric"]["instance"] == AGENT
    assert float(result[0]["value"][1]) == 1.0
