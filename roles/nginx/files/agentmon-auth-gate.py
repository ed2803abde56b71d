"""agentmon-auth-gate: the answer to nginx's auth_request for the locations it protects.

nginx asks ``GET /<location>`` with the client's ``Authorization`` header and its address in
``X-Real-IP``, over a unix socket only nginx's workers may open. The gate answers

- 204: the credential is right (bcrypt against the hashes in the users file);
- 401 with ``WWW-Authenticate``: missing or wrong;
- 403 with ``X-Agentmon-Gate: throttled`` (nginx turns it into 429): the credential is not one
  verified before, and the client's address (or every address together) has used up its budget
  of failed logins, or the bcrypt queue is full. No bcrypt is spent on such a request.

A credential once verified is remembered in memory only (an HMAC of the header under a key
drawn at start, never the header), for a bounded time and number: a user already logged in
never waits on bcrypt and is never refused, whoever else guesses from the same address. Only
failures use up a budget. Standard library and ``bcrypt`` (Debian's python3-bcrypt) only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import http.server
import json
import os
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import bcrypt

MAX_HEADER = 4096  # longest Authorization header looked at; longer ones are wrong
MAX_PASSWORD = 72  # bcrypt's limit: longer passwords were never hashed
THROTTLED = "throttled"


@dataclass
class Limits:
    workers: int = 2  # bcrypt checks at once
    queue: int = 16  # checks waiting for a worker; more: throttled
    cache_size: int = 1024  # verified credentials remembered
    cache_ttl: float = 3600.0  # seconds a verification is remembered
    failed_size: int = 4096  # wrong credentials remembered (a repeat costs no bcrypt)
    address_burst: float = 20.0  # failed logins an address may have at once
    address_rate: float = 0.2  # failed logins per second it earns back
    global_burst: float = 200.0  # the same for all addresses together
    global_rate: float = 5.0
    addresses: int = 10_000  # addresses whose budget is tracked (least recently failed forgotten)


@dataclass
class Bucket:
    tokens: float
    stamp: float


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def load_users(path: str) -> dict[str, dict[str, bytes]]:
    """{location: {user: bcrypt hash}} from the JSON users file; ValueError names the fault."""
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected an object of locations")
    users: dict[str, dict[str, bytes]] = {}
    for location, table in data.items():
        if not isinstance(table, dict) or not table:
            raise ValueError(f"{path}: location {location!r} needs at least one user")
        for user, hashed in table.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2b$", "$2a$", "$2y$")):
                raise ValueError(f"{path}: {location}/{user}: not a bcrypt hash")
        users[location] = {user: hashed.encode("ascii") for user, hashed in table.items()}
    return users


class Gate:
    """The decisions, apart from HTTP (one instance serves every request thread)."""

    def __init__(self, users: dict[str, dict[str, bytes]], limits: Limits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.limits = limits
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._verified: OrderedDict[bytes, float] = OrderedDict()  # digest -> expiry
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._global = Bucket(limits.global_burst, self.clock())
        self._workers = threading.BoundedSemaphore(limits.workers)
        self._waiting = 0
        # Unknown users cost a bcrypt too (same answer time as a wrong password).
        rounds = min((int(h.split(b"$")[2]) for t in users.values() for h in t.values()),
                     default=10)
        # Hex: bcrypt refuses a password holding a NUL byte (random bytes did, one start in 16).
        self._dummy = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(rounds))
        self.counts = {"verified": 0, "cached": 0, "failed": 0, "throttled": 0}

    def _digest(self, location: str, header: str) -> bytes:
        return hmac.new(self._key, f"{location}\0{header}".encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    def _refill(self, bucket: Bucket, burst: float, rate: float, now: float) -> None:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now

    def _take(self, address: str, now: float) -> bool:
        """Reserve one failure from the address's and the global budget (under the lock)."""
        lim = self.limits
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = Bucket(lim.address_burst, now)
            while len(self._buckets) > lim.addresses:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        self._refill(bucket, lim.address_burst, lim.address_rate, now)
        self._refill(self._global, lim.global_burst, lim.global_rate, now)
        if bucket.tokens < 1 or self._global.tokens < 1:
            return False
        bucket.tokens -= 1
        self._global.tokens -= 1
        return True

    def _give_back(self, address: str) -> None:
        bucket = self._buckets.get(address)
        if bucket is not None:
            bucket.tokens = min(self.limits.address_burst, bucket.tokens + 1)
        self._global.tokens = min(self.limits.global_burst, self._global.tokens + 1)

    def _unauthorized(self, location: str) -> Answer:
        return Answer(401, {"WWW-Authenticate": f'Basic realm="{location}", charset="UTF-8"'})

    def _throttled(self) -> Answer:
        with self._lock:
            self.counts["throttled"] += 1
        return Answer(403, {"X-Agentmon-Gate": THROTTLED})

    def check(self, location: str, header: str | None, address: str) -> Answer:
        table = self.users.get(location)
        if table is None:
            return Answer(404)
        if not header or len(header) > MAX_HEADER:
            return self._unauthorized(location)
        digest = self._digest(location, header)
        now = self.clock()
        with self._lock:
            expiry = self._verified.get(digest)
            if expiry is not None and expiry > now:
                self._verified.move_to_end(digest)
                self.counts["cached"] += 1
                return Answer(204)
            if expiry is not None:
                del self._verified[digest]
            if digest in self._failed:
                self._failed.move_to_end(digest)
                self.counts["failed"] += 1
                return self._unauthorized(location)
            if not self._take(address, now):
                taken = False
            elif self._waiting >= self.limits.queue:
                self._give_back(address)
                taken = False
            else:
                self._waiting += 1
                taken = True
        if not taken:
            return self._throttled()
        try:
            right = self._verify(table, header)
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            if right:
                self._give_back(address)
                self._verified[digest] = self.clock() + self.limits.cache_ttl
                self._verified.move_to_end(digest)
                while len(self._verified) > self.limits.cache_size:
                    self._verified.popitem(last=False)
                self.counts["verified"] += 1
                return Answer(204)
            self._failed[digest] = None
            while len(self._failed) > self.limits.failed_size:
                self._failed.popitem(last=False)
            self.counts["failed"] += 1
        return self._unauthorized(location)

    def _verify(self, table: dict[str, bytes], header: str) -> bool:
        """bcrypt of the header's password against its user's hash, on a bounded worker."""
        scheme, _sep, token = header.partition(" ")
        user = password = b""
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True)
                user, _sep, password = decoded.partition(b":")
            except (binascii.Error, ValueError):
                user = password = b""
        hashed = table.get(user.decode("utf-8", "replace"))
        usable = bool(password) and len(password) <= MAX_PASSWORD
        with self._workers:
            # Unknown users and unusable passwords cost the same bcrypt as a wrong password.
            ok = bcrypt.checkpw(password[:MAX_PASSWORD] or b"-", hashed or self._dummy)
        return ok and usable and hashed is not None


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.0"
    timeout = 10  # only nginx connects; a stalled connection is dropped

    def do_GET(self) -> None:
        location = self.path.lstrip("/")
        address = self.headers.get("X-Real-IP", "")[:64]
        answer = self.server.gate.check(location, self.headers.get("Authorization"), address)
        self.send_response_only(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Nothing per request (a flood would flood the journal; nginx logs each request)."""


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 512  # nginx opens one connection per check

    def __init__(self, gate: Gate, path: str | None) -> None:
        self.gate = gate
        super().__init__(path or "", Handler, bind_and_activate=False)
        if path is None:
            # systemd socket activation (agentmon-auth-gate.socket): the socket is fd 3.
            if os.environ.get("LISTEN_PID") != str(os.getpid()) or \
                    os.environ.get("LISTEN_FDS") != "1":
                raise SystemExit("agentmon-auth-gate: no socket from systemd (LISTEN_FDS); "
                                 "pass --listen PATH")
            self.socket.close()
            self.socket = socket.socket(fileno=3)
        else:
            self.server_bind()
            self.server_activate()

    def get_request(self) -> tuple[socket.socket, str]:
        conn, _address = self.socket.accept()
        return conn, "nginx"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Limits]:
    parser = argparse.ArgumentParser(prog="agentmon-auth-gate",
                                     description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--users", required=True, help="JSON file {location: {user: bcrypt}}")
    parser.add_argument("--listen", help="unix socket path (default: the socket from systemd)")
    for name, value in vars(Limits()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    limits = Limits(**{name: getattr(args, name) for name in vars(Limits())})
    if limits.workers < 1 or limits.queue < 1 or limits.cache_size < 1:
        parser.error("--workers, --queue and --cache-size must be at least 1")
    return args, limits


def main(argv: list[str] | None = None) -> int:
    args, limits = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        users = load_users(args.users)
    except (OSError, ValueError) as exc:
        print(f"agentmon-auth-gate: {exc}", file=sys.stderr)
        return 2
    with Server(Gate(users, limits), args.listen) as server:
        print(f"agentmon-auth-gate: serving {', '.join(sorted(users))}", file=sys.stderr,
              flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
