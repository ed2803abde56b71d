"""The ingest service's loop: many clients at once, one writer.

One thread and one selector. Reading requests never waits on a client: every connection is
non-blocking, has ``request_timeout`` to send its whole request (then it is cut), and the
numbers of connections, in all and per uid, are capped (a connection over the per-uid cap is
answered "retry" at once), so one user holding connections open delays nobody else. Complete
events wait in one queue per uid, served round-robin, each until its deadline (the client's,
capped at ``max_wait``, for the write lock; it is tried without waiting (``writer.Busy``), so
while another writer holds it the loop keeps reading, answering pings and recording spool
counts. Nothing is committed once the client has hung up or may have stopped waiting (half of
``protocol.GRACE_S`` after its deadline).

When ``release_link`` (the ``current`` link of the releases) stops pointing at the release the
service started from, it stops accepting, finishes what it holds and exits 0: systemd starts
the new release on the next connection (socket activation), which the listening socket kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentmon.hook.cli import Rejected, parse_event
from agentmon.ingest import peer, protocol
from agentmon.ingest.writer import Busy, NotNow, Writer
from agentmon.spoolstatus import Board

log = logging.getLogger("agentmon.ingest")

RECV_SIZE = 256 * 1024
TICK = 1.0  # seconds between idle chores (checkpoint, release link) when nothing happens
WORK_SLICE = 0.05  # seconds of storing before the loop reads and accepts again
BACKOFF_FIRST, BACKOFF_MAX = 0.005, 0.1
LATE = "not stored before the client's deadline"
COMMIT_GRACE = protocol.GRACE_S / 2


@dataclass(frozen=True)
class Limits:
    max_input_bytes: int = 1024 * 1024
    request_timeout: float = 5.0
    max_connections: int = 64
    max_per_user: int = 16
    default_wait: float = 15.0
    max_wait: float = 60.0


class Abandoned(Exception):
    """The client hung up before its event was committed: nothing stored, nobody to answer."""


class Late(Exception):
    """The client's deadline passed before the commit: nothing stored, the client keeps it."""


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    pid: int
    uid: int
    started: float
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    too_many_fds: bool = False
    reading: bool = True
    header: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    deadline: float = 0.0
    saw_lock_held: bool = False  # another writer held the lock while this event waited


