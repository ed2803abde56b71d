"""The HTTP(S) side of ``agentmon serve``: a small asyncio server that serves bytes rendered
elsewhere, behind basic auth, a bearer token and/or TLS client certificates.

Requests are parsed by httptools (llhttp, Node.js' HTTP/1.x parser): request line, headers,
Content-Length and chunked framing, keep-alive; this module owns the sockets, the answers'
heads and everything that makes the server safe to expose. A scrape never touches SQLite nor
renders anything: the refresh thread stores the rendered exposition (text format and, while
clients ask for it, OpenMetrics; each plain and gzip) in an :class:`Exposition`, and a request
only authenticates and writes those bytes. Authentication costs a bcrypt verification once per
distinct credential; results are cached under an HMAC (random per-process key) of user and
password, so the cache never holds a password. bcrypt runs on one worker thread, never on the
event loop.

Hostile clients are bounded, not trusted: an idle socket costs a few kilobytes, not a thread;
the TLS handshake and the request head each have a deadline of a few seconds; the head is at
most 8 KiB; when the connection table is full the oldest connection that has not yet
authenticated is closed, so anonymous clients can never crowd out a scraper that has (or is
about to) prove who it is. Authentication comes before anything else (405 and 404 only after
it), bodies are read (bounded) or the connection is closed, and every response, errors
included, carries the configured ``http_server_config.headers``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import email.utils
import gzip
import hashlib
import hmac
import ipaddress
import logging
import math
import resource
import secrets
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import cast

import bcrypt
import httptools
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_LATEST

from agentmon.web.config import WebConfig

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = OPENMETRICS_LATEST  # "application/openmetrics-text; version=1.0.0"
TEXT = "text/plain; charset=utf-8"
REALM = "agentmon"
LANDING = (b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>agentmon</title></head>"
           b"<body><h1>agentmon</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
           414: "URI Too Long", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 505: "HTTP Version Not Supported"}
# Methods HTTP defines: anything else is 501, these are 405 (after authentication).
KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})

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
    """The latest rendered metrics (text format and, when rendered, OpenMetrics; each plain and
    gzip), swapped whole by the refresh thread.

    OpenMetrics is rendered only while clients ask for it (it adds about a third to the
    render, ``agentmon.serve.exposition``): a request that prefers it marks the time, and
    the refresh thread renders it while such a request came in the last ``OPENMETRICS_WINDOW``
    seconds. Until then (and after) those requests get the text format, which every
    Prometheus also accepts; never an OpenMetrics rendering older than the text."""

    OPENMETRICS_WINDOW = 600.0

    def __init__(self, body: bytes = b"", openmetrics: bytes | None = None) -> None:
        self.set(body, openmetrics)
        self._openmetrics_asked = -math.inf

    def ask_openmetrics(self) -> None:
        self._openmetrics_asked = time.monotonic()

    def openmetrics_wanted(self) -> bool:
        return time.monotonic() - self._openmetrics_asked < self.OPENMETRICS_WINDOW

    def set(self, body: bytes, openmetrics: bytes | None = None) -> None:
        self._current = (_packed(body),
                         _packed(openmetrics) if openmetrics is not None else None)

    def get(self) -> tuple[bytes, bytes]:
        """The text format: (plain, gzip)."""
        return self._current[0]

    def get_openmetrics(self) -> tuple[bytes, bytes] | None:
        """OpenMetrics: (plain, gzip), or None when it was not rendered."""
        return self._current[1]


def _packed(body: bytes) -> tuple[bytes, bytes]:
    return body, gzip.compress(body, compresslevel=6, mtime=0)


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
        """The decision; may run bcrypt (keep it off the event loop)."""
        verdict = self.quick(header)
        if verdict is not None:
            return verdict
        user, password = self._basic(header)  # type: ignore[misc]
        return self._verify(user, password)

    def quick(self, header: str | None) -> bool | None:
        """The decision when it needs no bcrypt run (cached, bearer, malformed), else None."""
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token_digest is not None:
            given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
            return hmac.compare_digest(given, self._token_digest)
        if scheme != "basic" or not self._users:
            return False
        parsed = self._basic(header)
        if parsed is None:
            return False
        with self._cache_lock:
            key = self._cache_key(*parsed)
            if key in self._good:
                self._good.move_to_end(key)
                return True
            if key in self._bad:
                self._bad.move_to_end(key)
                return False
        return None

    @staticmethod
    def _basic(header: str | None) -> tuple[bytes, bytes] | None:
        _, _, credentials = (header or "").strip().partition(" ")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(b":")
        return (user, password) if sep else None

    def _cache_key(self, user: bytes, password: bytes) -> bytes:
        return hmac.new(self._key, len(user).to_bytes(4, "big") + user + password,
                        hashlib.sha256).digest()

    def _verify(self, user: bytes, password: bytes) -> bool:
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
        key = self._cache_key(user, password)
        with self._cache_lock:
            cache = self._good if ok else self._bad
            cache[key] = None
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        return ok


@dataclass(frozen=True)
class _Current:
    """What a new connection or request is served with; swapped whole on reload."""

    config: WebConfig
    authenticator: Authenticator
    ssl_context: ssl.SSLContext | None
    headers: bytes  # the configured http_server_config.headers, ready to send


class _Refused(Exception):
    """A request answered with an error, then the connection closed."""

    def __init__(self, status: int, message: str, head: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.head = status, message, head


@dataclass
class _Message:
    """One request as httptools reports it: the head, then the body counted (never kept)."""

    url: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    method: str = ""
    version: str = ""
    keep_alive: bool = False
    body: int = 0  # bytes of body received
    complete: bool = False  # the whole body was received


class _Messages:
    """httptools' callbacks for one connection: heads queue up as they complete. The parser
    (about 2 KiB) is made with the first bytes: a silent socket never has one."""

    __slots__ = ("current", "last", "parser", "ready")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.ready: list[_Message] = []
        self.current = _NO_MESSAGE
        self.last = False  # an Upgrade or CONNECT: the parser reads no further request

    def feed(self, data: bytes) -> None:
        if self.parser is None:
            self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.last = True

    def on_message_begin(self) -> None:
        self.current = _Message()

    def on_url(self, url: bytes) -> None:
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = cast(httptools.HttpRequestParser, self.parser)  # feed() made it: it calls
        message = self.current
        message.method = parser.get_method().decode("ascii")
        message.version = parser.get_http_version()
        message.keep_alive = parser.should_keep_alive()
        self.ready.append(message)

    def on_body(self, body: bytes) -> None:
        self.current.body += len(body)

    def on_message_complete(self) -> None:
        self.current.complete = True


_NO_MESSAGE = _Message()  # before the first request begins; never written to


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    line: str  # for the log
    authorization: str | None
    accept: str
    accept_encoding: str
    complete: bool  # body read (or none); False: answer, then close
    keep_alive: bool


class _Stream:
    """A connection's bytes, plain or through TLS on memory BIOs, driven by the event loop.

    Reads are small (4 KiB) whatever the peer sends, so a connection costs what it buffers and
    nothing more; the TLS state (tens of KiB) is made only once the client has sent its first
    bytes, so a silent socket costs a few KiB. Closing is the owner's job (by cancelling)."""

    CHUNK = 4096

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None

    async def handshake(self, ssl_context: ssl.SSLContext, turns: _Turns) -> bool:
        """TLS handshake; False when the client left first."""
        first = await self._loop.sock_recv(self.sock, self.CHUNK)
        if not first:
            return False
        self._in.write(first)
        await turns.wait()  # the costly step (key exchange, signature): newest client first
        tls = self.tls = ssl_context.wrap_bio(self._in, self._out, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return False
            except ssl.SSLError:
                await self._flush()  # the alert tells the client why
                raise
        await self._flush()
        return True

    async def read(self) -> bytes:
        """Some bytes, or b"" at the end of the stream."""
        if self.tls is None:
            return await self._loop.sock_recv(self.sock, self.CHUNK)
        while True:
            try:
                return self.tls.read(self.CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        if self.tls is None:
            await self._loop.sock_sendall(self.sock, data)
        else:
            self.tls.write(data)
            await self._flush()

    async def _fill(self) -> bool:
        data = await self._loop.sock_recv(self.sock, self.CHUNK)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)


class _Turns:
    """Hands out turns for a CPU-bound step, newest waiter first and a few per loop iteration.

    A burst of hundreds of handshakes (attackers reconnecting together) would otherwise run
    in one long loop iteration, in arrival order, ahead of a scraper that came a moment later.
    Newest first, the scraper goes next; waiters left behind are the burst, whose deadlines
    close them. Throughput is the same; only the order and the iteration length change."""

    def __init__(self, per_iteration: int) -> None:
        self._per_iteration = per_iteration
        self._waiting: list[asyncio.Future[None]] = []
        self._scheduled = False

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._grant)
        await turn

    def _grant(self) -> None:
        granted = 0
        while self._waiting and granted < self._per_iteration:
            turn = self._waiting.pop()
            if not turn.done():  # a cancelled waiter (its deadline passed) is skipped
                turn.set_result(None)
                granted += 1
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._grant)
        else:
            self._scheduled = False


