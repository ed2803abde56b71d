"""roles/nginx/files/agentmon-auth-gate.py: its decisions, then the real server on a unix socket.

bcrypt is real (cost 4, to keep the suite short); the flood is real threads over HTTP.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/nginx/files/agentmon-auth-gate.py"
_spec = importlib.util.spec_from_file_location("agentmon_auth_gate", SCRIPT)
assert _spec
assert _spec.loader
gate_mod: Any = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gate_mod  # dataclasses look their module up
_spec.loader.exec_module(gate_mod)

PASSWORD = "right-password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def users() -> dict[str, dict[str, bytes]]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4))
    return {"prometheus": {"admin": hashed}, "alertmanager": {"admin": hashed}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_starts_whatever_random_bytes_it_draws(
        users: dict[str, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its random draws may hold NUL bytes: 1 start in 16 did, and Debian's python3-bcrypt
    (3.2, what the hosts run; the venv's 5.x takes them) refused the dummy password, so the
    service failed until systemd restarted it. Here every draw is NULs, and hashpw refuses a
    NUL as Debian's does."""
    real = bcrypt.hashpw

    def debian_hashpw(password: bytes, salt: bytes) -> bytes:
        if b"\0" in password:
            raise ValueError("password may not contain NUL bytes")
        return real(password, salt)

    monkeypatch.setattr(gate_mod.secrets, "token_bytes", lambda n: b"\0" * n)
    monkeypatch.setattr(gate_mod.bcrypt, "hashpw", debian_hashpw)
    gate = gate_mod.Gate(users, gate_mod.Limits())
    assert gate.check("prometheus", basic("admin", PASSWORD), "10.0.0.1").status == 204
    assert gate.check("prometheus", basic("nobody", PASSWORD), "10.0.0.1").status == 401


def test_right_wrong_missing_and_unknown_location(users: dict[str, dict[str, bytes]]) -> None:
    gate = gate_mod.Gate(users, gate_mod.Limits())
    assert gate.check("prometheus", basic("admin", PASSWORD), "10.0.0.1").status == 204
    wrong = gate.check("prometheus", basic("admin", "nope"), "10.0.0.1")
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith('Basic realm="prometheus"')
    assert gate.check("prometheus", None, "10.0.0.1").status == 401
    assert gate.check("prometheus", "Basic !!!", "10.0.0.1").status == 401
    assert gate.check("prometheus", "Bearer x", "10.0.0.1").status == 401
    assert gate.check("prometheus", basic("eve", PASSWORD), "10.0.0.1").status == 401
    assert gate.check("prometheus", basic("admin", "x" * 73), "10.0.0.1").status == 401
    assert gate.check("prometheus", "Basic " + "A" * 5000, "10.0.0.1").status == 401
    assert gate.check("grafana", basic("admin", PASSWORD), "10.0.0.1").status == 404
    # A credential verified for one location is not one for another (digest per location).
    assert gate.counts["verified"] == 1
    assert gate.check("alertmanager", basic("admin", PASSWORD), "10.0.0.1").status == 204
    assert gate.counts["verified"] == 2


def test_only_failures_use_the_budget_and_verified_users_pass(
        users: dict[str, dict[str, bytes]]) -> None:
    limits = gate_mod.Limits(address_burst=3, address_rate=0.5, global_burst=100)
    clock = Clock()
    gate = gate_mod.Gate(users, limits, clock)
    right = basic("admin", PASSWORD)
    assert gate.check("prometheus", right, "10.0.0.1").status == 204
    for n in range(3):
        assert gate.check("prometheus", basic("admin", f"guess{n}"), "10.0.0.1").status == 401
    refused = gate.check("prometheus", basic("admin", "guess3"), "10.0.0.1")
    assert (refused.status, refused.headers) == (403, {"X-Agentmon-Gate": "throttled"})
    # The user already verified, from the same address, is never refused.
    for _ in range(10):
        assert gate.check("prometheus", right, "10.0.0.1").status == 204
    # A repeat of a known-wrong credential costs neither a bcrypt nor budget: 401, not 403.
    assert gate.check("prometheus", basic("admin", "guess0"), "10.0.0.1").status == 401
    # Another address has its own budget.
    assert gate.check("prometheus", basic("admin", "other"), "10.0.0.2").status == 401
    # The budget comes back with time: 0.5 per second, so one failure after 2 s.
    clock.now += 2
    assert gate.check("prometheus", basic("admin", "guess4"), "10.0.0.1").status == 401
    assert gate.check("prometheus", basic("admin", "guess5"), "10.0.0.1").status == 403
    assert gate.counts["failed"] == 3 + 1 + 1 + 1  # guess0-2, guess0 again, other, guess4


def test_a_first_login_is_refused_only_while_its_address_is_over_budget(
        users: dict[str, dict[str, bytes]]) -> None:
    limits = gate_mod.Limits(address_burst=1, address_rate=1.0)
    clock = Clock()
    gate = gate_mod.Gate(users, limits, clock)
    assert gate.check("prometheus", basic("admin", "guess"), "10.0.0.1").status == 401
    assert gate.check("prometheus", basic("admin", PASSWORD), "10.0.0.1").status == 403
    clock.now += 1
    assert gate.check("prometheus", basic("admin", PASSWORD), "10.0.0.1").status == 204
    # ... and a success gives its reservation back: the budget is still whole.
    assert gate.check("prometheus", basic("admin", "guess2"), "10.0.0.1").status == 401


def test_global_budget_and_forgotten_addresses(users: dict[str, dict[str, bytes]]) -> None:
    limits = gate_mod.Limits(address_burst=5, global_burst=3, global_rate=0.001, addresses=2)
    gate = gate_mod.Gate(users, limits, Clock())
    statuses = [gate.check("prometheus", basic("admin", f"g{n}"), f"10.0.1.{n}").status
                for n in range(5)]
    assert statuses == [401, 401, 401, 403, 403]
    assert len(gate._buckets) == 2


