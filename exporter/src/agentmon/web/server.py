"""The HTTP(S) side of ``agentmon serve``: a small threaded server that serves bytes rendered
elsewhere, behind basic auth, a bearer token and/or TLS client certificates.

A scrape never touches SQLite nor renders anything: the refresh thread stores the rendered
exposition (plain and gzip) in an :class:`Exposition`, and a request only authenticates and
writes those bytes. Authentication costs a bcrypt verification once per distinct credential;
results are cached under an HMAC (random per-process key) of user and password, so the cache
never holds a password.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import socketserver
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import bcrypt

from agentmon.web.config import WebConfig

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REALM = "agentmon"
LANDING = (b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>agentmon</title></head>"
           b"<body><h1>agentmon</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")

log = logging.getLogger("agentmon.web")


class ListenAddressError(ValueError):
    """A --web.listen-address that cannot be used; one-line message."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int
    family: socket.AddressFamily

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else (
            f"{self.host}:{self.port}")


def parse_listen_address(text: str) -> ListenAddress:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all IPv4 interfaces). Port 0 = any free."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ListenAddressError(f"bad listen address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenAddressError(f"bad listen address {text!r}: write IPv6 as [ADDRESS]:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ListenAddressError(f"bad listen address {text!r}: port must be 0..65535")
    port = int(port_text)
    if host in ("", "0.0.0.0"):  # noqa: S104 - listening everywhere is the operator's choice
        return ListenAddress("0.0.0.0", port, socket.AF_INET)  # noqa: S104
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ListenAddressError(f"bad listen address {text!r}: host must be an IP address, "
                                 "localhost or empty") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return ListenAddress(str(ip), port, family)


class Exposition:
    """The latest rendered metrics, swapped whole by the refresh thread."""

    def __init__(self, body: bytes = b"") -> None:
        self._current = (body, gzip.compress(body, compresslevel=6, mtime=0))

    def set(self, body: bytes) -> None:
        self._current = (body, gzip.compress(body, compresslevel=6, mtime=0))

    def get(self) -> tuple[bytes, bytes]:
        return self._current


class Authenticator:
    """Checks an Authorization header against basic_auth_users and the bearer token."""

    def __init__(self, users: dict[str, bytes], bearer_token: bytes | None = None,
                 cache_size: int = 256) -> None:
        self._users = [(name.encode("utf-8"), hashed) for name, hashed in users.items()]
        # A random password's hash at the highest configured cost: unknown users pay the same
        # verification time as known ones (no user enumeration by timing).
        cost = max((int(hashed[4:6]) for _, hashed in self._users), default=4)
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self._token_digest = (hashlib.sha256(bearer_token).digest()
                              if bearer_token is not None else None)
        self._key = secrets.token_bytes(32)
        # Separate caches: a flood of wrong passwords cannot evict the right ones.
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # one bcrypt at a time: floods cost one core
        self.bcrypt_calls = 0

    @property
    def enabled(self) -> bool:
        return bool(self._users) or self._token_digest is not None

    def check(self, header: str | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token_digest is not None:
            given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
            return hmac.compare_digest(given, self._token_digest)
        if scheme == "basic" and self._users:
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            return bool(sep) and self._check_basic(user, password)
        return False

    def _check_basic(self, user: bytes, password: bytes) -> bool:
        key = hmac.new(self._key, len(user).to_bytes(4, "big") + user + password,
                       hashlib.sha256).digest()
        with self._cache_lock:
            if key in self._good:
                self._good.move_to_end(key)
                return True
            if key in self._bad:
                self._bad.move_to_end(key)
                return False
        hashed = self._dummy_hash
        known = False
        for name, candidate in self._users:  # no early exit: same work for every name
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        with self._bcrypt_lock:
            self.bcrypt_calls += 1
            try:
                ok = bcrypt.checkpw(password, hashed) and known
            except ValueError:  # longer than bcrypt's 72 bytes
                ok = False
        with self._cache_lock:
            cache = self._good if ok else self._bad
            cache[key] = None
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        return ok


class MetricsServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server; the TLS handshake runs in the connection's own thread, so a
    silent client cannot stall the accept loop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    max_connections = 64
    handshake_timeout = 10.0

    def __init__(self, address: ListenAddress, config: WebConfig, exposition: Exposition,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.address_family = address.family
        self.web_config = config
        self.exposition = exposition
        self.authenticator = Authenticator(config.basic_auth_users, config.bearer_token)
        self.ssl_context = ssl_context
        self.extra_headers = list(config.headers.items())
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._saturated = False
        super().__init__((address.host, address.port), MetricsHandler, bind_and_activate=False)
        if address.family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host up in DNS (getfqdn); the name is unused.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.port

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if not self._saturated:  # one line per episode, not per dropped connection
                log.warning("%d connections open; dropping new ones until one closes",
                            self.max_connections)
                self._saturated = True
            self.shutdown_request(request)
            return
        self._saturated = False
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.handshake_timeout)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    server_version = "agentmon"
    timeout = 30  # idle keep-alive connections and slow clients give their thread back
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _not_allowed(self) -> None:
        self._send(405, b"method not allowed\n", "text/plain; charset=utf-8",
                   [("Allow", "GET, HEAD")])

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _not_allowed

    def _respond(self, head: bool) -> None:
        if not self.server.authenticator.check(self.headers.get("Authorization")):
            self._send(401, b"unauthorized\n", "text/plain; charset=utf-8",
                       [("WWW-Authenticate", f'Basic realm="{REALM}"')], head=head)
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            plain, gzipped = self.server.exposition.get()
            if _accepts_gzip(self.headers.get("Accept-Encoding", "")):
                self._send(200, gzipped, CONTENT_TYPE,
                           [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")], head)
            else:
                self._send(200, plain, CONTENT_TYPE, [("Vary", "Accept-Encoding")], head)
        elif path == "/":
            self._send(200, LANDING, "text/html; charset=utf-8", [], head)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8", [], head)

    def _send(self, code: int, body: bytes, content_type: str,
              headers: list[tuple[str, str]], head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers + self.server.extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # One debug line per request (headers, so credentials, are never logged); the request
        # line comes from the client, so control characters are escaped.
        line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in format % args)
        log.debug("%s %s", self.client_address[0], line)


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