class MetricsServer:
    """asyncio HTTP(S) server on its own thread: ``serve_forever()`` until ``shutdown()``."""

    max_connections = 1024  # lowered to fit under the open-files limit
    handshake_timeout = 5.0  # TLS handshake, from accept
    header_timeout = 5.0  # a whole request head (and a small body), from its first byte
    idle_timeout = 120.0  # authenticated keep-alive connection between two requests
    write_timeout = 10.0
    max_header_bytes = 8192  # request line and header lines together
    max_header_lines = 32
    max_body = 16384  # read and thrown away; longer bodies close the connection
    accept_batch = 64
    handshakes_per_iteration = 8

    def __init__(self, address: ListenAddress, config: WebConfig, exposition: Exposition,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.exposition = exposition
        self._current = _Current(config, Authenticator(config.basic_auth_users,
                                                       config.bearer_token),
                                 ssl_context, _header_block(config))
        try:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except OSError:  # a seccomp filter may refuse prlimit64
            soft = resource.RLIM_INFINITY
        if soft != resource.RLIM_INFINITY:
            self.max_connections = max(1, min(self.max_connections, soft - 64))
        self.socket = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.socket.bind((address.host, address.port))
            self.socket.listen(1024)
            self.socket.setblocking(False)
        except BaseException:
            self.socket.close()
            raise
        self.port = int(self.socket.getsockname()[1])
        self._conns: dict[asyncio.Task[None], str] = {}
        self._anonymous: OrderedDict[asyncio.Task[None], None] = OrderedDict()  # oldest first
        self._bcrypt = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bcrypt")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._stopped = threading.Event()
        self._full = False
        self.evicted = 0  # anonymous connections closed to make room
        self._turns = _Turns(self.handshakes_per_iteration)

    # ------------------------------------------------------------ configuration

    @property
    def web_config(self) -> WebConfig:
        return self._current.config

    @property
    def authenticator(self) -> Authenticator:
        return self._current.authenticator

    def reload(self, config: WebConfig, ssl_context: ssl.SSLContext | None) -> None:
        """Serve new connections and requests with ``config`` (any thread). The authenticator,
        and so its cache, is kept when the credentials did not change."""
        old = self._current
        same = (config.basic_auth_users == old.config.basic_auth_users
                and config.bearer_token == old.config.bearer_token)
        authenticator = old.authenticator if same else Authenticator(config.basic_auth_users,
                                                                     config.bearer_token)
        self._current = _Current(config, authenticator, ssl_context, _header_block(config))

    # ------------------------------------------------------------ life cycle

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve on this thread until shutdown(); poll_interval is accepted for compatibility."""
        loop = asyncio.new_event_loop()
        try:
            with self._lock:
                if self._stop_requested:
                    return
                self._loop = loop
            loop.run_until_complete(self._main())
        finally:
            with self._lock:
                self._loop = None
            loop.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it has returned."""
        with self._lock:
            self._stop_requested = True
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._request_stop)
            self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
        self._bcrypt.shutdown(wait=False, cancel_futures=True)

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop.add_reader(self.socket.fileno(), self._accept)
        try:
            await self._stop.wait()
        finally:
            loop.remove_reader(self.socket.fileno())
            tasks = list(self._conns)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ connections

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.accept_batch):
            try:
                sock, peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: make room, pause briefly
                log.warning("cannot accept a connection: %s", exc.strerror or exc)
                self._evict_oldest_anonymous()
                loop.remove_reader(self.socket.fileno())
                loop.call_later(0.1, loop.add_reader, self.socket.fileno(), self._accept)
                return
            self._admit(sock, str(peer[0]))

    def _admit(self, sock: socket.socket, host: str) -> None:
        if len(self._conns) >= self.max_connections and not self._evict_oldest_anonymous():
            if not self._full:
                log.warning("%d authenticated connections open; refusing new ones",
                            len(self._conns))
                self._full = True
            sock.close()
            return
        if len(self._conns) < self.max_connections - 1:
            self._full = False
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.get_running_loop().create_task(self._connection(sock, host))
        self._conns[task] = host
        self._anonymous[task] = None
        task.add_done_callback(self._forget)

    def _evict_oldest_anonymous(self) -> bool:
        if not self._anonymous:
            return False
        task, _ = self._anonymous.popitem(last=False)
        self._conns.pop(task, None)
        task.cancel()
        self.evicted += 1
        if not self._full:
            log.warning("%d connections open; closing the oldest that have not authenticated",
                        self.max_connections)
            self._full = True
        return True

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._conns.pop(task, None)
        self._anonymous.pop(task, None)

    def _authenticated(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._anonymous.pop(task, None)

    async def _connection(self, sock: socket.socket, host: str) -> None:
        linger = False
        try:
            stream = _Stream(sock)
            ssl_context = self._current.ssl_context
            if ssl_context is not None:
                try:
                    async with asyncio.timeout(self.handshake_timeout):
                        if not await stream.handshake(ssl_context, self._turns):
                            return
                except (ssl.SSLError, TimeoutError) as exc:
                    log.debug("TLS handshake with %s failed: %s", host,
                              exc if isinstance(exc, ssl.SSLError) else "timed out")
                    return
            linger = await self._requests(stream, host)
        except (ConnectionError, OSError) as exc:
            log.debug("connection from %s ended with an error: %s", host, exc)
        finally:
            if linger:
                await self._lingering_close(sock)
            sock.close()

    async def _requests(self, stream: _Stream, host: str) -> bool:
        """Serve requests until the connection should close; True: close gracefully."""
        loop = asyncio.get_running_loop()
        messages = _Messages()
        authenticated = False
        while True:
            try:
                request = await self._next_request(stream, messages, host, authenticated)
            except _Refused as exc:
                await self._send(stream, host, exc.status, exc.message.encode() + b"\n", TEXT,
                                 [], exc.head, True, "-")
                return exc.status != 408  # a client too slow to send gets no lingering
            if request is None:
                return False
            current = self._current
            verdict = current.authenticator.quick(request.authorization)
            if verdict is None:  # needs bcrypt: on its thread, one at a time
                verdict = await loop.run_in_executor(
                    self._bcrypt, current.authenticator.check, request.authorization)
            head = request.method == "HEAD"
            close = not request.keep_alive or not request.complete or messages.last
            if not verdict:
                await self._send(stream, host, 401, b"unauthorized\n", TEXT,
                                 [("WWW-Authenticate", f'Basic realm="{REALM}"')], head, close,
                                 request.line)
            else:
                if not authenticated:
                    authenticated = True
                    self._authenticated()
                await self._route(stream, host, request, head, close)
            if close:
                return True

    async def _route(self, stream: _Stream, host: str, request: _Request, head: bool,
                     close: bool) -> None:
        line = request.line
        if not request.complete:
            await self._send(stream, host, 413, b"request body too large\n", TEXT, [], head,
                             True, line)
        elif request.method not in ("GET", "HEAD"):
            status = 405 if request.method in KNOWN_METHODS else 501
            await self._send(stream, host, status, REASONS[status].lower().encode() + b"\n",
                             TEXT, [("Allow", "GET, HEAD")], False, close, line)
        else:
            path = request.target.split("?", 1)[0]
            if path == "/metrics":
                rendered = None
                if _prefers_openmetrics(request.accept):
                    self.exposition.ask_openmetrics()
                    rendered = self.exposition.get_openmetrics()
                content_type = OPENMETRICS_CONTENT_TYPE if rendered else CONTENT_TYPE
                plain, gzipped = rendered or self.exposition.get()
                vary = ("Vary", "Accept, Accept-Encoding")
                if _accepts_gzip(request.accept_encoding):
                    await self._send(stream, host, 200, gzipped, content_type,
                                     [("Content-Encoding", "gzip"), vary], head, close, line)
                else:
                    await self._send(stream, host, 200, plain, content_type, [vary], head,
                                     close, line)
            elif path == "/":
                await self._send(stream, host, 200, LANDING, "text/html; charset=utf-8", [],
                                 head, close, line)
            else:
                await self._send(stream, host, 404, b"not found\n", TEXT, [], head, close, line)

    async def _next_request(self, stream: _Stream, messages: _Messages, host: str,
                            authenticated: bool) -> _Request | None:
        """The next request (head parsed by httptools, small body read), None when the client
        is gone or idle too long; _Refused for a request that gets an error and a closed
        connection."""
        loop = asyncio.get_running_loop()
        # Anonymous clients get one deadline for the whole head; authenticated keep-alive
        # connections may idle between requests, then have the same deadline for the head.
        deadline = loop.time() + (self.idle_timeout if authenticated else self.header_timeout)
        fed = 0  # bytes given to the parser for this request's head
        try:
            async with asyncio.timeout_at(deadline):
                while not messages.ready and not fed:  # blank lines before a request: skipped
                    data = await stream.read()
                    if not data:
                        return None
                    if data.lstrip(b"\r\n"):
                        fed = len(data)
                    messages.feed(data)
        except TimeoutError:
            return None  # nothing asked: close without a word
        except httptools.HttpParserError as exc:
            raise _refusal(exc, host) from None
        if authenticated:
            deadline = loop.time() + self.header_timeout
        try:
            async with asyncio.timeout_at(deadline):
                while not messages.ready:
                    if fed > self.max_header_bytes:  # still no end of head
                        if len(messages.current.url) + 64 >= fed:  # nearly all of it the URL
                            raise _Refused(414, "request line too long")
                        raise _Refused(431, "request head too large")
                    data = await stream.read()
                    if not data:
                        return None
                    fed += len(data)
                    messages.feed(data)
                message = messages.ready.pop(0)
                request = self._checked(message)
                # httptools has checked the framing (one Content-Length of digits, or
                # chunked); a body is read and thrown away up to max_body, a longer one is
                # left unread (answer, then close).
                declared = int(dict(message.headers).get(b"content-length", b"0"))
                while not message.complete and max(declared, message.body) <= self.max_body:
                    data = await stream.read()
                    if not data:
                        return None
                    messages.feed(data)
                return request if message.complete else dataclasses.replace(request,
                                                                            complete=False)
        except TimeoutError:
            raise _Refused(408, "request not received in time") from None
        except httptools.HttpParserError as exc:
            raise _refusal(exc, host) from None

    def _checked(self, message: _Message) -> _Request:
        """The request of a parsed head, or _Refused for what the parser lets through."""
        target = message.url.decode("ascii", "replace")
        line = f"{message.method} {target} HTTP/{message.version}"
        head = message.method == "HEAD"
        size = len(line) + 4 + sum(len(n) + len(v) + 4 for n, v in message.headers)
        if size > self.max_header_bytes:
            if len(line) + 2 > self.max_header_bytes:
                raise _Refused(414, "request line too long", head)
            raise _Refused(431, "request head too large", head)
        if message.version not in ("1.0", "1.1"):
            raise _Refused(505, "only HTTP/1.0 and HTTP/1.1 are served", head)
        if len(message.headers) > self.max_header_lines:
            raise _Refused(431, "too many header lines", head)
        fields: dict[bytes, bytes] = {}
        for name, value in message.headers:
            if name in fields:
                if name in (b"authorization", b"host"):
                    raise _Refused(400, f"repeated {name.decode().title()} header", head)
                fields[name] += b", " + value
            else:
                fields[name] = value
        authorization = fields.get(b"authorization")
        return _Request(message.method, target, line,
                        authorization.decode("latin-1") if authorization is not None else None,
                        fields.get(b"accept", b"").decode("latin-1"),
                        fields.get(b"accept-encoding", b"").decode("latin-1"), True,
                        message.keep_alive)

    async def _send(self, stream: _Stream, host: str, status: int, body: bytes,
                    content_type: str, headers: list[tuple[str, str]], head: bool, close: bool,
                    line: str) -> None:
        parts = [f"HTTP/1.1 {status} {REASONS[status]}\r\nServer: agentmon\r\n"
                 f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
                 f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                 "Cache-Control: no-store\r\n"]
        parts.extend(f"{name}: {value}\r\n" for name, value in headers)
        if close:
            parts.append("Connection: close\r\n")
        data = "".join(parts).encode("latin-1") + self._current.headers + b"\r\n"
        if not head:
            data += body
        # One debug line per request (headers, so credentials, are never logged); the request
        # line comes from the client, so control characters are escaped.
        log.debug('%s "%s" %d %d', host, _printable(line), status, len(body))
        async with asyncio.timeout(self.write_timeout):
            await stream.write(data)

    async def _lingering_close(self, sock: socket.socket) -> None:
        """Half-close and drain what the client still sends, so that closing with unread
        bytes does not reset the connection before the client has read the response."""
        loop = asyncio.get_running_loop()
        try:
            sock.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(1.0):
                drained = 0
                while drained < 65536:
                    data = await loop.sock_recv(sock, 4096)
                    if not data:
                        break
                    drained += len(data)
        except (OSError, TimeoutError):
            pass


def _header_block(config: WebConfig) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in config.headers.items()).encode()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _refusal(exc: httptools.HttpParserError, host: str) -> _Refused:
    """What a request the parser refuses is answered with (its message is not sent back)."""
    log.debug("bad request from %s: %s", host, _printable(str(exc)))
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return _Refused(501, "unknown method")
    if "invalid `Transfer-Encoding`" in str(exc):  # llhttp's words; anything else is 400
        return _Refused(501, "transfer-encoding is not supported")
    return _Refused(400, "malformed request")


def _prefers_openmetrics(accept: str) -> bool:
    """True when Accept ranks OpenMetrics 1.0.0 (or unversioned) above the text format.

    Prometheus asks for both with q-values (``application/openmetrics-text;version=1.0.0,...,
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1``); anything else, a tie included, is text."""
    openmetrics = text = 0.0
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        values = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        try:
            q = float(values.get("q", "1"))
        except ValueError:
            q = 0.0
        if not 0.0 <= q <= 1.0:  # NaN included
            q = 0.0
        media = media.lower()
        if media == "application/openmetrics-text" and values.get("version", "1.0.0") == "1.0.0":
            openmetrics = max(openmetrics, q)
        elif media in ("text/plain", "text/*", "*/*"):
            text = max(text, q)
    return openmetrics > text


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
