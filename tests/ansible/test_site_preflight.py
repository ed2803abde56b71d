"""site.yml with the example inventory on the controller: the vault opens with the example
password, and a run without a required secret stops in the agent play's first task, before any
role runs, with one line naming the variable (and never its value)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).parent
EXAMPLE = ROOT / "inventory" / "example"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    return subprocess.run([*args], capture_output=True, text=True, check=False, env=env,
                          cwd=ROOT, timeout=120)


def test_the_example_vault_holds_the_secret() -> None:
    result = run(str(ANSIBLE / "ansible-inventory"), "-i", str(EXAMPLE), "--vault-password-file",
                 str(EXAMPLE / "vault-password.EXAMPLE"), "--host", "agent-01.example.internal")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)
    assert host["vault_agentmon_exporter_basic_auth_password"]
    assert "{{" not in host["vault_agentmon_exporter_basic_auth_password"]


def test_a_run_without_the_secret_stops_before_any_role_with_one_line() -> None:
    # -c local: should anything connect, it stays on this machine (it does not: the play
    # stops in its first task).
    result = run(str(ANSIBLE / "ansible-playbook"), "-c", "local", "-i", str(EXAMPLE),
                 "--vault-password-file", str(EXAMPLE / "vault-password.EXAMPLE"),
                 "-e", json.dumps({"vault_agentmon_exporter_basic_auth_password": ""}),
                 str(ROOT / "site.yml"))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    # ansible-core prints a failed task's message as one error line.
    lines = [line for line in out.splitlines() if line.startswith("[ERROR]")]
    assert lines == [
        "[ERROR]: Task failed: Action failed: agentmon_exporter_basic_auth_password is required"
        " and has no default: set it in your inventory (ansible-vault encrypted, see"
        " inventory/example)"], out[-3000:]
    # The canary batch (one host) failed: no role ran, no other host was touched.
    assert "failed: [agent-01.example.internal]" in out
    assert "Create the data group" not in out
    assert "agent-02.example.internal" not in out.split("PLAY RECAP")[0]