class Server:
    def __init__(self, listener: socket.socket, writer: Writer, board: Board | None,
                 limits: Limits | None = None, release_link: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listener = listener
        self.writer = writer
        self.board = board
        self.limits = limits or Limits()
        self.clock = clock
        self.release_link = release_link
        self.release = os.path.realpath(release_link) if release_link else None
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.conns: set[Conn] = set()
        self.per_uid: dict[int, int] = {}
        self.queue: dict[int, deque[Conn]] = {}
        self.turns: deque[int] = deque()
        self.listening = False
        self.stopping = False
        self.busy_until = 0.0
        self.backoff = BACKOFF_FIRST
        self.last_commit = 0.0
        self.next_tick = 0.0
        self.last_fault: str | None = None
        self.stored = 0  # events stored since start (for the log and the tests)

    # the loop ------------------------------------------------------------------------------

    def serve(self) -> int:
        self.listener.setblocking(False)
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self._listen(True)
        try:
            while not (self.stopping and not self.conns):
                for key, _mask in self.sel.select(self._timeout()):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self.wake_r:
                        self._woken()
                    else:
                        self._read(key.data)
                now = self.clock()
                self._expire(now)
                self._work(now)
                self._idle(now)
        finally:
            for conn in list(self.conns):
                self._close(conn)
            self.sel.close()
            self.wake_r.close()
            self.wake_w.close()
        return 0

    def stop(self) -> None:
        """Finish what is held, accept nothing more, return from serve() (any thread)."""
        with contextlib.suppress(OSError):  # already stopped
            self.wake_w.send(b"s")

    def _woken(self) -> None:
        try:
            while self.wake_r.recv(64):
                pass
        except BlockingIOError:
            pass
        self._begin_stop("asked to stop")

    def _begin_stop(self, why: str) -> None:
        if not self.stopping:
            log.info("%s: finishing %d connection(s), accepting no more", why, len(self.conns))
        self.stopping = True
        self._listen(False)

    def _listen(self, on: bool) -> None:
        on = on and not self.stopping and len(self.conns) < self.limits.max_connections
        if on and not self.listening:
            self.sel.register(self.listener, selectors.EVENT_READ, None)
        elif not on and self.listening:
            self.sel.unregister(self.listener)
        self.listening = on

    def _timeout(self) -> float:
        now = self.clock()
        until = [self.next_tick]
        if self.turns:
            until.append(max(self.busy_until, now))
            until.extend(self.queue[uid][0].deadline for uid in self.turns)
        until.extend(c.started + self.limits.request_timeout for c in self.conns if c.reading)
        return max(0.0, min(until) - now)

    # connections ---------------------------------------------------------------------------

    def _moved(self) -> bool:
        """Whether the release link points elsewhere than at start (then it stops)."""
        if self.release is None or self.stopping:
            return False
        if os.path.realpath(self.release_link or "") == self.release:
            return False
        self._begin_stop(f"{self.release_link} no longer points at {self.release}")
        return True

    def _accept(self) -> None:
        # Before accepting: a connection left in the backlog is the new release's to serve.
        if self._moved():
            return
        while len(self.conns) < self.limits.max_connections:
            try:
                sock, _addr = self.listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:  # out of descriptors: the backlog keeps them for later
                log.warning("cannot accept: %s", exc)
                break
            sock.setblocking(False)
            try:
                pid, uid = peer.credentials(sock)
            except OSError:
                sock.close()
                continue
            if self.per_uid.get(uid, 0) >= self.limits.max_per_user:
                log.debug("uid %d: over %d connections, refused", uid, self.limits.max_per_user)
                _send(sock, protocol.answer(False, retry=True, message=(
                    f"uid {uid} has {self.limits.max_per_user} connections open already")))
                sock.close()
                continue
            conn = Conn(sock, pid, uid, self.clock())
            self.conns.add(conn)
            self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
            self.sel.register(sock, selectors.EVENT_READ, conn)
        self._listen(True)

    def _read(self, conn: Conn) -> None:
        room = protocol.MAX_HEADER + 1 + self.limits.max_input_bytes - len(conn.data)
        try:
            data, ancdata, flags, _ = conn.sock.recvmsg(
                min(RECV_SIZE, room + 1), socket.CMSG_SPACE(protocol.MAX_FDS * 4),
                socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        conn.fds.extend(peer.descriptors(ancdata))
        if len(conn.fds) > protocol.MAX_FDS or flags & socket.MSG_CTRUNC:
            conn.too_many_fds = True
        if not data:
            self._stop_reading(conn)
            self._complete(conn)
        elif len(data) > room:
            self._stop_reading(conn)
            self._answer(conn, False, retry=False, message=(
                f"request larger than {self.limits.max_input_bytes} bytes of event;"
                " not stored"))
        else:
            conn.data += data

    def _stop_reading(self, conn: Conn) -> None:
        if conn.reading:
            self.sel.unregister(conn.sock)
            conn.reading = False

    def _complete(self, conn: Conn) -> None:
        line, newline, body = bytes(conn.data).partition(b"\n")
        conn.data = bytearray()
        try:
            if not newline or len(line) > protocol.MAX_HEADER:
                raise protocol.ProtocolError("no header line")
            header = protocol.parse_header(line)
        except protocol.ProtocolError as exc:
            self._answer(conn, False, message=f"bad request: {exc}")
            return
        if header["kind"] == "ping":
            why = self.writer.ready()
            self._answer(conn, why is None, retry=why is not None, message=why)
            return
        if header.get("spool") is not None:
            self._keep_counts(conn.uid, header["spool"])
        if header["kind"] == "status":
            self._answer(conn, self.board is not None, message=(
                None if self.board is not None else "spool counts are not kept here"))
            return
        if conn.too_many_fds or len(conn.fds) != len(header["fds"]):
            self._answer(conn, False, message="bad request: the descriptors passed do not"
                         " match the header's fds")
            return
        if len(body) > self.limits.max_input_bytes:
            self._answer(conn, False, message=(
                f"event larger than {self.limits.max_input_bytes} bytes; not stored"))
            return
        try:
            conn.event = parse_event(body)
        except Rejected as exc:
            self._answer(conn, False, message=f"rejected event: {exc}")
            return
        for name, fd in zip(header["fds"], conn.fds, strict=True):
            why = peer.readable(fd, conn.uid)
            if why is None:
                conn.passed[name] = fd
            else:
                conn.notes.append(f"{name} passed {why}")
        now = self.clock()
        wanted = header.get("deadline_ns")
        deadline = now + self.limits.default_wait if wanted is None else wanted / 1e9
        conn.deadline = min(deadline, now + self.limits.max_wait)
        conn.header = header
        if conn.uid not in self.queue:
            self.queue[conn.uid] = deque()
            self.turns.append(conn.uid)
        self.queue[conn.uid].append(conn)

    def _keep_counts(self, uid: int, counts: tuple[int, int, int]) -> None:
        if self.board is None:
            return
        try:
            self.board.write(uid, *counts)
        except OSError as exc:
            log.warning("spool counts of uid %d not kept: %s", uid, exc)

    def _answer(self, conn: Conn, ok: bool, *, retry: bool = False,
                message: str | None = None) -> None:
        _send(conn.sock, protocol.answer(ok, retry=retry, message=message))
        self._close(conn)

    def _close(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self._stop_reading(conn)
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        conn.sock.close()
        self.conns.discard(conn)
        self.per_uid[conn.uid] -= 1
        if not self.per_uid[conn.uid]:
            del self.per_uid[conn.uid]
        self._listen(True)

    # storing -------------------------------------------------------------------------------

    def _dequeue(self, conn: Conn) -> None:
        waiting = self.queue[conn.uid]
        waiting.remove(conn)
        if waiting:
            if self.turns[0] == conn.uid:
                self.turns.rotate(-1)  # the next uid's turn
        else:
            del self.queue[conn.uid]
            self.turns.remove(conn.uid)

    def _work(self, now: float) -> None:
        until = now + WORK_SLICE
        while self.turns and self.clock() < until and self.clock() >= self.busy_until:
            conn = self.queue[self.turns[0]][0]
            if not self._attempt(conn):
                return

    def _attempt(self, conn: Conn) -> bool:
        """Try to store ``conn``'s event; False when the write lock is busy (it stays queued)."""
        if _hung_up(conn.sock):
            self._dequeue(conn)
            self._close(conn)
            return True

        def guard() -> None:
            if _hung_up(conn.sock):
                raise Abandoned
            if self.clock() > conn.deadline + COMMIT_GRACE:
                raise Late

        try:
            warning = self.writer.store(conn.event, uid=conn.uid, phase=conn.header.get("phase"),
                                        passed=conn.passed, guard=guard)
        except Busy:
            for waiting in self.queue.values():
                for held in waiting:
                    held.saw_lock_held = True
            self.busy_until = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return False
        except Abandoned:
            self._dequeue(conn)
            self._close(conn)
            return True
        except Late:
            self._dequeue(conn)
            self._answer(conn, False, retry=True, message=LATE)
            return True
        except NotNow as exc:
            self._dequeue(conn)
            self._fault(str(exc))
            self._answer(conn, False, retry=True, message=str(exc))
            return True
        except Exception as exc:  # a bug must not let one event stop everyone's recording
            log.exception("uid %d: event not stored", conn.uid)
            self.writer.close()
            self._dequeue(conn)
            self._answer(conn, False, message=f"internal error: {type(exc).__name__}: {exc}")
            return True
        self.backoff = BACKOFF_FIRST
        self.last_commit = self.clock()
        self.stored += 1
        self._fault(None)
        self._dequeue(conn)
        notes = [*conn.notes, *([warning] if warning else [])]
        self._answer(conn, True, message="; ".join(notes) or None)
        self.writer.checkpoint(idle=False)
        return True

    def _fault(self, message: str | None) -> None:
        """Log a change of the database's state once, not once per event."""
        if message != self.last_fault:
            if message is None:
                log.info("storing events again")
            else:
                log.warning("events not stored: %s", message)
        self.last_fault = message

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.conns if c.reading
                     and now > c.started + self.limits.request_timeout]:
            log.debug("uid %d pid %d: request not finished in time, cut", conn.uid, conn.pid)
            self._stop_reading(conn)
            self._answer(conn, False, retry=True, message="request not finished in time")
        for uid in list(self.turns):
            for conn in [c for c in self.queue[uid] if now > c.deadline
                         and (c.saw_lock_held or now > c.deadline + COMMIT_GRACE)]:
                self._dequeue(conn)
                self._answer(conn, False, retry=True, message=(
                    "database is locked (another writer holds it)" if conn.saw_lock_held
                    else LATE))

    def _idle(self, now: float) -> None:
        if now < self.next_tick:
            return
        self.next_tick = now + TICK
        if not self.turns and now - self.last_commit >= TICK:
            self.writer.checkpoint(idle=True)
        self._moved()


def _send(sock: socket.socket, data: bytes) -> None:
    """Send a short answer without waiting; a client that cannot take it has given up."""
    with contextlib.suppress(OSError):
        sock.send(data)


def _hung_up(sock: socket.socket) -> bool:
    """Whether the client closed its end entirely (a client waiting for its answer has shut
    down only its sending side)."""
    poller = select.poll()
    poller.register(sock, 0)
    return any(mask & (select.POLLHUP | select.POLLERR) for _fd, mask in poller.poll(0))
