"""The load generator: closed-loop steps (a fixed number of requests in flight) and open-loop steps
(requests sent at planned times, Poisson with a seed or evenly spaced), one asyncio event loop.

Honest by construction:
  - every request records when it was due and when it was sent; the gap is the client's own
    scheduling lag, reported per step (harness.serving.metrics flags a late client);
  - requests in flight are bounded (`max_inflight`); an open-loop request that finds the bound
    full waits, and that wait shows as lag rather than disappearing;
  - a step ends at its deadline whatever the server does: requests still running are cut off
    and kept as `timeout` rows with the chunks they had received;
  - each request is handed to `on_request` the moment it ends (harness.serving.journal makes it
    durable within ~100 ms), rows are handed to `on_step` as each step ends, and on Ctrl-C
    (task cancellation) the rows of the interrupted step, finished or cut off, are handed over
    before stopping.
Lateness: an open-loop request is late by sent − planned (its planned time is fixed in advance).
A closed-loop request is due the moment its slot freed (the end of the slot's previous request),
so its lag is slot freed → next send: the client's own turnaround, never the server's time.
Open-loop send times are precomputed (as vLLM does); unlike vLLM they are not rescaled to make
N requests span exactly N / rate seconds: the planned times are the Poisson process itself.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.serving.client import Attempt, stream_chat
from harness.serving.http import Endpoint, Pool
from harness.serving.requests import LoadRequest

ARRIVALS = ("poisson", "constant")
# asyncio wakes a timer up to about a millisecond late (epoll counts whole milliseconds), so the
# sender sleeps until just before a planned time and yields to the loop for the rest.
_SPIN_S = 0.0015


RequestDone = Callable[["Step", int, LoadRequest, Attempt], Any]


@dataclass(frozen=True)
class Step:
    index: int
    mode: str  # "concurrency" | "rate" | "warmup"
    concurrency: int | None = None
    rate: float | None = None
    arrivals: str = "poisson"
    seed: int | None = None
    requests: int | None = None  # stop after this many sends
    duration_s: float | None = None  # or stop sending after this long


@dataclass(frozen=True)
class Target:
    base_url: str  # ending in /v1
    model: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 60.0  # one request, and a step's drain after its last send
    max_inflight: int = 256


def chat_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


def planned_times(rate: float, arrivals: str, seed: int | None, *, requests: int | None = None,
                  duration_s: float | None = None) -> np.ndarray:
    """Send times (s from step start) of an open-loop step: the first at 0, then exponential gaps
    of mean 1/rate (Poisson) or exactly 1/rate (constant), until `requests` or `duration_s`."""
    if not rate > 0:
        raise ValueError(f"rate {rate}: must be > 0 requests/s")
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals {arrivals!r}: use one of {', '.join(ARRIVALS)}")
    n = requests if requests is not None else int(math.ceil(duration_s * rate * 1.5 + 20))
    if arrivals == "constant":
        t = np.arange(n, dtype=float) / rate
    else:
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
        t = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    if duration_s is not None:
        t = t[t < duration_s]
    return t


async def _wait_until(t_abs: float) -> None:
    """Sleep until perf_counter() reaches t_abs, finishing by yielding to the loop."""
    left = t_abs - time.perf_counter()
    if left > _SPIN_S:
        await asyncio.sleep(left - _SPIN_S)
    while time.perf_counter() < t_abs:
        await asyncio.sleep(0)


class _StepRun:
    """State of one step, so that an interruption can still hand over what it holds."""

    def __init__(self, step: Step, target: Target, requests: list[LoadRequest], pool: Pool,
                 on_request: RequestDone | None = None) -> None:
        if not requests:
            raise ValueError("no requests to send")
        if step.requests is None and step.duration_s is None:
            raise ValueError("a step needs a request count or a duration")
        self.step, self.target, self.requests = step, target, requests
        self.sent: list[tuple[int, LoadRequest, Attempt]] = []
        self.start_unix = time.time()
        self.t0 = time.perf_counter()
        self.duration_s = math.nan
        self.pool = pool
        self.on_request = on_request
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **dict(target.headers)}

    def _next(self) -> tuple[int, LoadRequest] | None:
        i = len(self.sent)
        if self.step.requests is not None and i >= self.step.requests:
            return None
        return i, self.requests[i % len(self.requests)]

    def _issue_over(self) -> bool:
        d = self.step.duration_s
        return d is not None and time.perf_counter() - self.t0 >= d

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.start_unix = time.time()
        self.t0 = time.perf_counter()
        # The step's deadline: its sending window plus one request's timeout to drain. Without
        # a duration, each request's own timeout bounds the step.
        window = self.step.duration_s
        self.deadline = loop.time() + window + self.target.timeout_s if window is not None else math.inf
        try:
            if self.step.mode == "rate":
                await self._open_loop()
            else:
                await self._closed_loop(self.step.concurrency or 1)
        finally:
            ends = [a.end_s for _, _, a in self.sent if not math.isnan(a.end_s)]
            self.duration_s = max([time.perf_counter() - self.t0 if not ends else max(ends), 0.0])

    def _request_deadline(self, loop: asyncio.AbstractEventLoop) -> float:
        return min(loop.time() + self.target.timeout_s, self.deadline)

    async def _one(self, i: int, req: LoadRequest, a: Attempt) -> None:
        loop = asyncio.get_running_loop()
        await stream_chat(self.pool, req.body, self.headers, a, self.t0, self._request_deadline(loop))
        if self.on_request is not None:  # it ended (not cancelled): hand it over at once
            self.on_request(self.step, i, req, a)

    async def _closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            planned = 0.0
            while not self._issue_over():
                nxt = self._next()
                if nxt is None:
                    return
                i, req = nxt
                a = Attempt(planned_s=planned)
                self.sent.append((i, req, a))
                await self._one(i, req, a)
                # the next request is due the moment this one ended: its slot freed then
                planned = a.end_s

        tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, self.target.max_inflight))]
        await _gather_or_cancel(tasks)

    async def _open_loop(self) -> None:
        s = self.step
        times = planned_times(s.rate or 0.0, s.arrivals, s.seed, requests=s.requests, duration_s=s.duration_s)
        bound = asyncio.Semaphore(self.target.max_inflight)
        tasks: list[asyncio.Task] = []

        async def fire(i: int, req: LoadRequest, a: Attempt) -> None:
            try:
                await self._one(i, req, a)
            finally:
                bound.release()

        try:
            for planned in times:
                nxt = self._next()
                if nxt is None:
                    break
                await _wait_until(self.t0 + planned)
                await bound.acquire()  # a full bound delays the send: it shows as lag
                i, req = nxt
                a = Attempt(planned_s=float(planned))
                self.sent.append((i, req, a))
                tasks.append(asyncio.create_task(fire(i, req, a)))
        except BaseException:  # Ctrl-C: stop the requests in flight too, keeping what they got
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        await _gather_or_cancel(tasks)


async def _gather_or_cancel(tasks: list[asyncio.Task]) -> None:
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


StepDone = Callable[[Step, list[tuple[int, LoadRequest, Attempt]], float, float], Any]


async def run_sweep(steps: list[Step], target: Target, requests: list[LoadRequest], on_step: StepDone,
                    on_request: RequestDone | None = None) -> None:
    """Run the steps in order; `on_step(step, sent, start_unix, duration_s)` gets each step's
    requests as it ends, and the interrupted step's requests if the sweep is cancelled;
    `on_request(step, i, request, attempt)`, if given, each request the moment it ends (it runs
    on the event loop: it must return at once).

    One connection pool serves the whole sweep, so the warm-up also opens the connections. The
    objects alive now are frozen out of the garbage collector's scans (as vLLM's client does), so
    a full collection cannot stall a send for milliseconds.
    """
    gc.collect()
    gc.freeze()
    pool = Pool(Endpoint.parse(chat_url(target.base_url)))
    try:
        for step in steps:
            run = _StepRun(step, target, requests, pool, on_request)
            try:
                await run.run()
            finally:
                on_step(step, run.sent, run.start_unix, run.duration_s)
    finally:
        await pool.close()
        gc.unfreeze()
