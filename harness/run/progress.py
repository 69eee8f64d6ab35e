"""Progress on long runs: a redrawn bar on a terminal, one line per model in a log."""

from __future__ import annotations

import sys
import time
from typing import Any


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """`enabled=False` prints nothing at all; otherwise a tqdm bar when stderr is a terminal,
    and in a log (CI, a pipe), where a redrawn bar is noise, one line per model."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="sample", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
        self._model_start = time.monotonic()
        self._model_done = 0

    def model(self, name: str) -> None:
        self._model_start, self._model_done = time.monotonic(), 0

    def model_done(self, name: str) -> None:
        if self.enabled and self.bar is None:
            say(f"{name}: {self._model_done} sample(s) in {time.monotonic() - self._model_start:.1f} s")

    def doing(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=False)

    def advance(self, n: int = 1) -> None:
        self._model_done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
