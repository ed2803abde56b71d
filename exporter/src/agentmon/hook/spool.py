"""A per-user spool for hook events that cannot be written now, written by a later hook run.

When the database cannot take an event (locked past the busy timeout, a planted link beside it,
a full disk, any write failure), the validated event is kept as one JSON file in the user's own
spool folder, ``$XDG_STATE_HOME/agentmon/spool`` (else ``~/.local/state/agentmon/spool``):

- private: the folder is the user's, mode 0700 (fixed if looser, refused if it is a link or
  someone else's); each file 0600, created ``O_EXCL|O_NOFOLLOW`` under a random name through the
  folder's descriptor, written whole, then renamed into place;
- bounded: at most ``MAX_EVENTS`` files and ``MAX_BYTES`` bytes. When full the **oldest are
  kept** and a new event is dropped and counted: the oldest hold the starts (SessionStart,
  PreToolUse) that later events close, so keeping them keeps the most rows right; and dropping
  at the door never deletes something already promised to the user;
- counted: the number of events ever dropped is kept in the folder (``dropped``);
- drained by the next run that can write to the database, before its own event (so events keep
  their order): each spooled event is recorded in its own transaction, then deleted.
  A file that is not a valid event (only its user can write there) is deleted and counted as
  dropped.

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

    def put(self, event: dict[str, Any]) -> bool:
        """Keep ``event``; False (and counted as dropped) when the spool is full."""
        data = json.dumps(event, ensure_ascii=True, separators=(",", ":")).encode("ascii")
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

    def report(self, db: str | None) -> None:
        """Leave this user's counts where the exporter reads them (agentmon.spoolstatus)."""
        if db is None:
            return
        from agentmon import spoolstatus

        with contextlib.suppress(OSError):  # the counts must never cost the event
            spoolstatus.write(spoolstatus.status_dir(db), *self.counts())

    def drain(self, record: Callable[[dict[str, Any]], None],
              limit: int = DRAIN_BATCH) -> int:
        """Record up to ``limit`` spooled events, oldest first, deleting each once recorded.

        An error from ``record`` (the database failing again) stops the drain and leaves the
        event spooled; a file that is not a JSON object is deleted and counted as dropped.
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
            record(event)
            os.unlink(name, dir_fd=self.fd)
            done += 1
        return done


def keep(event: dict[str, Any], env: Mapping[str, str], db: str | None = None) -> str:
    """Spool ``event``; a short phrase saying what became of it, for the hook's one line.

    With ``db``, the spool's counts are left in the status folder beside it."""
    path = spool_dir(env)
    if path is None:
        return "event dropped (no home folder for the spool)"
    try:
        with Spool(path) as spool:
            kept = spool.put(event)
            spool.report(db)
            if kept:
                return f"event kept in {path} ({len(spool.names())} waiting)"
            return f"event dropped: spool {path} full ({spool.dropped()} dropped so far)"
    except OSError as exc:
        return f"event dropped: spool unavailable: {exc}"


def drain_into(record: Callable[[dict[str, Any]], None], env: Mapping[str, str],
               db: str | None = None) -> None:
    """Record the user's spooled events after a successful write (nothing when none wait).

    With ``db``, the spool's counts after the drain are left in the status folder beside it,
    also when the drain stopped on a failure."""
    path = spool_dir(env)
    if path is None:
        return
    try:
        if not any(n.endswith(SUFFIX) and n[0] != "." for n in os.listdir(path)):
            return
    except OSError:
        return
    with Spool(path) as spool:
        try:
            spool.drain(record)
        finally:
            spool.report(db)
