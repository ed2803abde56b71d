"""The HTTP(S) side of ``agentmon serve``: a small asyncio server that serves bytes rendered
elsewhere, behind basic auth, a bearer token and/or TLS client certificates.

Requests are parsed by httptools (``request``); this module owns the sockets, the connection
table and the deadlines, and serves each request its answer (``response``) once it has been
authenticated (``auth``). A scrape never touches SQLite nor renders anything: it writes the
bytes the refresh thread stored in an ``exposition.Exposition``.

Hostile clients are bounded, not trusted: an idle socket costs a few kilobytes, not a thread;
the TLS handshake (``stream``) and the request head each have a deadline of a few seconds; the
head is at most 8 KiB; when the connection table is full the oldest connection that has not yet
authenticated is closed, so anonymous clients can never crowd out a scraper that has (or is
about to) prove who it is. Authentication comes before anything else (405 and 404 only after
it), bcrypt runs on its own thread, never on the event loop, bodies are read (bounded) or the
connection is closed, and every response, errors included, carries the configured
``http_server_config.headers``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import resource
import socket
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass

import httptools

from agentmon.web import response
from agentmon.web.address import ListenAddress
from agentmon.web.auth import Authenticator
from agentmon.web.config import WebConfig
from agentmon.web.exposition import Exposition
from agentmon.web.request import Reader, Refused, Request, checked, printable, refusal
from agentmon.web.response import (
    CONTENT_TYPE,
    KNOWN_METHODS,
    LANDING,
    OPENMETRICS_CONTENT_TYPE,
    REALM,
    REASONS,
    TEXT,
    accepts_gzip,
    header_block,
    prefers_openmetrics,
)
from agentmon.web.stream import Stream, Turns

log = logging.getLogger("agentmon.web")


@dataclass(frozen=True)
class _Current:
    """What a new connection or request is served with; swapped whole on reload."""

    config: WebConfig
    authenticator: Authenticator
    ssl_context: ssl.SSLContext | None
    headers: bytes  # the configured http_server_config.headers, ready to send




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
                                 ssl_context, header_block(config))
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
        self._turns = Turns(self.handshakes_per_iteration)

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
        self._current = _Current(config, authenticator, ssl_context, header_block(config))

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
            stream = Stream(sock)
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

    async def _requests(self, stream: Stream, host: str) -> bool:
        """Serve requests until the connection should close; True: close gracefully."""
        loop = asyncio.get_running_loop()
        reader = Reader(self.max_header_bytes)
        authenticated = False
        while True:
            try:
                request = await self._next_request(stream, reader, host, authenticated)
            except Refused as exc:
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
            close = not request.keep_alive or not request.complete or reader.last
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

    async def _route(self, stream: Stream, host: str, request: Request, head: bool,
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
                if prefers_openmetrics(request.accept):
                    self.exposition.ask_openmetrics()
                    rendered = self.exposition.get_openmetrics()
                content_type = OPENMETRICS_CONTENT_TYPE if rendered else CONTENT_TYPE
                plain, gzipped = rendered or self.exposition.get()
                vary = ("Vary", "Accept, Accept-Encoding")
                if accepts_gzip(request.accept_encoding):
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

    async def _next_request(self, stream: Stream, reader: Reader, host: str,
                            authenticated: bool) -> Request | None:
        """The next request (head parsed by httptools, small body read), None when the client
        is gone or idle too long; Refused for a request that gets an error and a closed
        connection."""
        loop = asyncio.get_running_loop()
        reader.release()
        # Anonymous clients get one deadline for the whole head; authenticated keep-alive
        # connections may idle between requests, then have the same deadline for the head.
        deadline = loop.time() + (self.idle_timeout if authenticated else self.header_timeout)
        try:
            async with asyncio.timeout_at(deadline):
                while not reader.started:  # blank lines before a request: skipped
                    data = await stream.read()
                    if not data:
                        return None
                    reader.feed(data)
        except TimeoutError:
            return None  # nothing asked: close without a word
        except httptools.HttpParserError as exc:
            raise refusal(exc, host) from None
        if authenticated:
            deadline = loop.time() + self.header_timeout
        try:
            async with asyncio.timeout_at(deadline):
                while not reader.ready:
                    if reader.fed > self.max_header_bytes:  # still no end of head
                        raise reader.oversized()
                    data = await stream.read()
                    if not data:
                        return None
                    reader.feed(data)
                message = reader.ready.pop(0)
                request = checked(message, self.max_header_bytes, self.max_header_lines)
                # httptools has checked the framing (one Content-Length of digits, or
                # chunked); a body is read and thrown away up to max_body, a longer one is
                # left unread (answer, then close).
                declared = int(dict(message.headers).get(b"content-length", b"0"))
                while not message.complete and max(declared, message.body) <= self.max_body:
                    data = await stream.read()
                    if not data:
                        return None
                    reader.feed(data)
                return request if message.complete else dataclasses.replace(request,
                                                                            complete=False)
        except TimeoutError:
            raise Refused(408, "request not received in time") from None
        except httptools.HttpParserError as exc:
            raise refusal(exc, host) from None

    async def _send(self, stream: Stream, host: str, status: int, body: bytes,
                    content_type: str, headers: list[tuple[str, str]], head: bool, close: bool,
                    line: str) -> None:
        data = response.head(status, content_type, len(body), headers, close,
                             self._current.headers)
        if not head:
            data += body
        # One debug line per request (headers, so credentials, are never logged); the request
        # line comes from the client, so control characters are escaped.
        log.debug('%s "%s" %d %d', host, printable(line), status, len(body))
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
