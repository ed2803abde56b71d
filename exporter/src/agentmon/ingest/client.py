"""One exchange with the ingest socket: connect, send a request (and descriptors), read the answer.

Uses ``_socket``, not ``socket``: the hook runs once per event, and ``socket`` costs it a few
milliseconds of imports (``enum``, ``selectors``) it does not need.
"""

from __future__ import annotations

import _socket
import sys
import time

from agentmon.ingest import protocol

CHUNK = 256 * 1024


class Unreachable(OSError):
    """The socket could not be reached, or closed without a whole answer."""


def exchange(path: str, request: bytes, fds: list[int] | tuple[int, ...] = (),
             timeout: float = 15.0) -> tuple[bool, bool, str | None]:
    """Send ``request`` (header line and body) with ``fds``; the answer (ok, retry, message).

    Raises Unreachable when the service cannot be reached or gives no answer within ``timeout``
    seconds in all: nothing is known to be stored then.
    """
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(exc.errno, f"cannot connect to {path}: {exc.strerror or exc}") \
                from None
        try:
            _send(sock, request, fds)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything: its answer says why
        except OSError as exc:
            raise Unreachable(exc.errno, f"{path}: sending failed: {exc.strerror or exc}") \
                from None
        data = _receive(sock, path, deadline)
    finally:
        sock.close()
    try:
        return protocol.parse_answer(data)
    except protocol.ProtocolError as exc:
        raise Unreachable(f"{path}: {exc}") from None


def ping(path: str, timeout: float = 1.0) -> str | None:
    """None when the service at ``path`` says it can store events now; else why not."""
    try:
        ok, _retry, message = exchange(path, protocol.header("ping"), timeout=timeout)
    except Unreachable as exc:
        return str(exc)
    return None if ok else message or "not ready"


def _send(sock: _socket.socket, request: bytes, fds: list[int] | tuple[int, ...]) -> None:
    view = memoryview(request)
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([view[:CHUNK]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        view = view[sent:]
    while view:
        view = view[sock.send(view[:CHUNK]):]
    sock.shutdown(_socket.SHUT_WR)


def _receive(sock: _socket.socket, path: str, deadline: float) -> bytes:
    data = b""
    while len(data) <= protocol.MAX_ANSWER:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            more = sock.recv(protocol.MAX_ANSWER + 1)
        except TimeoutError:
            raise Unreachable(f"{path}: no answer in time") from None
        except OSError as exc:
            if data.endswith(b"\n"):
                break
            raise Unreachable(exc.errno, f"{path}: {exc.strerror or exc}") from None
        if not more:
            break
        data += more
    if not data.endswith(b"\n"):
        raise Unreachable(f"{path}: closed without an answer")
    return data
