"""The collection's one bcrypt filter (plugins/filter/bcrypt.py, agentmon.stack.bcrypt): stable
hashes per seed that bcrypt accepts, one clear error per bad input, and the same result through
a real template render by ansible-playbook."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "agentmon_bcrypt_filter", ROOT / "plugins" / "filter" / "bcrypt.py")
assert _spec is not None
assert _spec.loader is not None
filt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filt)


def test_same_seed_same_hash_and_bcrypt_accepts_it() -> None:
    first = filt.bcrypt_hash("s3cret", "host-a:prometheus", 4)
    assert first == filt.bcrypt_hash("s3cret", "host-a:prometheus", 4)
    assert first.startswith("$2b$04$")
    assert bcrypt.checkpw(b"s3cret", first.encode())
    assert not bcrypt.checkpw(b"other", first.encode())
    assert filt.bcrypt_hash("s3cret", "host-b:prometheus", 4) != first


def test_salt_is_22_characters_of_bcrypts_alphabet() -> None:
    salt = filt.bcrypt_salt("anything")
    assert len(salt) == 22
    assert set(salt) <= set(filt.BCRYPT_ALPHABET)


@pytest.mark.parametrize(("password", "rounds", "message"), [
    ("", 4, "non-empty string"),
    (None, 4, "non-empty string"),
    ("x" * 73, 4, "at most 72 bytes"),
    ("pw", 3, "rounds must be 4..31"),
])
def test_bad_input_is_one_clear_error(password: object, rounds: int, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        filt.bcrypt_hash(password, "seed", rounds)


def test_the_filter_by_its_fqcn_in_a_playbook(tmp_path: Path) -> None:
    play = tmp_path / "play.yml"
    play.write_text(
        "- name: Render\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Hash\n      ansible.builtin.debug:\n"
        "        msg: \"{{ 'pw' | agentmon.stack.bcrypt('localhost:u', 4) }}\"\n",
        encoding="utf-8")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "build" / "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local",
                          str(play)], capture_output=True, text=True, check=False, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    msg = out["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert msg == filt.bcrypt_hash("pw", "localhost:u", 4)


def test_the_filter_plugin_names_it_bcrypt() -> None:
    assert filt.FilterModule().filters() == {"bcrypt": filt.bcrypt_hash}


def test_without_the_bcrypt_package_the_c_library_hashes_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = filt.bcrypt_hash("s3cret", "seed", 4)
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    assert filt.bcrypt_hash("s3cret", "seed", 4) == expected


def test_without_bcrypt_nor_crypt_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    monkeypatch.setitem(sys.modules, "crypt", None)
    with pytest.raises(AnsibleFilterError, match="install the Python package bcrypt"):
        filt.bcrypt_hash("s3cret", "seed", 4)
