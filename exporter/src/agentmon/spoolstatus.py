"""Counts of each user's spool, where the exporter can read them: ``<data folder>/spool-status``.

A user's spool (``agentmon.hook.spool``) is private (0700), so the exporter cannot look inside.
Each hook that spools or drains tells the ingest service its counts (``agentmon.ingest``); the
service, which knows the sender's uid from the socket (``SO_PEERCRED``), never from the message,
keeps them as one file per uid in a folder of its own beside the database: ``<uid>`` holding
``waiting N``, ``dropped N`` (ever), ``oldest T`` (Unix time of the oldest waiting event; 0 when
none waits). Nothing else: no user name, path or event.

- writing (the service, as the database's owner, with the data group as its group): the folder
  is made (or taken back) as the service's own, ``0750``, so the exporter (the data group) may
  read it and nobody else may add anything (no setgid bit: the service's unit forbids setting
  one, and its files get the data group as its primary group); a file is written to a random
  temp name ``O_CREAT|O_EXCL|O_NOFOLLOW`` and renamed over ``<uid>``; anything else found there
  at start (an older layout's files) is removed.
- reading (the exporter): only files named ``<uid>`` that are regular, not links, and owned by
  the folder's owner count. Everything else is counted as ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass

DIR_NAME = "spool-status"
_NAME = re.compile(r"^[0-9]{1,10}$")
_LINE = re.compile(rb"^waiting ([0-9]{1,12})\ndropped ([0-9]{1,12})\noldest ([0-9]{1,12})\n$")
MAX_SIZE = 128
FOLDER_MODE = 0o750
FILE_MODE = 0o640


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


class Board:
    """The service's side: the folder, opened once, and the counts last written per uid."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, FOLDER_MODE)
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        info = os.fstat(self.fd)
        if info.st_uid != os.geteuid():
            os.close(self.fd)
            raise PermissionError(f"{path} belongs to uid {info.st_uid}, not to this service")
        if stat.S_IMODE(info.st_mode) != FOLDER_MODE:
            os.fchmod(self.fd, FOLDER_MODE)
        self.last: dict[int, tuple[int, int, int]] = {}
        for entry in os.listdir(self.fd):
            if not self._mine(entry):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=self.fd)

    def _mine(self, entry: str) -> bool:
        try:
            info = os.stat(entry, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        return bool(_NAME.match(entry)) and stat.S_ISREG(info.st_mode) \
            and info.st_uid == os.geteuid()

    def write(self, uid: int, waiting: int, dropped: int, oldest: float) -> bool:
        """Keep ``uid``'s counts; False when they are those already kept."""
        counts = (waiting, dropped, int(oldest))
        if self.last.get(uid) == counts:
            return False
        from secrets import token_hex

        data = "waiting {}\ndropped {}\noldest {}\n".format(*counts).encode("ascii")
        temp = f".{uid}.{token_hex(8)}.tmp"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      FILE_MODE, dir_fd=self.fd)
        try:
            os.fchmod(out, FILE_MODE)  # whatever the umask: the exporter reads it through the group
            os.write(out, data)
        except BaseException:
            os.close(out)
            os.unlink(temp, dir_fd=self.fd)
            raise
        os.close(out)
        os.rename(temp, str(uid), src_dir_fd=self.fd, dst_dir_fd=self.fd)
        self.last[uid] = counts
        return True

    def close(self) -> None:
        os.close(self.fd)


def _read_one(fd: int, entry: str, owner: int) -> tuple[int, tuple[int, int, int]] | None:
    """(uid, (waiting, dropped, oldest)) of a trusted file, else None."""
    if not _NAME.match(entry):
        return None
    try:
        # O_NONBLOCK: a FIFO under a valid name must not hang the exporter.
        one = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=fd)
    except OSError:
        return None  # a link (ELOOP), gone, or unreadable
    try:
        info = os.fstat(one)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner or info.st_size > MAX_SIZE:
            return None
        found = _LINE.match(os.read(one, MAX_SIZE + 1))
    finally:
        os.close(one)
    if not found:
        return None
    waiting, dropped, oldest = (int(g) for g in found.groups())
    return int(entry), (waiting, dropped, oldest)


def read_all(path: str) -> Totals:
    """Sum the trusted status files in ``path``. Raises OSError when the folder is unreadable."""
    totals = Totals()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        owner = os.fstat(fd).st_uid
        counts: list[tuple[int, int, int]] = []
        for entry in os.listdir(fd):
            if entry.startswith("."):
                continue  # the service's temp file, renamed a moment later
            got = _read_one(fd, entry, owner)
            if got is None:
                totals.ignored += 1
                continue
            counts.append(got[1])
    finally:
        os.close(fd)
    oldest = [c[2] for c in counts if c[0] > 0 and c[2] > 0]
    totals.users = len(counts)
    totals.waiting = sum(c[0] for c in counts)
    totals.dropped = sum(c[1] for c in counts)
    totals.oldest = float(min(oldest)) if oldest else 0.0
    return totals
