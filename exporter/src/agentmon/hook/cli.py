"""``agentmon hook``: log one Claude Code hook event (JSON on stdin).

With ``--socket`` (what the roles register) the event goes to the ingest service
(``agentmon ingest``), the database's one writer, through its local socket
(``agentmon.hook.forward``); the hook never opens the database then. Without it the hook writes
a database it may write itself (``--db``, by default one in the user's home).

Claude Code starts this command once per event, so the path here is kept lean: no argparse,
no jsonschema (``agentmon.hook.validate`` interprets the packaged schema), no SQLite on the
socket's path, and the migration code is imported only when a database it writes directly is
not at the current schema version.

The exit code is 0 for every input and every fault: exit 2 would block the agent's tool call
and any other code shows an error to the user. Problems are reported as exactly one line on
stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import sys

from agentmon.schema.files import SIDE_FILES

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any

# Must equal agentmon.schema.migrations.LATEST (a test checks it). Importing the migration machinery
# costs more than the whole budget of a hook process, so it is imported only when needed.
SCHEMA_VERSION = 8

DEFAULT_DB = "~/.local/share/agentmon/agent_workflow.db"
DEFAULT_MAX_INPUT_BYTES = 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024
DEFAULT_BUSY_TIMEOUT_MS = 15_000
DEFAULT_INTERRUPT_AFTER_SECONDS = 86_400
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized event is scanned up to this size, then refused
PREFIX = "agentmon hook: "

HELP = f"""\
usage: agentmon hook [--socket PATH | --db PATH] [--max-input-bytes N] [--max-payload-bytes N]
                     [--busy-timeout-ms N] [--interrupt-after-seconds N]

Read one Claude Code hook event (a JSON object) from stdin, validate it against the schema
shipped with agentmon and record it: through the ingest service's socket (agentmon ingest,
the database's writer) or, without --socket, in a SQLite database this user may write. An event
that cannot be stored now waits in the user's private spool and is stored by a later run. The
exit code is always 0, even for rejected input or an unavailable database (exit 2 would block
the agent); problems are reported as one line on stderr.

options:
  --socket PATH          the ingest service's socket (env AGENTMON_SOCKET); the hook opens no
                         database, the transcripts it passes as descriptors
  --db PATH              without --socket: the database file to write (env AGENTMON_DB,
                         default {DEFAULT_DB})
  --max-input-bytes N    hold at most N bytes of an event (env AGENTMON_MAX_INPUT_BYTES,
                         default {DEFAULT_MAX_INPUT_BYTES}); a larger event is streamed: its
                         ids are recorded, its large values cut or dropped with a marker
  --max-payload-bytes N  --db: cut each stored JSON payload or text to N bytes, with a visible
                         [TRUNCATED ...] marker (env AGENTMON_MAX_PAYLOAD_BYTES, default
                         {DEFAULT_MAX_PAYLOAD_BYTES}, minimum 256); with --socket the service's
  --busy-timeout-ms N    wait at most N ms for the event to be stored (the service's answer, or
                         other writers of --db) before spooling it (env AGENTMON_BUSY_TIMEOUT_MS,
                         default {DEFAULT_BUSY_TIMEOUT_MS})
  --interrupt-after-seconds N
                         --db: at SessionStart / SessionEnd of any session, rows still running
                         after N seconds become 'interrupted' (env
                         AGENTMON_INTERRUPT_AFTER_SECONDS, default
                         {DEFAULT_INTERRUPT_AFTER_SECONDS}; 0: never); with --socket the
                         service's. Rows of a session that ends become 'interrupted' in any
                         case.
  -h, --help             show this help and exit

environment: AGENTMON_PHASE sets the phase recorded on agent invocations.
"""

_OPTIONS = {
    "--socket": "AGENTMON_SOCKET",
    "--db": "AGENTMON_DB",
    "--max-input-bytes": "AGENTMON_MAX_INPUT_BYTES",
    "--max-payload-bytes": "AGENTMON_MAX_PAYLOAD_BYTES",
    "--busy-timeout-ms": "AGENTMON_BUSY_TIMEOUT_MS",
    "--interrupt-after-seconds": "AGENTMON_INTERRUPT_AFTER_SECONDS",
}
_MINIMUM = {"--max-input-bytes": 1, "--max-payload-bytes": 256, "--busy-timeout-ms": 0,
            "--interrupt-after-seconds": 0}
_DEFAULTS = {
    "--max-input-bytes": DEFAULT_MAX_INPUT_BYTES,
    "--max-payload-bytes": DEFAULT_MAX_PAYLOAD_BYTES,
    "--busy-timeout-ms": DEFAULT_BUSY_TIMEOUT_MS,
    "--interrupt-after-seconds": DEFAULT_INTERRUPT_AFTER_SECONDS,
}


class Rejected(Exception):
    """The input is not a valid hook event."""


class BadConfig(Exception):
    """The command line or environment is wrong."""


class Unsafe(OSError):
    """The database path (or a file SQLite keeps beside it) is a link or not a regular file."""


def one_line(text: str, limit: int = 400) -> str:
    """Make a message printable on one terminal line: no control characters, bounded."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def default_db(env: Mapping[str, str]) -> str | None:
    """~/.local/share/agentmon/agent_workflow.db, or None when there is no home folder."""
    home = env.get("HOME") or os.path.expanduser("~")
    if not home or home == "~":
        return None
    return os.path.join(home, DEFAULT_DB.removeprefix("~/"))


