"""Counts of each user's spool, where the exporter can read them: ``<data folder>/spool-status``.

A user's spool (``agentmon.hook.spool``) is private (0700), so the exporter cannot look inside.
Each hook run that spools or drains therefore leaves a counts-only status file in a folder the
``agentmon_db`` role creates beside the database (``spool-status``: sticky and setgid, writable
by the hook group): ``waiting N``, ``dropped N`` (ever), ``oldest T`` (Unix time of the oldest
waiting event; 0 when none waits). Nothing else: no user name, path or event.

- writing (the hook, under its spool's lock): a new file ``<uid>.<random>`` (0640) through a
  temp file ``O_CREAT|O_EXCL|O_NOFOLLOW`` and a rename, then the user's older files removed. A
  random name, never a fixed one, so another member cannot block a user's status by planting
  its name first; the sticky bit keeps others from removing or replacing it.
- reading (the exporter): only files named ``<uid>.<16 hex>`` that are regular, not links, and
  owned by that uid count (a user can neither inflate nor erase another's counts); per uid the
  most recently written counts. Everything else is counted as ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass

DIR_NAME = "spool-status"  # the agentmon_db role creates it (roles/agentmon_db, "spool-status")
_NAME = re.compile(r"^([0-9]{1,10})\.([0-9a-f]{16})$")
_LINE = re.compile(rb"^waiting ([0-9]{1,12})\ndropped ([0-9]{1,12})\noldest ([0-9]{1,12})\n$")
MAX_SIZE = 128


class StatusUnsafe(OSError):
    """The status folder is missing the sticky bit, or a user's own (not the role's)."""


@dataclass
class Totals:
    """Sums over every user's trusted status file."""

    waiting: int = 0
    dropped: int = 0
    oldest: float = 0.0  # Unix time of the oldest waiting event over all users; 0: none waits
    users: int = 0  # users with a trusted status file
    ignored: int = 0  # entries not trusted (wrong owner, link, bad name or content)


def status_dir(db_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(db_path)), DIR_NAME)


def _open_dir(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    parent = os.stat(os.path.dirname(path))
    if not info.st_mode & stat.S_ISVTX or info.st_uid not in (0, parent.st_uid):
        os.close(fd)
        raise StatusUnsafe(f"{path} is not the role's sticky folder (owner uid {info.st_uid},"
                           f" mode {stat.S_IMODE(info.st_mode):o}); status not written")
    return fd


def write(path: str, waiting: int, dropped: int, oldest: float) -> None:
    """Leave this user's counts in the status folder ``path``; nothing when it does not exist."""
    from secrets import token_hex

    try:
        fd = _open_dir(path)
    except FileNotFoundError:
        return  # no role made the folder (a hook outside a deployment): nothing to tell
    try:
        uid = os.geteuid()
        data = f"waiting {waiting}\ndropped {dropped}\noldest {int(oldest)}\n".encode("ascii")
        temp = f".{uid}.{token_hex(8)}.tmp"
        name = f"{uid}.{token_hex(8)}"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o640, dir_fd=fd)
        try:
            os.fchmod(out, 0o640)  # whatever the umask: the exporter reads it through the group
            os.write(out, data)
        except BaseException:
            os.close(out)
            os.unlink(temp, dir_fd=fd)
            raise
        os.close(out)
        os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        for entry in os.listdir(fd):
            match = _NAME.match(entry)
            if entry == name or not match or int(match.group(1)) != uid:
                continue
            with contextlib.suppress(OSError):
                if os.stat(entry, dir_fd=fd, follow_symlinks=False).st_uid == uid:
                    os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)


def _read_one(fd: int, entry: str) -> tuple[int, int, tuple[int, int, int]] | None:
    """(uid, mtime_ns, (waiting, dropped, oldest)) of a trusted file, else None."""
    match = _NAME.match(entry)
    if not match:
        return None
    try:
        # O_NONBLOCK: a FIFO planted under a valid name must not hang the exporter.
        one = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=fd)
    except OSError:
        return None  # a link (ELOOP), gone, or unreadable
    try:
        info = os.fstat(one)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != int(match.group(1)) \
                or info.st_size > MAX_SIZE:
            return None
        found = _LINE.match(os.read(one, MAX_SIZE + 1))
    finally:
        os.close(one)
    if not found:
        return None
    waiting, dropped, oldest = (int(g) for g in found.groups())
    return info.st_uid, info.st_mtime_ns, (waiting, dropped, oldest)


def read_all(path: str) -> Totals:
    """Sum the trusted status files in ``path``. Raises OSError when the folder is unreadable."""
    totals = Totals()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        newest: dict[int, tuple[int, tuple[int, int, int]]] = {}
        for entry in os.listdir(fd):
            if entry.startswith("."):
                continue  # a writer's temp file, renamed a moment later
            got = _read_one(fd, entry)
            if got is None:
                totals.ignored += 1
                continue
            uid, mtime, counts = got  # two of one user: the writer removes the older one next
            if uid not in newest or mtime > newest[uid][0]:
                newest[uid] = (mtime, counts)
    finally:
        os.close(fd)
    oldest = [c[2] for _, c in newest.values() if c[0] > 0 and c[2] > 0]
    totals.users = len(newest)
    totals.waiting = sum(c[0] for _, c in newest.values())
    totals.dropped = sum(c[1] for _, c in newest.values())
    totals.oldest = float(min(oldest)) if oldest else 0.0
    return totals
