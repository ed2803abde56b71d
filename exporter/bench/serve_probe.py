"""`agentmon serve` of any revision, with counters of the work its process does (bench_attack).

    python serve_probe.py FD serve ARGS...

runs ``agentmon.cli`` (whatever ``agentmon`` PYTHONPATH finds, so the server of another git
revision too) after wrapping the library calls every version of the server makes for each unit
of work: ``socket.accept`` (a connection), ``ssl.SSLContext.wrap_bio`` (a TLS handshake
begun), ``ssl.SSLObject.do_handshake`` (its CPU, every call; a handshake completed when it
returns), ``bcrypt.checkpw`` (a password check),
``ssl.SSLObject.write`` (a response, counted by the status in its first bytes), and the cycle
collector's runs (``gc.callbacks``). CPU is the calling thread's (``time.thread_time``), so the
bcrypt thread's checks and the event loop's handshakes are told apart. FD is a socket: each
byte received on it is answered with one JSON line of the counters and the process's CPU
time, so the bench reads them at the start and end of a phase, not at exit.

The wrappers cost a few microseconds a call, the same for every server they measure.
"""

from __future__ import annotations

import gc
import json
import runpy
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import bcrypt

COUNTS: dict[str, float] = dict.fromkeys((
    "accepted", "tls_begun", "handshakes", "handshake_cpu_s", "bcrypt", "bcrypt_cpu_s",
    "responses",
    "gc_runs", "gc_full_runs", "gc_s"), 0)
STATUSES: dict[str, int] = {}
_LOCK = threading.Lock()  # the bcrypt thread and the event loop both count


def _add(key: str, value: float) -> None:
    with _LOCK:
        COUNTS[key] += value


def _timed(call: Callable[..., Any], count: str | None, cpu: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            result = call(*args, **kwargs)
        finally:
            _add(cpu, time.thread_time() - start)
        if count:
            _add(count, 1)
        return result
    return wrapper


def _install() -> None:
    accept = socket.socket.accept

    def counted_accept(self: socket.socket) -> Any:
        result = accept(self)
        _add("accepted", 1)
        return result

    socket.socket.accept = counted_accept  # type: ignore[method-assign]
    wrap_bio = ssl.SSLContext.wrap_bio

    def counted_wrap_bio(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        _add("tls_begun", 1)
        return wrap_bio(self, *args, **kwargs)

    ssl.SSLContext.wrap_bio = counted_wrap_bio  # type: ignore[method-assign]
    ssl.SSLObject.do_handshake = _timed(  # type: ignore[method-assign]
        ssl.SSLObject.do_handshake, "handshakes", "handshake_cpu_s")
    bcrypt.checkpw = _timed(bcrypt.checkpw, "bcrypt", "bcrypt_cpu_s")
    write = ssl.SSLObject.write

    def counted_write(self: ssl.SSLObject, data: bytes) -> int:
        if data[:5] == b"HTTP/":
            status = bytes(data[9:12]).decode("ascii", "replace")
            with _LOCK:
                COUNTS["responses"] += 1
                STATUSES[status] = STATUSES.get(status, 0) + 1
        return write(self, data)

    ssl.SSLObject.write = counted_write  # type: ignore[method-assign]
    started: list[float] = []

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:  # the collector holds the GIL: its wall time is its CPU time
            _add("gc_s", time.perf_counter() - started.pop())
            _add("gc_runs", 1)
            _add("gc_full_runs", info["generation"] == 2)

    gc.callbacks.append(collector)


def _answer(fd: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    with socket.socket(fileno=fd) as sock:
        while sock.recv(1):
            with _LOCK:
                snapshot = {**COUNTS, "statuses": dict(STATUSES), "cpu_s": time.process_time()}
            sock.sendall(json.dumps(snapshot).encode() + b"\n")


def main() -> None:
    fd = int(sys.argv[1])
    sys.argv = ["agentmon", *sys.argv[2:]]
    _install()
    threading.Thread(target=_answer, args=(fd,), daemon=True, name="probe").start()
    runpy.run_module("agentmon.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
