"""Rows of ``agent_usage`` (schema step "usage"): tokens, lines changed, API errors, denials.

Each row is one fact with a unique ``dedup_key``, looked up before it is inserted, so a fact
seen twice (a repeated event, a transcript read again after a rewrite) is counted once.

Transcripts are JSON lines the user's own Claude Code writes; the hook reads one from the offset
stored in ``agentmon_transcripts``, at most ``budget`` bytes per event (the rest at the next
event), line by line (a line longer than ``MAX_LINE`` is skipped, never held). Only a regular
file owned by the event's user is read (``agentmon.hook.transcripts``): the hook opens the path
without following a link; the ingest service reads only a file descriptor its peer passed, never
a path. So a path in an event cannot make either read someone else's file or block on a FIFO.
An assistant message that
Claude Code wrote over several lines (one per content block, same ``message.id`` and
``requestId``) is one fact; its line with the most output tokens is kept.
"""

from __future__ import annotations

import hashlib
import json
import os

from agentmon.hook import transcripts

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from typing import Any

TOKENS = "tokens"
API_ERROR = "api_error"
PERMISSION_DENIED = "permission_denied"
# usage field in Claude Code / the Messages API -> agent_usage column
TOKEN_FIELDS = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                ("cache_read_input_tokens", "cache_read_tokens"),
                ("cache_creation_input_tokens", "cache_creation_tokens"))
MAX_COUNT = 2**53
MAX_LINE = 8 * 1024 * 1024
CHUNK = 1024 * 1024
HEAD_BYTES = 4096
DEFAULT_BUDGET = 64 * 1024 * 1024  # ~0.4 s of reading (bench/bench_transcript.py)


def count(value: Any) -> int:
    """A token or line count as an int: a non-negative integer, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not value.is_integer():
        return 0
    number = int(value)
    return number if 0 <= number <= MAX_COUNT else 0


def tokens(usage: Any) -> dict[str, int] | None:
    """The four token counts of a ``usage`` object, or None when it is not one."""
    if not isinstance(usage, dict):
        return None
    return {column: count(usage.get(name)) for name, column in TOKEN_FIELDS}


def record(conn: sqlite3.Connection, key: str, row: dict[str, Any]) -> bool:
    """Insert one fact unless its key is known; True when it was new."""
    if conn.execute("SELECT 1 FROM agent_usage WHERE dedup_key = ?", (key,)).fetchone():
        return False
    row = {**row, "dedup_key": key}
    conn.execute(
        f"INSERT INTO agent_usage ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608 - fixed names
        tuple(row.values()))
    return True


def lines(handle: Any, offset: int, budget: int) -> Any:
    """(offset after it, line) for each complete line from ``offset``, while fewer than
    ``budget`` bytes were read. An overlong line is skipped (yielded as None); an unfinished
    last line is left for the next read."""
    handle.seek(offset)
    start = offset
    while offset - start < budget:
        line = handle.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            if len(line) <= MAX_LINE:
                return  # end of file inside a line that is still being written
            skipped = len(line)
            while not line.endswith(b"\n"):
                line = handle.readline(CHUNK)
                if not line:
                    return
                skipped += len(line)
            offset += skipped
            yield offset, None
            continue
        offset += len(line)
        yield offset, line


def messages(handle: Any, offset: int, budget: int, *,
             sidechain: bool) -> tuple[int, dict[str, tuple[str | None, dict[str, int]]]]:
    """The assistant messages' usage from ``offset``: (new offset, key -> (model, tokens)).

    ``sidechain`` False skips lines of subagents (``isSidechain``) in a main transcript."""
    found: dict[str, tuple[str | None, dict[str, int]]] = {}
    end = offset
    for end, line in lines(handle, offset, budget):  # noqa: B007 - end is the result
        if line is None or b'"usage"' not in line or b'"assistant"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") != "assistant":
            continue
        if not sidechain and entry.get("isSidechain") is True:
            continue
        message = entry.get("message")
        if not isinstance(message, dict):
            continue
        counted = tokens(message.get("usage"))
        if counted is None:
            continue
        mid, rid = message.get("id"), entry.get("requestId")
        key = f"msg:{mid}:{rid}" if isinstance(mid, str) else "line:" + hashlib.blake2b(
            line, digest_size=12).hexdigest()
        model = message.get("model")
        previous = found.get(key)
        if previous is None or counted["output_tokens"] >= previous[1]["output_tokens"]:
            found[key] = (model if isinstance(model, str) else None, counted)
    return end, found


def head_digest(handle: Any, size: int) -> str:
    """A digest of the first bytes (up to ``size``): tells a rewritten file from a grown one."""
    handle.seek(0)
    return hashlib.blake2b(handle.read(min(size, HEAD_BYTES)), digest_size=12).hexdigest()


def read_transcript(conn: sqlite3.Connection, path: str, *, budget: int, sidechain: bool,
                    row: Callable[[str | None, dict[str, int]], dict[str, Any]],
                    fd: int | None = None, uid: int | None = None) -> int:
    """Record the new assistant messages of the transcript at ``path``; returns how many.

    With ``fd`` (the ingest service: a descriptor its peer ``uid`` opened and passed) that file
    is read and ``path`` only names it; without, ``path`` is opened as this process's user. The
    stored offset is used while the file is the same one (device, inode, its first bytes) and
    not shorter; otherwise (rewritten, truncated, replaced) it is read from the start, and the
    dedup keys keep what was counted from being counted again."""
    if fd is None:
        fd, closefd = transcripts.open_own(path), True
    else:
        closefd = False  # the caller's: it closes every descriptor it was passed
    info = transcripts.check(fd, os.geteuid() if uid is None else uid)
    with os.fdopen(fd, "rb", buffering=CHUNK, closefd=closefd) as handle:
        stored = conn.execute("SELECT device, inode, offset, head FROM agentmon_transcripts"
                              " WHERE path = ?", (path,)).fetchone()
        offset = 0
        if stored is not None and (stored[0], stored[1]) == (info.st_dev, info.st_ino) \
                and isinstance(stored[2], int) and 0 <= stored[2] <= info.st_size \
                and head_digest(handle, stored[2]) == stored[3]:
            offset = stored[2]
        end, found = messages(handle, offset, budget, sidechain=sidechain)
        head = head_digest(handle, end)
    new = 0
    for key, (model, counted) in found.items():
        new += record(conn, key, row(model, counted))
    conn.execute(
        "INSERT INTO agentmon_transcripts (path, device, inode, offset, head)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET device = excluded.device, inode = excluded.inode,"
        " offset = excluded.offset, head = excluded.head",
        (path, info.st_dev, info.st_ino, end, head))
    return new
