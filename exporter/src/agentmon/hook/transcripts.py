"""Which transcript an event's tokens come from, and the one check of a transcript's file.

Imports only ``os`` and ``stat``: the hook imports this on every event it forwards to the ingest
socket (``agentmon.hook.forward``), where it opens the transcripts itself and passes their file
descriptors; the store (``agentmon.hook.usage``) reads them through the same check.
"""

from __future__ import annotations

import os
import stat

# event name -> the field naming the transcript agentmon.hook.store reads for it: a Stop counts
# the main thread's new messages, a SubagentStop those of a background subagent.
FIELDS = {"Stop": "transcript_path", "SubagentStop": "agent_transcript_path"}


class Unreadable(OSError):
    """A transcript that is not read (a link, not a regular file, not its user's)."""


def check(fd: int, uid: int) -> os.stat_result:
    """The file behind ``fd`` if it is a regular file owned by ``uid``; else Unreadable."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
        raise Unreadable("not a regular file of the user's own; not read")
    return info


def open_own(path: str) -> int:
    """An fd of ``path`` if it is a regular file of this process's user, opened without
    following a link or blocking (a FIFO); the caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise Unreadable(f"{path} is a symbolic link; not read") from None
        raise exc from None
    try:
        check(fd, os.geteuid())
    except Unreadable:
        os.close(fd)
        raise Unreadable(f"{path} is not a regular file of this user; not read") from None
    return fd
