"""A request as httptools (llhttp, Node.js' HTTP/1.x parser) reports it, and what the server
refuses: the parser's callbacks for one connection, the request a parsed head makes, the limits
httptools does not check (head size, header lines, HTTP version, repeated Authorization or
Host), and the status each refusal is answered with."""

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
    (about 2 KiB) is made with the first bytes: a silent socket never has one."""

    __slots__ = ("current", "last", "parser", "ready")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.ready: list[Message] = []
        self.current = NO_MESSAGE
        self.last = False  # an Upgrade or CONNECT: the parser reads no further request

    def feed(self, data: bytes) -> None:
        if self.parser is None:
            self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.last = True

    def on_message_begin(self) -> None:
        self.current = Message()

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
