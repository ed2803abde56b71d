"""A per-user spool for hook events that cannot be written now, written by a later hook run.

When an event cannot be stored (the ingest service unreachable or not storing now, or, writing
directly, the database locked past the busy timeout, a full disk, any write failure), the
validated event is kept as one file, its bytes as they would have been sent, in the user's own
spool folder, ``$XDG_STATE_HOME/agentmon/spool`` (else ``~/.local/state/agentmon/spool``):

- private: the folder is the user's, mode 0700 (fixed if looser, refused if it is a link or
  someone else's); each file 0600, created ``O_EXCL|O_NOFOLLOW`` under a random name through the
  folder's descriptor, written whole, then renamed into place;
- bounded: at most ``MAX_EVENTS`` files and ``MAX_BYTES`` bytes. When full the **oldest are
  kept** and a new event is dropped and counted: the oldest hold the starts (SessionStart,
  PreToolUse) that later events close, so keeping them keeps the most rows right; and dropping
  at the door never deletes something already promised to the user;
- counted: the number of events ever dropped is kept in the folder (``dropped``); the hook tells
  the ingest service its counts (``counts``) whenever it spools or drains, and the service
  keeps them where the exporter reads them (``agentmon.spoolstatus``);
- drained by the next run that can store, before its own event (so events keep their order):
  each spooled event is stored on its own (its own transaction), then deleted. A file that is
  not a valid event (only its user can write there), or one the ingest service refuses for good,
  is deleted and counted as dropped.

All of it runs under an exclusive ``flock`` on the folder, so two runs of the same user never
record one file twice or lose a count.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time

from agentmon.hook.validate import validate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

MAX_EVENTS = 10_000
MAX_BYTES = 64 * 1024 * 1024
DRAIN_BATCH = 500  # events one run records at most: a hook run stays short
SUFFIX = ".json"
DROPPED = "dropped"


class SpoolUnsafe(OSError):
    """The spool folder is a link, someone else's, or not a folder."""


class Refused(Exception):
    """The receiver refuses an event for good: a drain deletes it and counts it dropped."""


class Unavailable(Exception):
    """The receiver cannot store events now: a drain stops, the event stays spooled."""


def spool_dir(env: Mapping[str, str]) -> str | None:
    """The user's spool folder, or None when there is no home folder or state folder."""
    state = env.get("XDG_STATE_HOME")
    if not state or not os.path.isabs(state):
        home = env.get("HOME")  # as given: the hook's environment, never a guess
        if not home or not os.path.isabs(home):
            return None
        state = os.path.join(home, ".local", "state")
    return os.path.join(state, "agentmon", "spool")


def _open_dir(path: str) -> int:
    """Create ``path`` (0700) if needed and open it without following a link; check it."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise SpoolUnsafe(f"spool {path} is a symbolic link; refusing it") from None
        raise exc from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise SpoolUnsafe(f"spool {path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


class Spool:
    """The user's spool folder, locked for as long as the ``with`` block lasts."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = _open_dir(path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            os.close(self.fd)
            raise

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock

    def names(self) -> list[str]:
        """The spooled events' file names, oldest first."""
        return sorted(n for n in os.listdir(self.fd) if n.endswith(SUFFIX) and n[0] != ".")

    def _size(self, name: str) -> int:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def dropped(self) -> int:
        try:
            fd = os.open(DROPPED, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return 0
        try:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return int(text) if text.isdigit() else 0

    def _write(self, name: str, data: bytes) -> None:
        """``data`` as file ``name`` (0600), whole or not at all."""
        from secrets import token_hex  # costs every hook run an import; only writers need it

        temp = f".{token_hex(8)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self.fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp, dir_fd=self.fd)
            raise
        os.close(fd)
        os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def count_dropped(self, n: int = 1) -> int:
        total = self.dropped() + n
        self._write(DROPPED, f"{total}\n".encode("ascii"))
        return total

    def put(self, data: bytes) -> bool:
        """Keep an event's bytes; False (and counted as dropped) when the spool is full."""
        names = self.names()
        used = sum(self._size(n) for n in names)
        if len(names) >= MAX_EVENTS or used + len(data) > MAX_BYTES:
            self.count_dropped()
            return False
        from secrets import token_hex

        self._write(f"{time.time_ns():020d}-{token_hex(6)}{SUFFIX}", data)
        return True

    def counts(self) -> tuple[int, int, float]:
        """(events waiting, events ever dropped, Unix time of the oldest waiting; 0: none)."""
        names = self.names()
        oldest = int(names[0][:20]) / 1e9 if names and names[0][:20].isdigit() else 0.0
        return len(names), self.dropped(), oldest

    def drain(self, record: Callable[[dict[str, Any], bytes], None],
              limit: int = DRAIN_BATCH) -> int:
        """Store up to ``limit`` spooled events, oldest first, deleting each once stored.

        ``record`` gets the event and its bytes. Unavailable from it (the database or the
        service failing again) stops the drain and leaves the event spooled; Refused, or a file
        that is not a JSON object, deletes the file and counts it as dropped.
        """
        done = 0
        for name in self.names()[:limit]:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
            except OSError:  # a link, or gone: not ours to read
                os.unlink(name, dir_fd=self.fd)
                self.count_dropped()
                continue
            with os.fdopen(fd, "rb") as file:
                raw = file.read(MAX_BYTES + 1)
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            if not isinstance(event, dict) or validate(event):
                os.unlink(name, dir_fd=self.fd)
                self.count_dropped()
                continue
            try:
                record(event, raw)
            except Refused:
                os.unlink(name, dir_fd=self.fd)
                self.count_dropped()
                continue
            os.unlink(name, dir_fd=self.fd)
            done += 1
        return done


def waiting(path: str) -> bool:
    """Whether the spool folder ``path`` holds an event (no lock: a quick look)."""
    try:
        return any(n.endswith(SUFFIX) and n[0] != "." for n in os.listdir(path))
    except OSError:
        return False


def keep(data: bytes, env: Mapping[str, str]) -> tuple[str, tuple[int, int, float] | None]:
    """Spool an event's bytes: a short phrase saying what became of it, for the hook's one line,
    and the spool's counts after it (None when there is no spool)."""
    path = spool_dir(env)
    if path is None:
        return "event dropped (no home folder for the spool)", None
    try:
        with Spool(path) as spool:
            kept = spool.put(data)
            counts = spool.counts()
            if kept:
                return f"event kept in {path} ({counts[0]} waiting)", counts
            return f"event dropped: spool {path} full ({counts[1]} dropped so far)", counts
    except OSError as exc:
        return f"event dropped: spool unavailable: {exc}", None


def drain_into(record: Callable[[dict[str, Any], bytes], None], env: Mapping[str, str],
               ) -> tuple[tuple[int, int, float] | None, str | None]:
    """Store the user's spooled events before the run's own: the spool's counts afterwards
    (None when nothing waited) and why the drain stopped early (None when it did not)."""
    path = spool_dir(env)
    if path is None or not waiting(path):
        return None, None
    with Spool(path) as spool:
        try:
            spool.drain(record)
        except Unavailable as exc:
            return spool.counts(), str(exc)
        return spool.counts(), None
