"""agentmon_exporter's preflight with real ansible-playbook runs on the controller: each bad
input stops the play with one message naming the variable; good input passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# The role's task file with its defaults and internal values, without its dependency
# (agentmon_release would build a release on this machine).
PLAY = f"""
- name: Preflight only
  hosts: localhost
  gather_facts: false
  vars_files:
    - {ROOT}/roles/exporter/defaults/main.yml
    - {ROOT}/roles/exporter/vars/main.yml
  tasks:
    - name: Run the exporter role's preflight
      ansible.builtin.include_tasks: {ROOT}/roles/exporter/tasks/preflight.yml
"""
# agentmon_release has no dependency: its own preflight runs as the roles run it.
RELEASE_PLAY = """
- name: Preflight only
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the _release role's preflight
      ansible.builtin.include_role:
        name: agentmon.stack._release
        tasks_from: preflight.yml
"""
GOOD = {"agentmon_exporter_basic_auth_password": "a-password"}


def preflight(tmp_path: Path, extra: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "build" / "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-c", "local", "-e", json.dumps(extra), str(playbook)],
        capture_output=True, text=True, check=False, env=env, timeout=120)


def test_good_settings_pass(tmp_path: Path) -> None:
    result = preflight(tmp_path, {
        **GOOD, "agentmon_exporter_listen_address": "10.0.0.5:9477",
        "agentmon_exporter_ip_address_allow": ["10.0.0.0/8", "localhost"],
        "agentmon_exporter_basic_auth_extra_users": {"prometheus-next": "another-password"},
        "agentmon_exporter_tls_server_config": {"client_auth_type": "RequireAndVerifyClientCert"},
        "agentmon_exporter_health_check_client_cert": "/etc/ssl/client.pem"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ({"agentmon_exporter_basic_auth_password": ""},
     "agentmon_exporter_basic_auth_password is required"),
    ({"agentmon_exporter_listen_address": "0.0.0.0:9477"},
     "agentmon_exporter_listen_address 0.0.0.0:9477 is off loopback but "
     "agentmon_exporter_ip_address_allow (localhost) lets in loopback only"),
    ({"agentmon_exporter_listen_address": "[::]:9477",
      "agentmon_exporter_ip_address_allow": ["::1", "127.0.0.0/8"]},
     "is off loopback but agentmon_exporter_ip_address_allow (::1 127.0.0.0/8)"),
    ({"agentmon_exporter_basic_auth_extra_users": {"a:b": "x", "prometheus": "y", "e": "",
                                                    "fine": "z"}},
     "wrong: a:b, prometheus, e"),
    ({"agentmon_exporter_tls_server_config": {"client_auth_type": "RequireAndVerifyClientCert"}},
     "set agentmon_exporter_health_check_client_cert"),
])
def test_bad_settings_stop_with_one_message(tmp_path: Path, extra: dict[str, Any],
                                            message: str) -> None:
    result = preflight(tmp_path, {**GOOD, **extra})
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert message in output
    assert "a-password" not in output
    assert "another-password" not in output


def test_client_cert_not_needed_without_the_health_check(tmp_path: Path) -> None:
    result = preflight(tmp_path, {
        **GOOD, "agentmon_exporter_health_check": False,
        "agentmon_exporter_tls_server_config": {"client_auth_type": "RequireAndVerifyClientCert"}})
    assert result.returncode == 0, result.stdout + result.stderr


def _release_preflight(tmp_path: Path, target: dict[str, str],
                       extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """agentmon_release's preflight (run first by every agent-host role) against a wheelhouse
    whose lock files say it was built for ``target``."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "agentmon-0.1.0.requirements.txt").write_text("", encoding="utf-8")
    (wheels / "agentmon-0.1.0.json").write_text(
        json.dumps({"target": target, "wheels": {}}), encoding="utf-8")
    playbook = tmp_path / "release_preflight.yml"
    playbook.write_text(RELEASE_PLAY, encoding="utf-8")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "build" / "collections"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    variables = {"agentmon_release_wheelhouse": str(wheels), **(extra or {})}
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-c", "local", "-e", json.dumps(variables), str(playbook)],
        capture_output=True, text=True, check=False, env=env, timeout=120)


def test_release_preflight_names_another_cpu_and_python(tmp_path: Path) -> None:
    result = _release_preflight(tmp_path, {"arch": "s390x", "python": "3.99"})
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "but the wheelhouse was built for s390x (TARGET_ARCH" in output
    assert "but the wheelhouse was built for 3.99 (TARGET_PYTHON" in output


def test_release_preflight_accepts_this_cpu_and_python(tmp_path: Path) -> None:
    import platform
    # The probe asks /usr/bin/python3, as on a real host.
    host_python = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True).stdout.strip()
    result = _release_preflight(tmp_path, {"arch": platform.machine(), "python": host_python})
    output = " ".join((result.stdout + result.stderr).split())
    # Only the OS and PID 1 can be wrong on this machine (no systemd as PID 1 in CI containers).
    assert "wheelhouse was built for" not in output


def test_release_preflight_refuses_keep_below_one(tmp_path: Path) -> None:
    result = _release_preflight(tmp_path, {"arch": "x", "python": "3"},
                                {"agentmon_release_keep": 0})
    assert result.returncode != 0
    assert "agentmon_release_keep must be at least 1" in " ".join(
        (result.stdout + result.stderr).split())
