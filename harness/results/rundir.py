"""The run directory, owned here: its layout, the plan, the writer's lock, finding runs.

```
<out>/<run_id>/
  run.json          the plan: command, models, suites, settings; started_at, finished_at
  parts/            part-*.arrow, one per batch of rows, each renamed into place whole
                    (Arrow IPC, its sha256 in its name; part-*.parquet from older versions)
  results.parquet   the parts folded together at the end of a run
  accuracy.parquet  harness.judge.accuracy over the results
  report.html, report.md
  rescore/<stamp>/  `vlm-harness rescore`: results and accuracy under the current metrics
  quarantine/       damaged part files moved aside (measured again on --resume)
  .lock             held by the one process writing the run
```

Every write here is atomic (a temporary file renamed into place), so a kill at any moment
leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PLAN = "run.json"
RESULTS = "results.parquet"
PARTS = "parts"
ACCURACY = "accuracy.parquet"
REPORT = "report.html"
REPORT_MD = "report.md"
RESCORE = "rescore"
QUARANTINE = "quarantine"
LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another process is writing this run."""


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class WriteError(OSError):
    """A file the harness could not write; the message names it and the operating system's reason
    (read-only, no space left, a directory where a file should go)."""


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, *, make_parents: bool = True) -> None:
    """Write `data` to `path` whole or not at all; WriteError names `path` (never the temporary
    file) and the reason when the operating system refuses."""
    path = Path(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    except OSError as e:
        raise WriteError(f"cannot write {path}: {_reason(e, path.parent)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; results are meant to be read like their neighbours.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {_reason(e, path)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(e: OSError, where: Path) -> str:
    """The operating system's reason, and which path it concerns when that is not the file."""
    reason = e.strerror or type(e).__name__
    if e.filename and Path(e.filename) != where and not Path(str(e.filename)).name.startswith(".tmp-"):
        return f"{reason} ({e.filename})"
    return reason


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def parts(self) -> Path:
        return self.path / PARTS

    def part_files(self) -> list[Path]:
        """Every part of the run, in the order written (the sequence number leads the name)."""
        if not self.parts.is_dir():
            return []
        return sorted([*self.parts.glob("part-*.arrow"), *self.parts.glob("part-*.parquet")], key=lambda p: p.name)

    @property
    def quarantine(self) -> Path:
        return self.path / QUARANTINE

    def exists(self) -> bool:
        return (self.path / PLAN).exists() or self.results.exists() or self.parts.is_dir()

    def plan(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / PLAN).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_plan(self, plan: dict[str, Any]) -> None:
        write_json(self.path / PLAN, plan)

    def update_plan(self, **changes: Any) -> None:
        self.write_plan({**self.plan(), **changes})

    @staticmethod
    def stamp() -> str:
        """A name for a rescore (or any dated output) that sorts by time."""
        return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")

    @property
    def finished(self) -> bool:
        return bool(self.plan().get("finished_at"))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for writing; a second writer gets RunLocked at once, never a wait."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            f = open(self.path / LOCK, "a+")  # noqa: SIM115 - held for the life of the lock
        except OSError as e:
            raise WriteError(f"cannot write the run directory {self.path}: {_reason(e, self.path)}") from None
        try:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise RunLocked(f"run {self.run_id} in {self.path.parent} is being written by {holder}; "
                                "wait for it, or give this run another --run-id") from None
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()}")
            f.flush()
            yield
        finally:
            f.close()


def runs(out_dir: Path) -> list[RunDir]:
    """Runs in a directory of runs, oldest first (run ids start with their UTC start time)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return [RunDir(p) for p in sorted(out_dir.iterdir()) if p.is_dir() and (p / PLAN).exists()]


def latest(out_dir: Path) -> RunDir | None:
    found = runs(out_dir)
    return found[-1] if found else None


def report_pending(plan: dict[str, Any]) -> bool:
    """A run whose rows are all stored but whose report was never written (killed in between):
    `--resume` continues it and writes the report."""
    return bool(plan.get("report")) and not plan.get("reported_at")


def latest_unfinished(out_dir: Path, *, models: list[str] | None = None, suites: list[str] | None = None,
                      command: str = "run", shard: str | None = None) -> RunDir | None:
    """The newest run that did not finish (or finished without its report) and was started by
    the same command (and, when given, for the same models and suites) and the same shard: the
    one `--resume` should continue."""
    for run in reversed(runs(out_dir)):
        plan = run.plan()
        if plan.get("command", "run") != command or (plan.get("finished_at") and not report_pending(plan)):
            continue
        if models is not None and plan.get("models") not in (None, models):
            continue
        if suites is not None and plan.get("suites") not in (None, suites):
            continue
        if plan.get("shard") != shard:  # shard 1/3's run must not take in shard 2/3's samples
            continue
        return run
    return None


def resolve(path: Path) -> Path:
    """A run directory or a results file as given; a directory of runs becomes its latest run."""
    path = Path(path)
    if path.is_dir() and not RunDir(path).exists():
        found = latest(path)
        if found is None:
            raise FileNotFoundError(f"no results at {path}: give a run directory or a results.parquet file")
        return found.path
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: give a run directory or a results.parquet file")
    return path