def parse_args(argv: list[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """Options from argv, then the environment, then defaults; None when help was asked."""
    given: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            return None
        name, sep, value = arg.partition("=")
        if name not in _OPTIONS:
            raise BadConfig(f"unknown argument {arg!r} (see agentmon hook --help)")
        if not sep:
            if not args:
                raise BadConfig(f"{name} needs a value")
            value = args.pop(0)
        given[name] = value
    config: dict[str, Any] = {}
    for name, variable in _OPTIONS.items():
        raw = given.get(name, env.get(variable) or None)
        if name == "--socket":
            config["socket"] = raw
            if raw is not None and "--db" in given:
                raise BadConfig("give --socket or --db, not both")
            continue
        if name == "--db":
            config["db"] = raw or default_db(env)
            continue
        if raw is None:
            config[name] = _DEFAULTS[name]
            continue
        source = name if name in given else variable
        try:
            number = int(raw)
        except ValueError:
            raise BadConfig(f"{source} must be an integer, not {raw!r}") from None
        if number < _MINIMUM[name]:
            raise BadConfig(f"{source} must be at least {_MINIMUM[name]}")
        config[name] = number
    config["phase"] = env.get("AGENTMON_PHASE") or None
    return config


def read_input(stream: IO[bytes] | None, limit: int) -> bytes:
    """At most ``limit`` bytes of stdin; raises Oversized (holding them) when there is more."""
    if stream is None:
        raise Rejected("no stdin")
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise Oversized(data, stream)
    if not data.strip():
        raise Rejected("empty input")
    return data


class Oversized(Exception):
    """The event is larger than --max-input-bytes: its first bytes and the unread rest."""

    def __init__(self, first: bytes, rest: IO[bytes]) -> None:
        super().__init__("oversized")
        self.first = first
        self.rest = rest


def read_event(stream: IO[bytes] | None,
               config: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The validated event on stdin and its bytes (what is sent or spooled); an oversized one
    with its large values cut or dropped, its bytes those of the cut event."""
    limit = config["--max-input-bytes"]
    try:
        data = read_input(stream, limit)
        return parse_event(data), data
    except Oversized as big:
        first, rest = big.first, big.rest
    from agentmon.hook import oversize
    from agentmon.hook.validate import validate

    try:
        event, _size = oversize.scan(
            first, rest, keep=config["--max-payload-bytes"], read_limit=DRAIN_LIMIT,
            marker=f"event over --max-input-bytes {limit}, value cut or dropped")
    except OverflowError:
        raise Rejected(f"input larger than {DRAIN_LIMIT} bytes, not recorded") from None
    except oversize.Malformed as exc:
        raise Rejected(f"input larger than {limit} bytes and not a JSON object: {exc}") from None
    finally:
        del first
    problem = validate(event)
    if problem:
        raise Rejected(problem)
    return event, json.dumps(event, separators=(",", ":")).encode("ascii")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:20]} is out of range")
    return number


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")


def parse_event(data: bytes) -> dict[str, Any]:
    """Decode and validate one event; raises Rejected with a one-line reason."""
    from agentmon.hook.validate import validate

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"input is not valid UTF-8 (byte {exc.start})") from None
    try:
        event = json.loads(text.removeprefix("\ufeff"), parse_float=_finite_float,
                           parse_constant=_no_constants)
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise Rejected(f"invalid JSON: {exc}") from None
    problem = validate(event)
    if problem:
        raise Rejected(problem)
    return dict(event)


def refuse_links(path: str) -> None:
    """Raise Unsafe when the database path or a file SQLite keeps beside it is a link.

    Anyone who may write the data folder could plant one, to make a hook user's process write
    (and SQLite create or truncate) a file elsewhere.
    """
    for name in (path, *(path + suffix for suffix in SIDE_FILES)):
        try:
            mode = os.lstat(name).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise Unsafe(f"{name} is a symbolic link; refusing to follow it")


def remove_planted_links(path: str) -> list[str]:
    """Unlink symbolic links planted at SQLite's files beside the database; their names.

    A member of the hook group could otherwise stop everyone's recording with one link (each
    hook would refuse the database). Only the link goes, never what it points to; a link that
    cannot be removed (a sticky folder, another owner) is left for refuse_links to refuse.
    """
    folder, base = os.path.split(path)
    try:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    removed = []
    try:
        for suffix in SIDE_FILES:
            try:
                if stat.S_ISLNK(os.lstat(base + suffix, dir_fd=fd).st_mode):
                    os.unlink(base + suffix, dir_fd=fd)
                    removed.append(path + suffix)
            except OSError:
                continue
    finally:
        os.close(fd)
    return removed


def open_database_file(path: str) -> os.stat_result:
    """Create (mode 0666 & ~umask) or open the database file without following a link.

    Returns its identity, for the caller to compare with the path once SQLite has opened it.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise Unsafe(f"{path} is a symbolic link; refusing to follow it") from None
        raise exc from None
    try:
        opened = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(opened.st_mode):
        raise Unsafe(f"{path} is not a regular file")
    return opened


def store(event: dict[str, Any], config: dict[str, Any],
          env: Mapping[str, str] | None = None) -> str | None:
    """Write one validated event to ``--db``. Raises sqlite3.Error / OSError when it fails.

    With ``env``, events of this user spooled by earlier runs are written first. Returns a
    warning to print (links planted beside the database removed, a transcript not read).
    """
    from agentmon.hook.store import Store
    from agentmon.schema.db import connect_writer

    path = os.path.abspath(config["db"])
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent) and not os.path.exists(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    removed = remove_planted_links(path)
    refuse_links(path)
    # SQLite creates files 0644 whatever the umask; create it first so the group may write
    # (the -wal and -shm files copy the database file's mode).
    opened = open_database_file(path)
    conn = connect_writer(path, busy_timeout_ms=config["--busy-timeout-ms"], nofollow=True)
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise Unsafe(f"{path} was replaced while it was being opened")
        refuse_links(path)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            # Refused at once: no backup, no lock (a newer agentmon writes this file).
            raise ValueError(f"database is at schema version {version}, newer than this"
                             f" agentmon knows ({SCHEMA_VERSION}); event not recorded")
        if version != SCHEMA_VERSION:
            from agentmon.schema.migrate import ensure_latest

            ensure_latest(conn, path)
        recorder = Store(conn, max_payload_bytes=config["--max-payload-bytes"],
                         phase=config["phase"], interrupt_after=config["--interrupt-after-seconds"])
        if env is not None:  # the older events first: they keep their order
            _drain(recorder.record, env)
        recorder.record(event)
    finally:
        conn.close()
    warnings = [recorder.warning] if recorder.warning else []
    if removed:
        warnings.insert(0, f"removed planted symbolic link(s) {', '.join(removed)}; event recorded")
    return "; ".join(warnings) or None


def _drain(record: Any, env: Mapping[str, str]) -> None:
    """Write the spooled events; a failure leaves them for the next run."""
    import sqlite3

    from agentmon.hook import spool

    def one(event: dict[str, Any], _data: bytes) -> None:
        try:
            record(event)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise spool.Unavailable(str(exc)) from None

    with contextlib.suppress(OSError):
        spool.drain_into(one, env)


def run(argv: list[str], stdin: IO[bytes] | None, stdout: IO[str] | None,
        stderr: IO[str] | None, env: Mapping[str, str]) -> int:
    """The whole command with its streams and environment passed in. Always returns 0."""
    old_umask = os.umask(0o007)  # the data folder is shared by a group: keep files group-rw
    try:
        message = _run(argv, stdin, stdout, env)
    except BaseException as exc:  # a hook must never fail the agent, whatever happened
        message = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        os.umask(old_umask)
    if message and stderr is not None:
        try:
            stderr.write(PREFIX + one_line(message) + "\n")
            stderr.flush()
        except (OSError, ValueError):
            pass  # stderr closed: nothing left to tell anyone
    return 0


def _run(argv: list[str], stdin: IO[bytes] | None, stdout: IO[str] | None,
         env: Mapping[str, str]) -> str | None:
    try:
        config = parse_args(argv, env)
    except BadConfig as exc:
        return f"bad arguments: {exc}"
    if config is None:
        if stdout is not None:
            stdout.write(HELP)
            stdout.flush()
        return None
    try:
        event, data = read_event(stdin, config)
    except Rejected as exc:
        return f"rejected event: {exc}"
    except OSError as exc:
        return f"rejected event: cannot read stdin: {exc}"
    if config["socket"] is not None:
        from agentmon.hook.forward import forward

        return forward(event, data, config, env)
    if config["db"] is None:
        return "database unavailable: no home folder to put the database in; use --db"
    import sqlite3  # only here: the socket's path never loads it

    try:
        return store(event, config, env)
    except (sqlite3.Error, OSError, ValueError, RuntimeError) as exc:
        # ValueError: schema newer than this agentmon; RuntimeError: pre-migration backup failed
        from agentmon.hook import spool

        kept, _counts = spool.keep(data, env)
        return f"database unavailable: {config['db']}: {exc}; {kept}"


def main(argv: list[str]) -> int:
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    return run(argv, stdin, sys.stdout, sys.stderr, os.environ)
