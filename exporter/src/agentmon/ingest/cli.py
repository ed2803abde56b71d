"""``agentmon ingest``: the database's one writer, behind a local socket.

Hooks (``agentmon hook --socket``) send it one event per connection; it knows each sender's uid
from the kernel, validates the event with the hook's own schema and size cap, stores it with
the hook's own store code, and answers, so the hook knows whether to keep the event in its
spool. It also keeps each user's spool counts for the exporter (``agentmon.spoolstatus``).

Run by systemd socket activation (``agentmon-ingest.socket`` passes the listening socket,
``LISTEN_FDS``), or, for tests and by hand, with ``--socket PATH`` (it binds the path itself).
SIGTERM/SIGINT finish what is held and exit 0. Faults a user can cause (bad flag, socket in
use) end with one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
from types import FrameType

from agentmon.hook.cli import (
    DEFAULT_INTERRUPT_AFTER_SECONDS,
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
)
from agentmon.ingest.server import Limits, Server
from agentmon.ingest.writer import Writer
from agentmon.spoolstatus import Board, status_dir

SD_LISTEN_FDS_START = 3
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
              "error": logging.ERROR}
log = logging.getLogger("agentmon.ingest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon ingest",
        description="Store the hooks' events (agentmon hook --socket) in the database, as its "
        "one writer, behind a local socket: systemd's (socket activation) or --socket's.")
    parser.add_argument("--db", required=True, help="the database file (it must exist, at the"
                        " schema version this agentmon writes: agentmon migrate)")
    parser.add_argument("--socket", default=None, metavar="PATH",
                        help="bind and listen on this path (mode 0666) when systemd passes no"
                        " socket")
    parser.add_argument("--spool-status-dir", default=None, metavar="PATH",
                        help="where each user's spool counts are kept for the exporter (default"
                        " spool-status beside the database)")
    parser.add_argument("--release-link", default=None, metavar="PATH",
                        help="exit (systemd starts the new release on the next connection) once"
                        " this link no longer points where it pointed at start")
    _int(parser, "--max-input-bytes", DEFAULT_MAX_INPUT_BYTES, 1,
         "largest event accepted, as agentmon hook's option of that name")
    _int(parser, "--max-payload-bytes", DEFAULT_MAX_PAYLOAD_BYTES, 256,
         "cut each stored JSON payload or text to N bytes")
    _int(parser, "--interrupt-after-seconds", DEFAULT_INTERRUPT_AFTER_SECONDS, 0,
         "at SessionStart / SessionEnd rows still running after N seconds become 'interrupted'"
         " (0: never)")
    _int(parser, "--request-timeout-ms", 5000, 1,
         "a client must send its whole request within N ms, or it is cut")
    _int(parser, "--max-connections", 64, 1, "connections held at once")
    _int(parser, "--max-connections-per-user", 16, 1, "connections of one uid held at once")
    _int(parser, "--max-wait-ms", 60_000, 0,
         "longest an event waits for the write lock, whatever its client asks")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=sorted(LOG_LEVELS), help="log level (default info)")
    return parser


def _int(parser: argparse.ArgumentParser, name: str, default: int, minimum: int,
         what: str) -> None:
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    parser.add_argument(name, type=number, default=default, metavar="N",
                        help=f"{what} (default {default})")


def systemd_socket(env: dict[str, str] | os._Environ[str]) -> socket.socket | None:
    """The listening socket systemd passed (LISTEN_FDS), or None."""
    if env.get("LISTEN_PID") != str(os.getpid()) or not env.get("LISTEN_FDS", "").isdigit():
        return None
    count = int(env["LISTEN_FDS"])
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if count != 1:
        raise ValueError(f"systemd passed {count} sockets; agentmon ingest listens on one")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ValueError("systemd passed a socket that is not a Unix stream socket")
    os.set_inheritable(sock.fileno(), False)
    return sock


def bind(path: str) -> socket.socket:
    """Listen on ``path`` (0666: any local user may connect). A socket file left by a service
    that is gone is replaced; anything else there, or a live service, is refused."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ValueError(f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale
            else:
                raise ValueError(f"{path}: another service listens there")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 - connecting is what every local user's hook must do
    sock.listen(socket.SOMAXCONN)
    return sock


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=LOG_LEVELS[args.log_level], stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    bound = None
    try:
        listener = systemd_socket(os.environ)
        if listener is None:
            if args.socket is None:
                raise ValueError("no socket: systemd passed none and --socket is not given")
            listener, bound = bind(args.socket), args.socket
    except (ValueError, OSError) as exc:
        print(f"agentmon ingest: error: {exc}", file=sys.stderr)
        return 1
    writer = Writer(args.db, max_payload_bytes=args.max_payload_bytes,
                    interrupt_after=args.interrupt_after_seconds or None)
    board = None
    folder = args.spool_status_dir or status_dir(args.db)
    try:
        board = Board(folder)
    except OSError as exc:
        log.warning("spool counts not kept (%s): %s", folder, exc)
    limits = Limits(max_input_bytes=args.max_input_bytes,
                    request_timeout=args.request_timeout_ms / 1000,
                    max_connections=args.max_connections,
                    max_per_user=args.max_connections_per_user,
                    max_wait=args.max_wait_ms / 1000)
    server = Server(listener, writer, board, limits, release_link=args.release_link)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    why = writer.ready()
    log.info("storing into %s%s", writer.path, f" once it can: {why}" if why else "")
    try:
        return server.serve()
    finally:
        log.info("stopped after %d event(s) stored", server.stored)
        writer.close()
        if board is not None:
            board.close()
        listener.close()
        if bound is not None:
            with contextlib.suppress(OSError):
                os.unlink(bound)
