"""What a response is made of: statuses and their reasons, content types, the landing page,
the configured headers, and the negotiation of format (text or OpenMetrics) and encoding
(gzip) from a request's Accept and Accept-Encoding."""

from __future__ import annotations

import email.utils

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


def header_block(config: WebConfig) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in config.headers.items()).encode()


def prefers_openmetrics(accept: str) -> bool:
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


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def head(status: int, content_type: str, length: int, headers: list[tuple[str, str]],
         close: bool, configured: bytes) -> bytes:
    """A response's status line and headers, the configured ones (``header_block``) last."""
    parts = [f"HTTP/1.1 {status} {REASONS[status]}\r\nServer: agentmon\r\n"
             f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
             f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
             "Cache-Control: no-store\r\n"]
    parts.extend(f"{name}: {value}\r\n" for name, value in headers)
    if close:
        parts.append("Connection: close\r\n")
    return "".join(parts).encode("latin-1") + configured + b"\r\n"
