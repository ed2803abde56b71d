"""Who is on the other end of a connection, and the descriptors it passed.

The sender's uid comes from the kernel (``SO_PEERCRED``), never from the message. A passed
descriptor is kept only if it is a regular file owned by that uid and not on a FUSE filesystem
(a user's FUSE server could leave a read hanging, and the service reads inside the write lock):
so a user can make the service read nothing she could not open herself, and nothing that blocks.
"""

from __future__ import annotations

import array
import ctypes
import os
import socket
import stat
import struct

from agentmon.hook.transcripts import Unreadable, check

FUSE_SUPER_MAGIC = 0x65735546
_UCRED = struct.Struct("3i")  # pid, uid, gid
_STATFS_SIZE = 256  # struct statfs is 120 bytes on 64-bit Linux; f_type comes first
_libc: ctypes.CDLL | None = None


def credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the peer, as the kernel saw it connect."""
    pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid


def descriptors(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors an ``SCM_RIGHTS`` message carried (every one: the caller closes them)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(data) - len(data) % array.array("i").itemsize
            fds.extend(array.array("i", data[:whole]))
    return fds


def filesystem_type(fd: int) -> int:
    """The f_type of the filesystem ``fd`` lives on (fstatfs(2))."""
    global _libc  # loaded once, on the first transcript
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.fstatfs(fd, buf) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return ctypes.c_long.from_buffer(buf).value


def readable(fd: int, uid: int) -> str | None:
    """None when the service may read ``fd`` for ``uid``; else why not (one phrase)."""
    try:
        check(fd, uid)
        if filesystem_type(fd) == FUSE_SUPER_MAGIC:
            return "on a FUSE filesystem; not read"
    except Unreadable:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file; not read"
        return f"owned by uid {info.st_uid}, not by the sender (uid {uid}); not read"
    except OSError as exc:
        return f"not read: {exc.strerror or exc}"
    return None
