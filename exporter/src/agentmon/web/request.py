"""A request as httptools (llhttp, Node.js' HTTP/1.x parser) reports it, and what the server
refuses: a connection's bytes until its heads are parsed (a parser only once a head has ended),
the parser's callbacks, the request a parsed head makes, the limits httptools does not check
(head size, header lines, HTTP version, repeated Authorization or Host), and the status each
refusal is answered with."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import httptools

log = logging.getLogger("agentmon.web")


class Refused(Exception):
    """A request answered with an error, then the connection closed."""

    def __init__(self, status: int, message: str, head: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.head = status, message, head


@dataclass
class Message:
    """One request as httptools reports it: the head, then the body counted (never kept)."""

    url: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    method: str = ""
    version: str = ""
    keep_alive: bool = False
    body: int = 0  # bytes of body received
    complete: bool = False  # the whole body was received


class Messages:
    """httptools' callbacks for one connection: heads queue up as they complete. The parser
    that calls them is lent for each feed only (``Reader``), so the two form no cycle."""

    __slots__ = ("current", "in_head", "in_message", "last", "parser", "ready")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None  # during Reader.feed only
        self.ready: list[Message] = []
        self.current = NO_MESSAGE
        self.in_message = False  # the parser has begun a request and not finished it
        self.in_head = False  # ... and not yet its head
        self.last = False  # an Upgrade or CONNECT: the parser reads no further request

    def on_message_begin(self) -> None:
        self.current = Message()
        self.in_message = self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = cast(httptools.HttpRequestParser, self.parser)  # lent by Reader.feed
        message = self.current
        message.method = parser.get_method().decode("ascii")
        message.version = parser.get_http_version()
        message.keep_alive = parser.should_keep_alive()
        self.in_head = False
        self.ready.append(message)

    def on_body(self, body: bytes) -> None:
        self.current.body += len(body)

    def on_message_complete(self) -> None:
        self.current.complete = True
        self.in_message = False


class Reader:
    """A connection's requests as they arrive: bytes in, parsed heads out (``ready``), and at
    most ``limit`` bytes (and one) of an unfinished head ever given to the parser.

    A parser (about 1.5 KiB with its callbacks and message) exists only while a request is
    being parsed. The bytes of a head are kept as they come, in one bytearray, until they hold
    a blank line; then a parser is made and given them at once. A head that outgrows the limit
    first is refused unparsed (``oversized``). Once a request is done and the parser has begun
    no next one, it is dropped (``release``). So a client sending its head line by line costs
    its bytes, not a parser; and since only this object holds the parser, never its callbacks,
    a parser is freed when its connection ends, not left to the cycle collector."""

    __slots__ = ("fed", "limit", "messages", "parser", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = bytearray()  # the head so far, while there is no parser
        self.parser: httptools.HttpRequestParser | None = None
        self.messages = Messages()
        self.fed = 0  # bytes of this request's unfinished head received

    @property
    def ready(self) -> list[Message]:
        return self.messages.ready

    @property
    def last(self) -> bool:
        return self.messages.last

    @property
    def started(self) -> bool:
        """Bytes of a request arrived (blank lines before one do not count)."""
        return bool(self.pending or self.messages.ready or self.messages.in_message)

    def oversized(self) -> Refused:
        """The refusal of a head that outgrew the limit: 414 when its request line alone is
        (nearly) that long, else 431. Held bytes are let go at once."""
        if self.parser is None:  # never parsed: a head too long is refused unread
            line_too_long = self.pending.find(b"\n", 0, self.limit) < 0
            self.pending = bytearray()
        else:  # a head that came after another in one read: its parser has the target
            line_too_long = len(self.messages.current.url) + 64 >= self.fed
        if line_too_long:
            return Refused(414, "request line too long")
        return Refused(431, "request head too large")

    def feed(self, data: bytes) -> None:
        """Take received bytes; raises httptools.HttpParserError for what the parser refuses."""
        if self.parser is None:
            self._hold(data)
        elif self.messages.in_head:  # a head that came after another in one read
            part = data[:self.limit + 1 - self.fed]  # no more of it than the limit and a byte
            self.fed += len(part)
            self._parse(part)
            if len(part) < len(data) and self.messages.ready:  # the head ended in it
                self._parse(data[len(part):])
        else:
            self._parse(data)

    def release(self) -> None:
        """Before the next request: drop the parser unless it has begun one."""
        self.fed = 0
        if not self.messages.in_message and not self.messages.ready:
            self.parser = None
            self.messages.current = NO_MESSAGE  # and the last request's headers with it

    def _hold(self, data: bytes) -> None:
        pending = self.pending
        searched = max(0, len(pending) - 2)
        pending += data
        if pending[:1] in (b"\r", b"\n"):  # blank lines before a request are skipped
            del pending[:len(pending) - len(pending.lstrip(b"\r\n"))]
            searched = 0
        self.fed = len(pending)
        # A blank line within the limit (and a byte, so that a head one byte too long is
        # parsed and refused for its size); a head that outgrew the limit is never parsed.
        if any(pending.find(end, searched, self.limit + 1) >= 0 for end in (b"\n\r\n",
                                                                            b"\n\n")):
            head = bytes(pending)
            pending.clear()
            self.parser = httptools.HttpRequestParser(self.messages)
            self._parse(head)

    def _parse(self, data: bytes) -> None:
        self.messages.parser = self.parser
        try:
            cast(httptools.HttpRequestParser, self.parser).feed_data(data)
        except httptools.HttpParserUpgrade:
            self.messages.last = True
        finally:
            self.messages.parser = None


NO_MESSAGE = Message()  # before the first request begins; never written to


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    line: str  # for the log
    authorization: str | None
    accept: str
    accept_encoding: str
    complete: bool  # body read (or none); False: answer, then close
    keep_alive: bool


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def refusal(exc: httptools.HttpParserError, host: str) -> Refused:
    """What a request the parser refuses is answered with (its message is not sent back)."""
    log.debug("bad request from %s: %s", host, printable(str(exc)))
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return Refused(501, "unknown method")
    if "invalid `Transfer-Encoding`" in str(exc):  # llhttp's words; anything else is 400
        return Refused(501, "transfer-encoding is not supported")
    return Refused(400, "malformed request")


def checked(message: Message, max_header_bytes: int, max_header_lines: int) -> Request:
    """The request of a parsed head, or Refused for what the parser lets through."""
    target = message.url.decode("ascii", "replace")
    line = f"{message.method} {target} HTTP/{message.version}"
    head = message.method == "HEAD"
    size = len(line) + 4 + sum(len(n) + len(v) + 4 for n, v in message.headers)
    if size > max_header_bytes:
        if len(line) + 2 > max_header_bytes:
            raise Refused(414, "request line too long", head)
        raise Refused(431, "request head too large", head)
    if message.version not in ("1.0", "1.1"):
        raise Refused(505, "only HTTP/1.0 and HTTP/1.1 are served", head)
    if len(message.headers) > max_header_lines:
        raise Refused(431, "too many header lines", head)
    fields: dict[bytes, bytes] = {}
    for name, value in message.headers:
        if name in fields:
            if name in (b"authorization", b"host"):
                raise Refused(400, f"repeated {name.decode().title()} header", head)
            fields[name] += b", " + value
        else:
            fields[name] = value
    authorization = fields.get(b"authorization")
    return Request(message.method, target, line,
                   authorization.decode("latin-1") if authorization is not None else None,
                   fields.get(b"accept", b"").decode("latin-1"),
                   fields.get(b"accept-encoding", b"").decode("latin-1"), True,
                   message.keep_alive)
