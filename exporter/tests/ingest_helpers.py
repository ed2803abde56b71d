"""The ingest service for tests: in a thread of the test process (real socket, real SQLite,
real descriptors), or as its own process as systemd runs it; and raw clients."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmon.ingest import client, protocol
from agentmon.ingest.cli import bind
from agentmon.ingest.server import Limits, Server
from agentmon.ingest.writer import Writer
from agentmon.spoolstatus import Board, status_dir

AGENTMON = Path(sys.executable).with_name("agentmon")
WAIT = 60.0  # a failure guard, never a measurement


def short_dir() -> Path:
    """A folder for sockets: a Unix socket's path must stay under 108 bytes, pytest's are long.
    0755, so that other uids (setpriv tests) may reach a socket in it."""
    folder = Path(tempfile.mkdtemp(prefix="am-"))
    folder.chmod(0o755)
    return folder


@dataclass
class Running:
    socket: Path
    server: Server

    def argv(self) -> list[str]:
        """The hook's options to use it."""
        return ["--socket", str(self.socket)]


@contextmanager
def running(db: Path, counts: bool = True, **limits: Any) -> Iterator[Running]:
    """``agentmon ingest`` for ``db`` in a thread, on a socket of its own; without ``counts``
    it keeps no spool counts (as when its folder is refused)."""
    folder = short_dir()
    path = folder / "ingest.sock"
    listener = bind(str(path))
    writer = Writer(str(db), max_payload_bytes=16 * 1024, interrupt_after=86_400)
    board = Board(status_dir(str(db))) if counts else None
    server = Server(listener, writer, board, Limits(**limits))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield Running(path, server)
    finally:
        server.stop()
        thread.join(WAIT)
        assert not thread.is_alive(), "the ingest service did not stop"
        writer.close()
        if board is not None:
            board.close()
        listener.close()
        shutil.rmtree(folder)


@contextmanager
def process(db: Path, *options: str, sock: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """``agentmon ingest`` as its own process on ``sock``; stopped (SIGTERM) at the end."""
    path = sock or short_dir() / "ingest.sock"
    proc = subprocess.Popen(
        [str(AGENTMON), "ingest", "--db", str(db), "--socket", str(path), *options],
        stderr=subprocess.PIPE, text=True)
    try:
        ready(path, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(WAIT)


def ready(path: Path, proc: subprocess.Popen[str] | None = None) -> None:
    """Wait until the service at ``path`` answers a ping (whatever it says)."""
    import time

    deadline = time.monotonic() + WAIT
    while True:
        try:
            client.exchange(str(path), protocol.header("ping"), timeout=5)
            return
        except client.Unreachable:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"agentmon ingest exited: {proc.stderr.read()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def request(path: Path, data: bytes, fds: list[int] | None = None,
            timeout: float = WAIT) -> tuple[bool, bool, str | None]:
    """One raw request, as any local program (not only the hook) may send."""
    return client.exchange(str(path), data, fds or [], timeout=timeout)


def request_passing(path: Path, data: bytes, passed: Path,
                    flags: int = os.O_RDONLY) -> tuple[bool, bool, str | None]:
    """One raw request passing a descriptor of ``passed`` (opened here, closed after)."""
    fd = os.open(passed, flags)
    try:
        return request(path, data, [fd])
    finally:
        os.close(fd)


def event_request(event: dict[str, Any], fields: tuple[str, ...] = (), **header: Any) -> bytes:
    return protocol.header("event", fds=fields, **header) + json.dumps(event).encode()


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(str(path))
    return sock


def as_user(uid: int, code: str, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run python ``code`` as ``uid`` (needs root and setpriv)."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
         "-c", code, *args], capture_output=True, text=True, timeout=WAIT, check=False,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})})


def can_switch_users() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None
