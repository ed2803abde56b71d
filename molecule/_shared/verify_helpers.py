"""What every scenario's Testinfra tests share: the test hosts' address, one wait, one HTTP
client and one way to run a playbook against the scenario's hosts.

molecule/conftest.py puts this folder on the path (the shared Molecule config passes
--confcutdir so that pytest loads it): `from verify_helpers import http, wait_for`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

# Written by the dependency step (tools/molecule_ssh.sh): SSH through podman exec, multiplexed.
SSH_CONFIG = Path(__file__).resolve().parents[2] / "build" / "molecule-ssh" / "config"


def ssh_host(name: str) -> str:
    """The Testinfra address of the test host (container) NAME."""
    return f"ssh://{name}?ssh_config={SSH_CONFIG}"


# How long anything may take to happen when CI runs the scenarios side by side on 2 cores: a
# failure guard only, never a measurement.
DEADLINE = 120.0


def wait_for(probe: Callable[[], T], what: str, timeout: float = DEADLINE,
             every: float = 0.5) -> T:
    """Call `probe` until it returns something truthy and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {got!r}")
        time.sleep(every)


# The client runs on a test host (the services listen on its loopback, or the test is about
# one host reaching another); the hosts have Python but no curl. One JSON line out: status (0
# when no HTTP answer came), lower-cased headers, body, and the error's class and text if any.
_CLIENT = r"""
import base64, json, ssl, sys, urllib.error, urllib.request, warnings
warnings.simplefilter("ignore")
a = json.loads(sys.argv[1])
request = urllib.request.Request(a["url"], method=a["method"],
                                 data=a["data"].encode() if a["data"] is not None else None)
if a["content_type"]:
    request.add_header("Content-Type", a["content_type"])
if a["basic"]:
    token = base64.b64encode(":".join(a["basic"]).encode()).decode()
    request.add_header("Authorization", "Basic " + token)
if a["bearer"]:
    request.add_header("Authorization", "Bearer " + a["bearer"])
handlers = []
if a["url"].startswith("https:"):
    ctx = ssl.create_default_context(cafile=a["ca"])
    if a["cert"]:
        ctx.load_cert_chain(a["cert"], a["key"])
    handlers.append(urllib.request.HTTPSHandler(context=ctx))
if not a["follow_redirects"]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    handlers.append(NoRedirect)
out = {"status": 0, "headers": {}, "body": ""}
try:
    with urllib.request.build_opener(*handlers).open(request, timeout=a["timeout"]) as response:
        status, headers, body = response.status, response.headers, response.read()
except urllib.error.HTTPError as error:
    status, headers, body = error.code, error.headers, error.read()
except Exception as error:
    out["error"] = type(error).__name__ + ": " + str(error)
if "error" not in out:
    out.update(status=status, headers={k.lower(): v for k, v in headers.items()},
               body=body.decode("utf-8", "replace"))
print(json.dumps(out))
"""


def http(host: Any, url: str, *, method: str | None = None,
         basic: tuple[str, str] | None = None, bearer: str | None = None,
         json_body: Any = None, form: str | None = None, ca: str | None = None,
         cert: str | None = None, key: str | None = None, follow_redirects: bool = True,
         timeout: float = 30) -> dict[str, Any]:
    """One request made on `host` (a Testinfra host): {"status", "headers", "body"[, "error"]}.

    `json_body` is sent as application/json, `form` (already url-encoded) as a form; https
    verifies against `ca` (the system's CAs without it), with a client certificate if given."""
    data, content_type = None, None
    if json_body is not None:
        data, content_type = json.dumps(json_body), "application/json"
    elif form is not None:
        data, content_type = form, "application/x-www-form-urlencoded"
    args = {"url": url, "method": method or ("POST" if data is not None else "GET"),
            "data": data, "content_type": content_type, "basic": basic, "bearer": bearer,
            "ca": ca, "cert": cert, "key": key, "follow_redirects": follow_redirects,
            "timeout": timeout}
    return json.loads(host.check_output("python3 -c %s %s", _CLIENT, json.dumps(args)))


def playbook(*args: str, timeout: float = 900) -> tuple[int, str]:
    """ansible-playbook with the scenario's inventory, from the project folder, in the
    environment Molecule gives the verifier (its Ansible config and roles path, as its converge
    has): (exit code, stdout + stderr). Results are printed as JSON, each message on one line."""
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[2]))
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    started = time.monotonic()
    command = [shutil.which("ansible-playbook") or "ansible-playbook", "-i", str(inventory),
               *args]
    proc = subprocess.run(command, cwd=project, env=env, capture_output=True,  # noqa: S603
                          text=True, timeout=timeout, check=False)
    out = proc.stdout + proc.stderr  # ansible-core prints a failed task's message on stderr
    recaps = re.findall(r"^\S+\s*: ok=.*$", out, re.M)
    print(f"ansible-playbook {' '.join(args)}: rc {proc.returncode}, "
          f"{time.monotonic() - started:.0f} s, {recaps}\n{out[-3000:]}")
    return proc.returncode, out


def recap(out: str, host: str) -> dict[str, int]:
    """`host`'s line of a playbook's PLAY RECAP: ok, changed, failed, ... as numbers."""
    line = re.search(rf"^{re.escape(host)}\s*:(.*)$", out, re.M)
    if line is None:
        pytest.fail(f"no PLAY RECAP line for {host}:\n{out[-3000:]}")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def changed_tasks(out: str, host: str) -> list[str]:
    """The tasks (and handlers) of a playbook's output that changed `host`, as Molecule's
    idempotence step lists them."""
    task, changed = "", []
    for line in out.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line[line.index("[") + 1:line.rindex("]")]
        elif line.startswith(f"changed: [{host}]") and task not in changed:
            changed.append(task)
    return changed
