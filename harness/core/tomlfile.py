"""Reading a declarative file (a suite, a model): TOML in UTF-8, every failure one line naming
the file and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from harness.core.files import NotReadable, read_regular

MAX_BYTES = 10_000_000  # a suite or model file is a few kB; a larger one is not one


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The file's table; `error(message)` when it cannot be read, is not UTF-8 or not TOML."""
    try:
        return tomllib.loads(read_regular(Path(path), MAX_BYTES).decode("utf-8"))
    except NotReadable as e:  # a FIFO, a device, a directory: never waited on, never read without end
        raise error(f"cannot read {what}: {e}") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from None
