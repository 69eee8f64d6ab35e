"""The one supervisor of worker processes: every workload (suite runs, speed sweeps) runs
through here, under one set of rules.

- **Deadlines.** Loading may take `load_timeout_s`, warm-up and each task `task_timeout_s`; a
  worker silent for longer is killed and the row says which phase timed out, never "crashed".
- **Crashes.** A worker that dies during a task costs that task only: it becomes an error row
  naming the signal, and a fresh worker takes the remaining tasks (at most `max_restarts` times).
  A death while loading or warming up is not retried: it recurs at every start (a vision tower
  that faults on the warm-up image would be reloaded, gigabytes each time, only to fault again),
  so every task gets one error row saying so.
- **Names.** Signals are named as they are; only SIGKILL suggests the out-of-memory killer. The
  worker's Python traceback, or for a native crash the faulthandler dump, travels with the row.

The supervisor knows nothing of rows or stores: it reports through `Events`, and the caller
decides what a finished or failed task becomes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.models import ModelSpec
from harness.run.protocol import Done, Finished, Loaded, LoadFailed, Ready, Started

# What each signal means to someone reading an error row.
_SIGNAL_HINTS = {
    "SIGKILL": "killed from outside; usually the operating system's out-of-memory killer",
    "SIGSEGV": "a memory fault in native code (MLX, a kernel, a library)",
    "SIGBUS": "a bus error in native code, often a truncated or vanished memory-mapped file",
    "SIGFPE": "an arithmetic fault in native code (e.g. a division by zero on an empty tensor)",
    "SIGABRT": "native code aborted (a failed assertion or an uncaught C++ exception)",
    "SIGILL": "an illegal instruction: a binary built for another processor",
    "SIGTERM": "asked to stop from outside",
}


def signal_name(code: int | None) -> str:
    """'SIGFPE' for a worker killed by a signal, 'exit code 3' otherwise."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def exit_hint(code: int | None) -> str:
    """What a worker's exit means, for the reader of an error row ('' when nothing useful)."""
    return _SIGNAL_HINTS.get(signal_name(code), "")


@dataclass(frozen=True)
class Rules:
    task_timeout_s: float = 600.0
    load_timeout_s: float = 1200.0  # a large checkpoint on a slow disk loads for longer than a sample
    max_restarts: int = 2


class Events(Protocol):
    def loaded(self, msg: Loaded) -> None: ...

    def started(self, task: int) -> None: ...

    def finished(self, msg: Finished) -> None: ...

    def failed(self, tasks: list[int], status: str, error: str, traceback: str = "") -> None: ...


@dataclass(frozen=True)
class GaveUp:
    """Why a model's worker could not get to its tasks (load failed or was refused, a death or
    time-out while loading or warming up): every start would end the same way."""

    status: str  # error | skipped
    error: str
    traceback: str = ""


@dataclass
class _Outcome:
    remaining: list[int]
    retry: bool  # a task crashed or timed out: the rest go to a fresh worker
    loaded: bool = False
    gave_up: GaveUp | None = None


@dataclass
class Supervisor:
    rules: Rules = field(default_factory=Rules)
    say: Callable[[str], None] = lambda msg: None

    def run(self, spec: ModelSpec, path: str, workload: Any, events: Events) -> GaveUp | None:
        """Run every task of `workload` for one model; each ends in `finished` or `failed`.
        Returns why, when the model never got to its tasks (a later round need not try again)."""
        pending = [task for task, _ in workload.items()]
        restarts = 0
        while pending:
            outcome = self._one_worker(spec, path, workload.subset(pending), events)
            pending = outcome.remaining
            if outcome.gave_up is not None:
                return outcome.gave_up
            if not outcome.retry or not pending:
                break
            restarts += 1
            if restarts > self.rules.max_restarts:
                events.failed(pending, "error",
                              f"not run: the worker for {spec.name} failed {restarts} times; see the rows before")
                break

    def _one_worker(self, spec: ModelSpec, path: str, workload: Any, events: Events) -> _Outcome:
        from harness.run.worker import worker_main

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        fd, crash_log = tempfile.mkstemp(prefix="vlm-harness-worker-", suffix=".log")
        os.close(fd)
        proc = ctx.Process(target=worker_main, args=(child, spec, path, workload, crash_log), daemon=True)
        proc.start()
        child.close()
        remaining = [task for task, _ in workload.items()]
        phase = "loading"  # loading | warm-up | a task id
        current: int | None = None
        last = time.monotonic()
        deadline = self.rules.load_timeout_s

        def fail_rest(error: str, tb: str = "") -> _Outcome:
            events.failed(list(remaining), "error", error, tb)
            return _Outcome([], retry=False, gave_up=GaveUp("error", error, tb))

        try:
            while True:
                if parent.poll(0.1):
                    try:
                        msg = parent.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None:
                        break
                    last = time.monotonic()
                    if isinstance(msg, Loaded):
                        events.loaded(msg)
                        phase, deadline = "warm-up", self.rules.task_timeout_s
                    elif isinstance(msg, LoadFailed):
                        status = "skipped" if msg.skipped else "error"
                        error = msg.error if msg.skipped else f"{'load' if phase == 'loading' else 'warm-up'} failed: {msg.error}"
                        self.say(f"{status}: {spec.name}: {error}")
                        events.failed(list(remaining), status, error, msg.traceback)
                        return _Outcome([], retry=False, gave_up=GaveUp(status, error, msg.traceback))
                    elif isinstance(msg, Ready):
                        phase = "tasks"
                    elif isinstance(msg, Started):
                        current = msg.task
                        events.started(msg.task)
                    elif isinstance(msg, Finished):
                        events.finished(msg)
                        if msg.task in remaining:
                            remaining.remove(msg.task)
                        current = None
                    elif isinstance(msg, Done):
                        return _Outcome(remaining, retry=False)
                elif not proc.is_alive():
                    break
                elif time.monotonic() - last > deadline:
                    proc.kill()
                    proc.join(timeout=5)
                    where = self._where(phase, current, workload)
                    error = f"timed out after {deadline:.0f} s {where}; raise --timeout if the model is just slow"
                    self.say(f"error: {spec.name}: {error}")
                    if current is None:  # loading or warm-up: it would time out again
                        return fail_rest(error)
                    events.failed([current], "error", error)
                    remaining.remove(current)
                    return _Outcome(remaining, retry=True)
            # The pipe closed or the process ended without saying Done: it died.
            proc.join(timeout=5)
            hint = exit_hint(proc.exitcode)
            error = (f"worker process died ({signal_name(proc.exitcode)}) {self._where(phase, current, workload)}"
                     + (f": {hint}" if hint else ""))
            tb = _read(crash_log)
            self.say(f"error: {spec.name}: {error}")
            if current is None:
                # Before any task, or between tasks: loading and warm-up deaths recur at every
                # start, so nothing is retried.
                if phase != "tasks":
                    return fail_rest(error + "; not retried: it would recur at every start", tb)
                return _Outcome(remaining, retry=True)
            events.failed([current], "error", error, tb)
            remaining.remove(current)
            return _Outcome(remaining, retry=True)
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
            parent.close()
            Path(crash_log).unlink(missing_ok=True)

    @staticmethod
    def _where(phase: str, current: int | None, workload: Any) -> str:
        if current is not None:
            return f"during {workload.describe(current)}"
        return {"loading": "while loading", "warm-up": "during warm-up"}.get(phase, "between tasks")


def _read(path: str, limit: int = 20_000) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()
