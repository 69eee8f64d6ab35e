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
from collections.abc import Callable, Sequence
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


class Cancelled(Exception):
    """The supervisor's caller stopped it (`Supervisor.cancelled`); its worker was killed."""


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
    # Polled while waiting on a worker: True stops it (its process killed) with Cancelled. A
    # supervisor in another thread has no KeyboardInterrupt of its own (harness/run/data_parallel.py).
    cancelled: Callable[[], bool] = lambda: False

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
        talk = _Conversation(self, spec, path, workload, events)
        try:
            return talk.until()
        finally:
            talk.close()

    def run_together(self, jobs: Sequence[Job], turns: Sequence[int]) -> list[GaveUp | None] | None:
        """Several models' tasks in lockstep: each model's worker is started, loaded and warmed up
        in turn (so no load is timed against another), then `turns` says whose next task runs
        (indices into `jobs`; each job's tasks in its workload's order), one task at a time. A
        difference between two models' samples a few hundred milliseconds apart is theirs, not
        the machine's drift between two blocks of a round.

        Returns None, with nothing run, when a model is refused at load for want of memory
        while the others are held: the caller runs the models one after another instead. A
        worker that dies or times out mid-way costs its task; its remaining tasks then run
        after the others, in a fresh worker, as `run` would."""
        talks: dict[int, _Conversation] = {}
        out: list[GaveUp | None] = [None] * len(jobs)
        later: dict[int, list[int]] = {}
        try:
            for i, job in enumerate(jobs):
                talk = _Conversation(self, job.spec, job.path, job.workload, job.events, paced=True)
                ended = talk.until(lambda m: isinstance(m, Ready))
                if ended is None:
                    talks[i] = talk
                    continue
                talk.close()
                if ended.gave_up is not None and ended.gave_up.status == "skipped" and talks:
                    return None
                out[i] = ended.gave_up
                if ended.gave_up is None and ended.remaining:
                    later[i] = ended.remaining
            queue = {i: list(t.remaining) for i, t in talks.items()}
            for i in turns:
                talk = talks.get(i)
                if talk is None or not queue.get(i):
                    continue
                task = queue[i].pop(0)
                talk.go(task)
                ended = talk.until(lambda m, task=task: isinstance(m, Finished) and m.task == task)
                if ended is not None:  # died or timed out: the rest of its tasks go to a fresh worker
                    talk.close()
                    del talks[i]
                    out[i] = ended.gave_up
                    # Tasks run in order: what it had not finished is exactly what was not yet
                    # sent, and this task if it never started.
                    if ended.gave_up is None and ended.remaining:
                        later[i] = ended.remaining
            for i, talk in list(talks.items()):
                if queue[i]:  # `turns` left some out: they still run, in order
                    later[i] = queue[i]
                talk.go(None)
                talk.until()
        finally:
            for talk in talks.values():
                talk.close()
        for i, rest in later.items():
            job = jobs[i]
            if job.alone is not None:
                job.alone()
            out[i] = self.run(job.spec, job.path, job.workload.subset(rest), job.events)
        return out

    @staticmethod
    def _where(phase: str, current: int | None, workload: Any) -> str:
        if current is not None:
            return f"during {workload.describe(current)}"
        return {"loading": "while loading", "warm-up": "during warm-up"}.get(phase, "between tasks")


@dataclass(frozen=True)
class Job:
    """One model's share of a lockstep round (`Supervisor.run_together`)."""

    spec: ModelSpec
    path: str
    workload: Any
    events: Events
    alone: Callable[[], None] | None = None  # told before its leftover tasks run outside lockstep


