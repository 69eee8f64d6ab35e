"""Drop a checkpoint's pages from the OS page cache, so that a load reads from the disk.

A load right after a build, a download or an earlier run reads the weights from memory: the
"42 s the first time, 6-12 s later" of a user's report. Linux drops one file's clean pages with
`posix_fadvise(POSIX_FADV_DONTNEED)`, allowed to anyone who can read the file (pages another
process keeps mapped stay). macOS has only `purge`, the whole cache at once, which needs root.
Elsewhere nothing is dropped and the caller must record the load as warm.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import subprocess
from pathlib import Path


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    # A hub snapshot holds links into its blobs folder: resolve them, so the data's pages go.
    return sorted({p.resolve() for p in path.rglob("*") if p.is_file()})


def drop_page_cache(path: str | os.PathLike[str]) -> bool:
    """Drop every file under `path` from the page cache; True only when that was done."""
    root = Path(path)
    if not root.exists():
        return False
    system = platform.system()
    if system == "Linux" and hasattr(os, "posix_fadvise"):
        try:
            for f in _files(root):
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)  # dirty pages (a checkpoint just written) cannot be dropped
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
        except OSError:
            return False
        return True
    if system == "Darwin":
        try:
            return subprocess.run(["purge"], capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    return False


def resident_fraction(path: str | os.PathLike[str]) -> float | None:
    """The fraction of a file's pages in the page cache (Linux mincore); None where unknown."""
    if platform.system() != "Linux":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)  # private mapping: nothing is read
        try:
            buf = ctypes.c_char.from_buffer(mm)
            vec = (ctypes.c_ubyte * pages)()
            rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec)
            del buf
        finally:
            mm.close()
    if rc != 0:
        return None
    return sum(v & 1 for v in vec) / pages
