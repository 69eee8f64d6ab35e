"""Reading a file a user named (a suite, a model file, an image, a results part): regular files
only, and never more than a limit.

A path can name a FIFO, which blocks a reader until someone writes to it (for ever, in a
benchmark), or a device like /dev/zero, which never ends. The file is opened without blocking,
checked to be a regular file on the open descriptor (so a swap after the check cannot matter),
and read up to the limit plus one byte: a file that grows while it is read is still bounded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotReadable(OSError):
    """A path that is not a regular file, or is over its limit; the message names it. `missing`
    says the path does not exist at all."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _failed(path: Path | str, e: OSError) -> NotReadable:
    return NotReadable(f"{path}: {e.strerror or type(e).__name__}", missing=isinstance(e, FileNotFoundError))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path | str) -> None:
    """Raise NotReadable unless `path` (symlinks followed) is a regular file; never blocks."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise _failed(path, e) from None
    if not stat.S_ISREG(st.st_mode):
        raise NotReadable(f"{path} is {_kind(st.st_mode)}; only regular files are read")


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; NotReadable otherwise (the message
    names the path and why: missing, a FIFO, a device, a directory, over the limit)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _failed(path, e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"{path} is {_kind(st.st_mode)}; only regular files are read")
        if st.st_size > limit:
            raise NotReadable(f"{path} is {st.st_size:,} bytes, over the limit of {limit:,}")
        chunks, size = [], 0
        while size <= limit:
            piece = os.read(fd, min(1 << 20, limit + 1 - size))
            if not piece:
                break
            chunks.append(piece)
            size += len(piece)
        if size > limit:
            raise NotReadable(f"{path} grew past the limit of {limit:,} bytes while it was read")
        return b"".join(chunks)
    except NotReadable:
        raise
    except OSError as e:
        raise _failed(path, e) from None
    finally:
        os.close(fd)
