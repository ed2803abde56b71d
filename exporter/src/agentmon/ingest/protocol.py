"""The ingest socket's messages: one request and one answer per connection.

A request is a header, one line of JSON, then (for an event) the event's JSON bytes exactly as
the hook read them (or, for an event over the hook's size cap, the cut event it kept); the client
then shuts its side down, and the service answers one line of JSON and closes.

Header: ``{"v": 1, "kind": K, ...}`` with K one of

- ``event``: store the body. ``deadline_ns``: the ``CLOCK_MONOTONIC`` time (system-wide on
  Linux) until which the service may wait for the write lock (it tries at least once); the
  client waits for the answer until ``GRACE_S`` after it and then keeps the event itself, so the
  service commits nothing later than ``GRACE_S / 2`` after it. ``phase``: the client's
  ``AGENTMON_PHASE``. ``fds``: the transcript fields
  (``agentmon.hook.transcripts.FIELDS``) whose descriptors ride with the request
  (``SCM_RIGHTS``), in order. ``spool``: optional counts of the client's own spool;
- ``status``: only ``spool``: ``[waiting, dropped ever, oldest waiting as Unix seconds]``;
- ``ping``: is the service ready to store (the exporter's ``agentmon_ingest_up``)?

Answer: ``{"ok": bool, "retry": bool, "message": str | null}``. ``ok`` false with ``retry``
true: not stored now (the client keeps the event and sends it again later); with ``retry``
false: refused for good (malformed, too large). Imports only ``json``: the hook imports this.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
KINDS = ("event", "status", "ping")
MAX_HEADER = 4096
MAX_ANSWER = 4096
MAX_FDS = 2
MAX_COUNT = 10**12 - 1  # the spool status files hold at most 12 digits (agentmon.spoolstatus)
FIELD_NAMES = ("transcript_path", "agent_transcript_path")
GRACE_S = 3.0


class ProtocolError(ValueError):
    """A request or answer that does not follow this protocol."""


def header(kind: str, *, deadline_ns: int | None = None, phase: str | None = None,
           fds: tuple[str, ...] | list[str] = (),
           spool: tuple[int, int, float] | None = None) -> bytes:
    """One header line (newline included)."""
    doc: dict[str, Any] = {"v": VERSION, "kind": kind}
    if deadline_ns is not None:
        doc["deadline_ns"] = deadline_ns
    if phase is not None:
        doc["phase"] = phase
    if fds:
        doc["fds"] = list(fds)
    if spool is not None:
        doc["spool"] = [min(int(n), MAX_COUNT) for n in spool]
    return json.dumps(doc, separators=(",", ":")).encode("ascii") + b"\n"


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ProtocolError("spool counts must be three integers 0..10^12")
    return value


def parse_header(line: bytes) -> dict[str, Any]:
    """The validated header of a request (without its newline); raises ProtocolError."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("the header is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION or doc.get("kind") not in KINDS:
        raise ProtocolError(f"the header is not a version {VERSION} request")
    if set(doc) - {"v", "kind", "deadline_ns", "phase", "fds", "spool"}:
        raise ProtocolError("the header has unknown fields")
    deadline = doc.get("deadline_ns")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int)
                                 or deadline < 0):
        raise ProtocolError("deadline_ns must be a non-negative integer")
    phase = doc.get("phase")
    if phase is not None and (not isinstance(phase, str) or len(phase) > 256):
        raise ProtocolError("phase must be a string of at most 256 characters")
    fds = doc.get("fds", [])
    if not isinstance(fds, list) or len(fds) > MAX_FDS or len(set(fds)) != len(fds) \
            or any(name not in FIELD_NAMES for name in fds):
        raise ProtocolError(f"fds must list distinct names among {', '.join(FIELD_NAMES)}")
    spool = doc.get("spool")
    if spool is not None:
        if not isinstance(spool, list) or len(spool) != 3:
            raise ProtocolError("spool counts must be three integers 0..10^12")
        doc["spool"] = tuple(_count(n) for n in spool)
    if doc["kind"] == "status" and spool is None:
        raise ProtocolError("a status request carries spool counts")
    doc["fds"] = fds
    return doc


def answer(ok: bool, *, retry: bool = False, message: str | None = None) -> bytes:
    text = None if message is None else message[:1000]
    return json.dumps({"ok": ok, "retry": retry, "message": text},
                      separators=(",", ":")).encode("utf-8") + b"\n"


def parse_answer(data: bytes) -> tuple[bool, bool, str | None]:
    """(ok, retry, message) of an answer; raises ProtocolError."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("the answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool) \
            or not isinstance(doc.get("retry"), bool) \
            or not isinstance(doc.get("message"), str | None):
        raise ProtocolError("the answer is not a version 1 answer")
    return doc["ok"], doc["retry"], doc["message"]