def test_verification_expires_and_the_cache_is_bounded(users: dict[str, dict[str, bytes]]) -> None:
    limits = gate_mod.Limits(cache_ttl=60, cache_size=1, failed_size=1)
    clock = Clock()
    gate = gate_mod.Gate(users, limits, clock)
    right = basic("admin", PASSWORD)
    assert gate.check("prometheus", right, "a").status == 204
    assert gate.check("prometheus", right, "a").status == 204
    assert (gate.counts["verified"], gate.counts["cached"]) == (1, 1)
    clock.now += 61
    assert gate.check("prometheus", right, "a").status == 204
    assert gate.counts["verified"] == 2
    # One remembered at most: the other location's verification pushes this one out.
    assert gate.check("alertmanager", right, "a").status == 204
    assert len(gate._verified) == 1
    assert gate.check("prometheus", basic("admin", "w1"), "a").status == 401
    assert gate.check("prometheus", basic("admin", "w2"), "a").status == 401
    assert len(gate._failed) == 1
    # Nothing the gate keeps is the header or the password.
    kept = list(gate._verified) + list(gate._failed)
    assert all(len(k) == 32 and right.encode() not in k and PASSWORD.encode() not in k
               for k in kept)


def test_a_full_queue_is_throttled_without_a_bcrypt(users: dict[str, dict[str, bytes]]) -> None:
    gate = gate_mod.Gate(users, gate_mod.Limits(queue=1))
    gate._waiting = 1  # one check already waits for a worker
    answer = gate.check("prometheus", basic("admin", PASSWORD), "a")
    assert answer.status == 403
    assert gate.counts["verified"] == gate.counts["failed"] == 0
    gate._waiting = 0
    # The refused request took no budget with it.
    assert gate._buckets["a"].tokens == gate.limits.address_burst


def test_load_users_refuses_bad_files(tmp_path: Path) -> None:
    bad = {
        "[]": "expected an object",
        "{}": "expected an object",
        '{"prometheus": {}}': "needs at least one user",
        '{"prometheus": {"admin": "plaintext"}}': "not a bcrypt hash",
    }
    for text, message in bad.items():
        path = tmp_path / "users.json"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            gate_mod.load_users(str(path))


def test_main_says_what_is_wrong_in_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert gate_mod.main(["--users", str(tmp_path / "missing.json"), "--listen", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("agentmon-auth-gate: ")
    assert "missing" in err
    with pytest.raises(SystemExit):
        gate_mod.parse_args(["--users", "u", "--workers", "0"])
    (tmp_path / "u.json").write_text('{"p": {"a": "$2b$04$' + "a" * 53 + '"}}')
    with pytest.raises(SystemExit, match="LISTEN_FDS"):
        gate_mod.main(["--users", str(tmp_path / "u.json")])


@pytest.fixture
def server(users: dict[str, dict[str, bytes]], tmp_path: Path) -> Iterator[tuple[str, Any]]:
    path = str(tmp_path / "gate.sock")
    limits = gate_mod.Limits(address_burst=10, address_rate=0.01, global_burst=1000)
    srv = gate_mod.Server(gate_mod.Gate(users, limits), path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield path, srv.gate
    srv.shutdown()
    srv.server_close()


def ask(path: str, location: str, header: str | None, address: str) -> tuple[int, dict[str, str]]:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(60)
            self.sock.connect(path)

    conn = Conn("gate")
    headers = {"X-Real-IP": address}
    if header:
        headers["Authorization"] = header
    conn.request("GET", "/" + location, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, dict(response.getheaders())


def test_flood_over_the_socket_never_refuses_the_verified_user(
        server: tuple[str, Any]) -> None:
    """60 threads of new wrong passwords and a logged-in user, all from one address."""
    path, gate = server
    right = basic("admin", PASSWORD)
    assert ask(path, "prometheus", right, "192.0.2.7")[0] == 204
    stop = threading.Event()

    def flood(worker: int) -> list[int]:
        got, n = [], 0
        while not stop.is_set():
            got.append(ask(path, "prometheus", basic("admin", f"w{worker}-{n}"), "192.0.2.7")[0])
            n += 1
        return got

    with ThreadPoolExecutor(61) as pool:
        floods = [pool.submit(flood, w) for w in range(60)]
        # The user's requests run while the flood runs: until the flood has been refused a
        # good many times (an event, not a duration).
        legit: list[int] = []
        while gate.counts["throttled"] < 500:
            legit.append(ask(path, "prometheus", right, "192.0.2.7")[0])
        stop.set()
        flooded = [s for f in floods for s in f.result(timeout=120)]
    assert set(legit) == {204}
    assert len(legit) >= 1
    assert set(flooded) <= {401, 403}
    assert flooded.count(403) >= 500
    # bcrypt ran for at most the address's budget of failures, whatever the flood's size.
    assert gate.counts["failed"] <= 10
    status, headers = ask(path, "prometheus", None, "192.0.2.7")
    assert status == 401
    assert "WWW-Authenticate" in headers
    assert headers["Cache-Control"] == "no-store"


def test_users_file_written_by_the_role_template_loads(tmp_path: Path) -> None:
    """The file the role writes (JSON of bcrypt hashes from agentmon.stack.bcrypt) is what loads."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"prometheus": {"admin": hashed}}))
    gate = gate_mod.Gate(gate_mod.load_users(str(path)), gate_mod.Limits())
    assert gate.check("prometheus", basic("admin", "pw"), "a").status == 204
