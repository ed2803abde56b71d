"""The hook's side of the ingest socket (``agentmon hook --socket``): its spooled events first,
then its own, each with the descriptors of the transcripts it opened itself; what cannot be
stored now goes to the user's spool, and the spool's counts go to the service.

The hook never opens the database here. The service may wait for the write lock until
``--busy-timeout-ms`` after the hook started; the hook waits for its answer ``GRACE_S`` longer,
and the service commits nothing after half of that grace, so an event the hook keeps was not
stored (``agentmon.ingest.protocol``).
"""

from __future__ import annotations

import contextlib
import os
import time

from agentmon.hook import spool, transcripts
from agentmon.ingest import client, protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

STATUS_TIMEOUT_S = 2.0


class Sender:
    """Sends events to one socket before one deadline."""

    def __init__(self, path: str, wait_ms: int, phase: str | None) -> None:
        self.path = path
        self.deadline_ns = time.monotonic_ns() + wait_ms * 1_000_000
        self.phase = phase
        self.notes: list[str] = []  # transcripts the hook could not open

    def _open(self, event: dict[str, Any]) -> tuple[list[str], list[int]]:
        field = transcripts.FIELDS.get(event["hook_event_name"])
        path = event.get(field) if field else None
        if not isinstance(path, str) or not path:
            return [], []
        try:
            return [field], [transcripts.open_own(path)]  # type: ignore[list-item]
        except FileNotFoundError:
            return [], []  # nothing written yet: nothing to count
        except OSError as exc:
            self.notes.append(f"transcript not read: {exc}")
            return [], []

    def send(self, event: dict[str, Any], data: bytes,
             counts: tuple[int, int, float] | None = None) -> tuple[bool, bool, str | None]:
        """The service's answer (ok, retry, message); raises client.Unreachable."""
        names, fds = self._open(event)
        try:
            request = protocol.header("event", deadline_ns=self.deadline_ns, phase=self.phase,
                                      fds=names, spool=counts) + data
            left = (self.deadline_ns - time.monotonic_ns()) / 1e9
            return client.exchange(self.path, request, fds,
                                   timeout=max(left, 0) + protocol.GRACE_S)
        finally:
            for fd in fds:
                os.close(fd)

    def drained(self, event: dict[str, Any], data: bytes) -> None:
        """A spooled event, for spool.drain_into."""
        try:
            ok, retry, message = self.send(event, data)
        except client.Unreachable as exc:
            raise spool.Unavailable(str(exc)) from None
        if not ok:
            raise (spool.Unavailable if retry else spool.Refused)(message or "not stored")

    def report(self, counts: tuple[int, int, float]) -> None:
        """Tell the service the spool's counts (best effort: it may be what is down)."""
        with contextlib.suppress(client.Unreachable):
            client.exchange(self.path, protocol.header("status", spool=counts),
                            timeout=STATUS_TIMEOUT_S)


def forward(event: dict[str, Any], data: bytes, config: dict[str, Any],
            env: Mapping[str, str]) -> str | None:
    """Store ``event`` (its bytes ``data``) through the socket; the hook's one line, if any."""
    sender = Sender(config["socket"], config["--busy-timeout-ms"], config["phase"])
    counts = None
    try:
        counts, _stopped = spool.drain_into(sender.drained, env)
    except OSError as exc:
        sender.notes.append(f"spool not drained: {exc}")
    try:
        ok, retry, message = sender.send(event, data, counts)
    except client.Unreachable as exc:
        ok, retry, message = False, True, f"ingest unavailable: {exc}"
    notes = sender.notes
    if ok:
        return "; ".join([*notes, *([message] if message else [])]) or None
    if not retry:
        return "; ".join([*notes, f"event refused by {sender.path}: {message}"])
    kept, counts = spool.keep(data, env)
    if counts is not None:
        sender.report(counts)
    return "; ".join([*notes, f"event not stored: {message}", kept])
