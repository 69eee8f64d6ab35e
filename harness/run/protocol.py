"""What a worker process and its supervisor say to each other: small frozen records.

The worker sends, in order: `Loaded` (or `LoadFailed`), `Ready` once warm-up is over, then per
task `Started` and `Finished`, and `Done` at the end. Anything else ending the conversation (the
pipe closing, the process dying, a deadline passing) is the supervisor's to name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.records import LoadStats

STATUSES = ("ok", "error", "unsupported", "skipped")


@dataclass(frozen=True)
class Loaded:
    stats: LoadStats
    env: dict[str, Any]


@dataclass(frozen=True)
class LoadFailed:
    error: str  # one line, for the row and the terminal
    traceback: str = ""
    skipped: bool = False  # refused before loading (would not fit): a skip, not a failure


@dataclass(frozen=True)
class Ready:
    """Warm-up is over; tasks follow."""


@dataclass(frozen=True)
class Started:
    task: int


@dataclass(frozen=True)
class Finished:
    task: int
    status: str  # one of STATUSES
    result: Any = None  # the workload's measurement (a Measurement, or a dict of columns)
    error: str = ""
    traceback: str = ""
    # Seconds the worker spent on this task outside the model's own calls: image loading and
    # checks, prompt formatting, the memory check, building and handing off the result.
    harness_s: float | None = None


@dataclass(frozen=True)
class Done:
    """Every task was attempted; the worker exits."""


Message = Loaded | LoadFailed | Ready | Started | Finished | Done
