"""Reading a declarative file (a suite, a model): TOML in UTF-8, every failure one line naming
the file and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The file's table; `error(message)` when it cannot be read, is not UTF-8 or not TOML."""
    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from None
