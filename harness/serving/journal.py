"""Finished requests made durable as they finish: an append-only JSON-lines file beside
load.parquet, `load.journal.jsonl`, one row per line.

Why: load.parquet is rewritten atomically between steps, never during one (serialising a whole
step on the event loop would delay the sends), so a run killed mid-step (SIGKILL, OOM, a closed
laptop) lost every request of that step. The journal takes each finished request as it ends,
which costs the event loop one list append; the rows are built and written in batches, every
`every_s` (100 ms) or `batch` rows, whichever comes first, each write flushed to the operating
system, which holds it however the process dies. A batch is written a few rows at a time with the
event loop free in between, so the client's scheduling lag stays as it was
(benchmarks/test_load_lag.py).
A torn last line (the process died inside a write) is skipped when reading.

`harness.serving.rows.read_rows` adds journal rows missing from load.parquet, so the next read,
`load-report` or `report --load` recovers them. A run that ends normally removes its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

JOURNAL_NAME = "load.journal.jsonl"
SHARED = "_shared"  # the key of a line holding the columns every following row has


class Journal:
    """Rows of finished requests, appended to `path` in batches."""

    def __init__(self, path: Path, make_row: Callable[..., dict[str, Any]], *, every_s: float = 0.1,
                 batch: int = 64, chunk: int = 4, shared: dict[str, Any] | None = None) -> None:
        self.path, self.make_row, self.every_s, self.batch, self.chunk = Path(path), make_row, every_s, batch, chunk
        # Columns equal on every row (the environment's JSON, a kilobyte or more) go once, on the
        # file's first line, instead of being encoded again for every request.
        self.shared = dict(shared or {})
        self.pending: list[tuple[Any, ...]] = []
        self.written = 0
        self._file: TextIO | None = None
        self._wake: asyncio.Event | None = None

    def add(self, *item: Any) -> None:
        """A request ended: `make_row(*item)` becomes its row at the next write. One append on the
        event loop; a full batch wakes the writer early instead of writing here."""
        self.pending.append(item)
        if len(self.pending) >= self.batch and self._wake is not None:
            self._wake.set()

    def _write(self, items: list[tuple[Any, ...]]) -> None:
        # NaN is written as NaN (Python's json reads it back); the row's own columns only.
        text = "".join(json.dumps(self.make_row(*it), default=str) + "\n" for it in items)
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps({SHARED: self.shared}, default=str) + "\n")
        self._file.write(text)
        self._file.flush()  # into the kernel: a killed process loses nothing written so far
        self.written += len(items)

    def flush(self) -> None:
        """Write every pending row now."""
        items, self.pending = self.pending, []
        if items:
            self._write(items)

    async def run(self) -> None:
        """Write pending rows every `every_s` (or as soon as a batch is full) until cancelled, then
        the rest. A row costs some 30 µs to build, score and encode, so a batch is written `chunk`
        rows at a time with the event loop free in between: a send that falls due waits for one
        chunk at most, never for a whole batch."""
        self._wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.every_s)
                self._wake.clear()
                while self.pending:
                    items, self.pending = self.pending[:self.chunk], self.pending[self.chunk:]
                    self._write(items)
                    await asyncio.sleep(0)
        finally:
            self._wake = None
            self.flush()

    def close(self, *, remove: bool = False) -> None:
        """Flush and close; `remove`: delete the file (its rows are all in load.parquet now)."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The rows a journal holds; a line that does not parse (a write cut by the kill) is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    shared: dict[str, Any] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        if SHARED in row:
            shared = row[SHARED] if isinstance(row[SHARED], dict) else {}
            continue
        out.append({**shared, **row})
    return out
