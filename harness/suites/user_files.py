"""Images a user's suite names (the folder and hf_dataset sources): kept as the user's bytes.

A local image stays where it is and is read by harness.images at run time, like every other
suite's, so EXIF orientation, format checks and limits apply to it as they apply everywhere, and
an error names the user's own file. A missing or unreadable image fails its sample alone, as an
error row. A path is resolved against the dataset's folder and refused if it leads out of it
(`..`, an absolute path, a symlink) unless the suite says `allow_outside = true`. URLs and data
URIs are fetched once, when the suite is built, through harness.images (allowed hosts, global
addresses, one deadline, size limit) and kept in the suite cache byte for byte.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

from harness.images import ImageError, ImageLimits, is_remote, read_bytes

# The extension a kept image is written under; formats harness.images refuses keep theirs, so the
# run's error row says what the file is.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
              "ICO": ".ico", "MPO": ".jpg"}


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, lies within `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13): leads nowhere
        return False
    return True


def symlink_loop(path: Path) -> bool:
    """Whether following `path`'s symlinks goes round in a circle (resolving it never ends)."""
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as e:
        return isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP
    return False


def local_image(value: str, root: Path, *, allow_outside: bool, where: str) -> tuple[Path, str]:
    """The user's image file for a cell (relative to `root`, the dataset's folder), unread, and
    why its sample cannot run ("" when it can): a path leading outside the folder, or one that
    names something other than a readable file, fails its own sample, never the suite."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = root / path
    if symlink_loop(path):
        return path, f"{where}: image path {value!r} ({path}) is a symlink loop; point the link at a file"
    if not allow_outside and not inside(path, root):
        return path, (f"{where}: image path {value!r} leads outside the dataset folder {root}; move the image "
                      "into it, or set allow_outside = true in the suite's [params] if that is intended")
    # A missing file fails its sample at run time, where harness.images says so.
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK)):
        return path, (f"{where}: image path {value!r} ({path}) is not a readable regular file; fix the path or "
                      "the file's permissions")
    return path, ""


def image_format(data: bytes) -> str | None:
    """The format named in the header, without decoding the pixels; None when PIL does not know it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:  # any header PIL cannot parse
        return None


def keep_bytes(data: bytes, stem: Path) -> Path:
    """Write an image's bytes unchanged under `stem` plus the extension of its format."""
    fmt = image_format(data)
    path = stem.with_name(stem.name + EXTENSIONS.get(fmt or "", "-undecodable.img"))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def fetch(src: str, stem: Path) -> tuple[Path, str]:
    """A URL or data URI fetched into the cache: (the kept file, "") or, when the image checks
    refuse it, (a path that does not exist, the reason): its sample becomes one error row, and the
    next build tries again."""
    try:
        data = read_bytes(src, ImageLimits())
    except ImageError as e:
        return stem.with_name(stem.name + "-not-fetched"), str(e)
    return keep_bytes(data, stem), ""


def is_source(value: object) -> bool:
    """A string cell that names an image by URL or data URI."""
    return isinstance(value, str) and is_remote(value)
