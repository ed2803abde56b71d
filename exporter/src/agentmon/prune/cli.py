"""``agentmon prune``: the command line over ``agentmon.prune.core``."""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import stat
import sys
import time
from pathlib import Path

from agentmon.prune import space
from agentmon.prune.core import PruneError, Pruner, Result, check_schema, cutoff_julian
from agentmon.schema.db import DEFAULT_BUSY_TIMEOUT_MS, connect_writer

UNITS = {"h": 3600, "d": 86400}
SIZES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
PROGRESS_EVERY = 5.0  # seconds between progress lines


def age(text: str) -> float:
    match = re.fullmatch(r"(\d+)([dh])", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90d or 36h")
    return int(match.group(1)) * UNITS[match.group(2)]


def size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMGT]?)", text.upper())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 500M or 2G")
    return int(match.group(1)) * SIZES[match.group(2)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon prune",
        description="Remove finished invocations, tool uses and completed sessions older than "
        "a retention, in short write transactions; never a running row, never a session with "
        "running work. Their numbers stay in the exported counters (schema step 'pruned').",
    )
    parser.add_argument("--db", required=True, help="path to agent_workflow.db")
    parser.add_argument("--older-than", required=True, type=age, metavar="AGE",
                        help="retention: an age in days or hours (90d, 36h)")
    parser.add_argument("--max-size", type=size, default=None, metavar="SIZE",
                        help="then remove the oldest finished rows of any age until the data "
                        "in use fits SIZE (500M, 2G)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would be removed, change nothing")
    parser.add_argument("--reclaim", action="store_true",
                        help="switch the file to incremental vacuum once (a full VACUUM that "
                        "needs twice the data in free disk), so pruned space is given back")
    parser.add_argument("--batch", type=int, default=500, metavar="N",
                        help="rows looked at per write transaction (default 500: a few tens of"
                        " milliseconds of write lock)")
    parser.add_argument("--busy-timeout-ms", type=int, default=DEFAULT_BUSY_TIMEOUT_MS,
                        metavar="MS", help="wait this long for the write lock (the hook's)")
    return parser


def open_db(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """The existing database for writing; PruneError for anything that is not one."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PruneError(f"cannot open {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PruneError(f"cannot open {path}: not a regular file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise PruneError(f"cannot open {path}: permission denied")
    conn = connect_writer(path, busy_timeout_ms, nofollow=True)
    check_schema(conn, path)
    return conn


class Progress:
    def __init__(self) -> None:
        self.next = time.monotonic() + PROGRESS_EVERY

    def __call__(self, result: Result) -> None:
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + PROGRESS_EVERY
            print(f"agentmon prune: {_counts(result)} so far ({result.batches} batches)",
                  file=sys.stderr, flush=True)


def _counts(result: Result) -> str:
    return ", ".join(f"{n} {table}" for table, n in result.removed.items())


def describe(exc: BaseException, path: Path) -> str:
    text = str(exc)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "full" in text or _no_space(path):
        return (f"{path}: the disk is full ({text}); the batch in progress was rolled back,"
                " nothing was lost")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return f"{path}: {text} (another writer held the lock past the busy timeout)"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        return f"cannot open {path}: {text}"
    return f"{path}: {text}"


def _no_space(path: Path) -> bool:
    # SQLite reports a -wal or -shm it cannot grow as a disk I/O error
    try:
        return os.statvfs(path.absolute().parent).f_bavail == 0
    except OSError:
        return False


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.db)
    try:
        conn = open_db(path, args.busy_timeout_ms)
        try:
            result = run(conn, path, args)
        finally:
            conn.close()
    except PruneError as exc:
        print(f"agentmon prune: error: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.Error, OSError, ValueError) as exc:
        print(f"agentmon prune: error: {describe(exc, path)}", file=sys.stderr)
        return 1
    verb = "would remove" if result.dry_run else "removed"
    print(f"{path}: {verb} {_counts(result)} older than {args.older_than / 3600:g} h"
          f" in {result.seconds:.2f} s ({result.batches} batches); file"
          f" {result.size_before} -> {result.size_after} bytes{_wal_note(path)}")
    return 0


def _wal_note(path: Path) -> str:
    # Sizes count the WAL: readers (the exporter, hooks) can keep the final checkpoint from
    # truncating it, and "after" may then exceed "before" until a later checkpoint.
    wal = space.wal_bytes(path)
    return f" (of which WAL {wal}: truncated at a later checkpoint)" if wal else ""


def run(conn: sqlite3.Connection, path: Path, args: argparse.Namespace) -> Result:
    size_before = space.file_bytes(path)
    pruner = Pruner(conn, cutoff_julian(args.older_than), batch=args.batch,
                    dry_run=args.dry_run, progress=Progress())
    result = pruner.run(args.max_size)
    # after the prune: the one-off VACUUM then copies only what is left
    if not args.dry_run and not (args.reclaim and space.switch_to_incremental(conn, path)):
        space.free_pages_back(conn)
    result.size_before, result.size_after = size_before, space.file_bytes(path)
    return result