class _Conversation:
    """One worker process and what it has said so far, under the supervisor's rules. Paced, the
    worker waits for `go` before each task."""

    def __init__(self, sup: Supervisor, spec: ModelSpec, path: str, workload: Any, events: Events,
                 paced: bool = False) -> None:
        from harness.run.worker import worker_main

        self.sup, self.spec, self.workload, self.events = sup, spec, workload, events
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=False)
        # Pipe(duplex=False) is (reader, writer): the worker reads its pace, the supervisor writes.
        pace_child, self.pace = ctx.Pipe(duplex=False) if paced else (None, None)
        fd, self.crash_log = tempfile.mkstemp(prefix="vlm-harness-worker-", suffix=".log")
        os.close(fd)
        self.proc = ctx.Process(target=worker_main, args=(child, spec, path, workload, self.crash_log, pace_child),
                                daemon=True)
        self.proc.start()
        child.close()
        if pace_child is not None:
            pace_child.close()
        self.remaining = [task for task, _ in workload.items()]
        self.phase = "loading"  # loading | warm-up | tasks
        self.current: int | None = None
        self.last = time.monotonic()
        self.deadline = sup.rules.load_timeout_s

    def go(self, task: int | None) -> None:
        """Let a paced worker run its next task (None: no more tasks, finish)."""
        if self.pace is not None:
            try:
                self.pace.send(task)
            except OSError:  # it died: the next `until` names how
                pass
            self.last = time.monotonic()

    def _fail_rest(self, error: str, tb: str = "") -> _Outcome:
        self.events.failed(list(self.remaining), "error", error, tb)
        return _Outcome([], retry=False, gave_up=GaveUp("error", error, tb))

    def until(self, reached: Callable[[Any], bool] | None = None) -> _Outcome | None:
        """Handle what the worker says until `reached(message)` (None back) or the conversation
        ends (its outcome back): Done, a failed load, a death or a deadline."""
        spec, events, say = self.spec, self.events, self.sup.say
        rules = self.sup.rules
        while True:
            if self.sup.cancelled():
                raise Cancelled(f"{spec.name}: stopped")  # the caller's `finally` closes the worker
            if self.conn.poll(0.1):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:
                    break
                self.last = time.monotonic()
                if isinstance(msg, Loaded):
                    events.loaded(msg)
                    self.phase, self.deadline = "warm-up", rules.task_timeout_s
                elif isinstance(msg, LoadFailed):
                    status = "skipped" if msg.skipped else "error"
                    error = (msg.error if msg.skipped else
                             f"{'load' if self.phase == 'loading' else 'warm-up'} failed: {msg.error}")
                    say(f"{status}: {spec.name}: {error}")
                    events.failed(list(self.remaining), status, error, msg.traceback)
                    return _Outcome([], retry=False, gave_up=GaveUp(status, error, msg.traceback))
                elif isinstance(msg, Ready):
                    self.phase = "tasks"
                elif isinstance(msg, Started):
                    self.current = msg.task
                    events.started(msg.task)
                elif isinstance(msg, Finished):
                    events.finished(msg)
                    if msg.task in self.remaining:
                        self.remaining.remove(msg.task)
                    self.current = None
                elif isinstance(msg, Done):
                    return _Outcome(self.remaining, retry=False)
                if reached is not None and reached(msg):
                    return None
            elif not self.proc.is_alive():
                break
            elif time.monotonic() - self.last > self.deadline:
                self.proc.kill()
                self.proc.join(timeout=5)
                where = Supervisor._where(self.phase, self.current, self.workload)
                error = f"timed out after {self.deadline:.0f} s {where}; raise --timeout if the model is just slow"
                say(f"error: {spec.name}: {error}")
                if self.current is None:  # loading or warm-up: it would time out again
                    return self._fail_rest(error)
                events.failed([self.current], "error", error)
                self.remaining.remove(self.current)
                return _Outcome(self.remaining, retry=True)
        # The pipe closed or the process ended without saying Done: it died.
        self.proc.join(timeout=5)
        hint = exit_hint(self.proc.exitcode)
        error = (f"worker process died ({signal_name(self.proc.exitcode)}) "
                 f"{Supervisor._where(self.phase, self.current, self.workload)}" + (f": {hint}" if hint else ""))
        tb = _read(self.crash_log)
        say(f"error: {spec.name}: {error}")
        if self.current is None:
            # Before any task, or between tasks: loading and warm-up deaths recur at every
            # start, so nothing is retried.
            if self.phase != "tasks":
                return self._fail_rest(error + "; not retried: it would recur at every start", tb)
            return _Outcome(self.remaining, retry=True)
        events.failed([self.current], "error", error, tb)
        self.remaining.remove(self.current)
        return _Outcome(self.remaining, retry=True)

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()
        if self.pace is not None:
            self.pace.close()
        Path(self.crash_log).unlink(missing_ok=True)


def _read(path: str, limit: int = 20_000) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()
