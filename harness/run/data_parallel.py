"""The accuracy mode's data parallelism: one model's samples answered by several worker processes
at once, where one worker would leave the machine's cores idle.

MLX's CPU backend computes on one thread (a 1024 × 1024 matmul here: CPU seconds equal wall
seconds, and two such processes side by side each keep 85 % of their speed), so on a CPU one
worker uses one core of N. As lmms-eval and VLMEvalKit split a benchmark over processes
(accelerate, torchrun), the model's samples are dealt to the workers in turn; each loads the
model, batches its part (harness/run/batched.py) and stamps its rows with its number, so its pass
keeps its own clock and the model's pass is the span they cover together
(harness/judge/throughput.py).

On a GPU (Metal, CUDA) the workers would share one device: one worker. An adapter that sends
requests keeps requests in flight instead, and torch spreads over the cores itself. The latency
mode never uses this: its samples are timed one at a time, alone on the machine.

The workers' supervisors run in threads; every event they raise is handed to the caller's thread
through a queue, so rows, the response cache and the progress bar are touched by one thread only.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from harness.run.supervisor import Cancelled

# Fewer samples a worker than this and its load and warm-up cost more than the parallel pass saves.
MIN_SAMPLES_PER_WORKER = 8


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def worker_count(requested: int | None, *, one_thread: bool, backend: str, samples: int,
                 fits: Callable[[int], bool], cores: int | None = None) -> tuple[int, str]:
    """How many workers answer one model's `samples` at once, and why. `requested` (--workers)
    wins, less what memory refuses; else one per core where the adapter computes on one thread of
    MLX's CPU backend, at most one per MIN_SAMPLES_PER_WORKER samples."""
    if requested is not None:
        n = max(1, min(requested, samples))
        why = f"--workers {requested}"
    elif not one_thread:
        return 1, "the adapter is not one-threaded MLX"
    elif backend != "cpu":
        return 1, f"MLX computes on the {backend} GPU: one worker has it"
    else:
        cores = cores or usable_cores()
        n = max(1, min(cores, samples // MIN_SAMPLES_PER_WORKER))
        why = f"MLX's CPU backend computes on one thread: a worker for each of {cores} cores"
        if n < cores:
            why += f", at least {MIN_SAMPLES_PER_WORKER} samples each"
    while n > 1 and not fits(n):
        n -= 1
        why += f"; memory holds {n}"
    return n, why


def deal(items: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    """`items` dealt to `n` workers in turn: each part has every suite's samples in their mix of
    image shapes and lengths, so the parts take about the same time."""
    return [tuple(items[k::n]) for k in range(n) if items[k::n]]


class _Relay:
    """A supervisor's events, queued for the caller's thread."""

    def __init__(self, q: queue.Queue) -> None:
        self.q = q

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.q.put((name, args))


def run_parallel(run_one: Callable[[Any, Any, Callable[[], bool]], Any], workloads: Sequence[Any],
                 events: Any) -> list[Any]:
    """Each workload through `run_one(workload, events, stopped)` (a supervisor's `run`, polling
    `stopped`) in its own thread, all at once; every event reaches `events` in this thread. On an
    interrupt here every worker is stopped within a poll. Returns each run's result."""
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    results: list[Any] = [None] * len(workloads)
    errors: list[BaseException] = []
    done = object()

    def work(i: int, workload: Any) -> None:
        try:
            results[i] = run_one(workload, _Relay(q), stop.is_set)
        except Cancelled:
            pass
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)
        finally:
            q.put((done, ()))

    threads = [threading.Thread(target=work, args=(i, w), name=f"vlm-harness worker {i + 1}", daemon=True)
               for i, w in enumerate(workloads)]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            name, args = q.get()
            if name is done:
                running -= 1
            else:
                getattr(events, name)(*args)
    finally:
        stop.set()  # on an interrupt, each thread's supervisor kills its worker at its next poll
        for t in threads:
            t.join(timeout=15)
    if errors:
        raise errors[0]
    return results
