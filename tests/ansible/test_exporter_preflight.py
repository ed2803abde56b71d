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
PLAY = """
- name: Preflight only
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run agentmon_exporter's preflight
      ansible.builtin.include_role:
        name: agentmon_exporter
        tasks_from: preflight.yml
"""
GOOD = {"agentmon_exporter_basic_auth_password": "a-password"}


def preflight(tmp_path: Path, extra: dict[str, Any],
              tasks_from: str = "preflight.yml") -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / tasks_from
    playbook.write_text(PLAY.replace("preflight.yml", tasks_from), encoding="utf-8")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
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


def _wheelhouse(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_host_checks_name_wheels_for_another_cpu_or_python_and_keep_releases(
        tmp_path: Path) -> None:
    """This machine runs no systemd, so the check also says so; the wheels and the keep count
    are named whatever else is wrong."""
    wheels = _wheelhouse(tmp_path / "wheels", [
        "agentmon-0.1.0-py3-none-any.whl",
        "bcrypt-4.3.0-cp39-abi3-manylinux_2_34_aarch64.whl",
        "PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ])
    result = preflight(tmp_path, {"agentmon_exporter_wheelhouse": str(wheels),
                                 "agentmon_exporter_keep_releases": 0}, "host_checks.yml")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "bcrypt-4.3.0-cp39-abi3-manylinux_2_34_aarch64.whl" in output
    assert "PyYAML-6.0.2-cp312-cp312" in output
    assert "agentmon-0.1.0-py3-none-any.whl" not in output
    assert "agentmon_exporter_keep_releases must be at least 1" in output


def test_host_checks_accept_wheels_for_this_python_and_cpu(tmp_path: Path) -> None:
    import platform
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = _wheelhouse(tmp_path / "wheels", [
        "agentmon-0.1.0-py3-none-any.whl",
        f"bcrypt-4.3.0-cp39-abi3-manylinux_2_34_{platform.machine()}.whl",
        f"PyYAML-6.0.2-{tag}-{tag}-manylinux_2_17_{platform.machine()}.whl",
    ])
    result = preflight(tmp_path, {"agentmon_exporter_wheelhouse": str(wheels)}, "host_checks.yml")
    output = " ".join((result.stdout + result.stderr).split())
    # Only the service manager can be wrong on this machine (no systemd as PID 1 here).
    assert "wheelhouse has wheels" not in output
    assert "keep_releases" not in output
