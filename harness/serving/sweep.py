"""A load run end to end: plan the steps, run them, turn each request into a scored row.

Durability: each request is appended to the run's journal (harness.serving.journal) as it ends,
in batches every ~100 ms, and load.parquet is written atomically after the warm-up and after every
step (and on Ctrl-C), so no finished request is lost even to a kill mid-step: `read_rows` adds the
journal's rows back. The parquet is never rewritten during a step: serialising every row on the
event loop would delay the sends and show up as the client's own lag.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.metrics import score
from harness.serving.client import Attempt
from harness.serving.journal import JOURNAL_NAME, Journal
from harness.serving.loadgen import Step, Target, run_sweep
from harness.serving.requests import LoadRequest
from harness.serving.rows import FILE_NAME, write_rows


@dataclass(frozen=True)
class Plan:
    """What to sweep: concurrencies (closed loop) or rates (open loop), and how long each step is."""

    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    arrivals: str = "poisson"
    seed: int = 0
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0

    def steps(self) -> list[Step]:
        if bool(self.concurrency) == bool(self.rates):
            raise ValueError("give either concurrencies or rates to sweep")
        if self.requests is None and self.duration_s is None:
            raise ValueError("give a request count or a duration per step")
        if (self.requests is not None and self.requests < 1) or (self.duration_s is not None and not self.duration_s > 0):
            raise ValueError("a step needs at least one request and a positive duration")
        out = [Step(-1, "warmup", concurrency=1, requests=self.warmup)] if self.warmup else []
        for i, c in enumerate(self.concurrency):
            if c < 1:
                raise ValueError(f"concurrency {c}: must be >= 1")
            out.append(Step(i, "concurrency", concurrency=c, requests=self.requests, duration_s=self.duration_s))
        for i, r in enumerate(self.rates):
            if not r > 0:
                raise ValueError(f"rate {r:g}: must be > 0 requests/s")
            out.append(Step(i, "rate", rate=r, arrivals=self.arrivals, seed=self.seed + i, requests=self.requests,
                            duration_s=self.duration_s))
        return out


@dataclass
class LoadRun:
    run_id: str
    run_dir: Path
    target: Target
    images_as: str
    environment: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    journal: Journal | None = None
    _env_json: str = ""

    @property
    def path(self) -> Path:
        return self.run_dir / FILE_NAME

    @property
    def journal_path(self) -> Path:
        return self.run_dir / JOURNAL_NAME

    def open_journal(self) -> Journal:
        self.journal = Journal(self.journal_path, self._journal_row, shared={"environment": self._environment_json()})
        return self.journal

    def _environment_json(self) -> str:
        if not self._env_json:
            self._env_json = json.dumps(self.environment, sort_keys=True, default=str)
        return self._env_json

    def request_done(self, step: Step, i: int, req: LoadRequest, a: Attempt) -> None:
        """A request ended mid-step: into the journal (one append; the row is built at the flush)."""
        if self.journal is not None:
            self.journal.add(step, i, req, a, time.time())

    def _journal_row(self, step: Step, i: int, req: LoadRequest, a: Attempt, now_unix: float) -> dict[str, Any]:
        # The step's start in wall-clock time: now, less the request's end on the step's clock.
        # Its duration is unknown until the step ends (read_rows fills it in for a killed step).
        # The environment is on the journal's first line, not on every row.
        row = self.row(step, i, req, a, now_unix - a.end_s, math.nan)
        del row["environment"]
        return row

    def row(self, step: Step, i: int, req: LoadRequest, a: Attempt, start_unix: float, duration_s: float) -> dict[str, Any]:
        usage = a.usage or {}
        ok = a.status == "ok"
        return {
            "run_id": self.run_id, "step": step.index, "mode": step.mode,
            "target_concurrency": step.concurrency, "target_rate": step.rate,
            "arrivals": step.arrivals if step.mode == "rate" else "", "seed": step.seed if step.mode == "rate" else None,
            "max_inflight": self.target.max_inflight, "request_index": i,
            "model": self.target.model, "base_url": self.target.base_url,
            "suite": req.sample.suite, "suite_hash": req.suite_hash, "sample_id": req.sample.id,
            "images_as": self.images_as, "max_tokens": req.max_tokens,
            "step_start_unix": start_unix, "step_duration_s": duration_s,
            "planned_s": a.planned_s, "sent_s": a.sent_s, "end_s": a.end_s,
            "chunk_times_s": list(a.chunk_times_s), "chunk_has_content": list(a.chunk_has_content),
            "first_chunk_s": next((t for t, c in zip(a.chunk_times_s, a.chunk_has_content, strict=True) if c), math.nan),
            "output_tokens_usage": _int(usage.get("completion_tokens")),
            "output_tokens_counted": a.counted_tokens,
            "prompt_tokens": _int(usage.get("prompt_tokens")),
            "status": a.status, "error": a.error, "note": ignored_max_tokens(req.max_tokens, a),
            "http_status": a.http_status,
            "finish_reason": a.finish_reason, "output": a.text, "metric": req.sample.metric,
            "score": score(a.text, req.sample) if ok else None,
            "environment": self._environment_json(),
        }

    def step_done(self, step: Step, sent: list[tuple[int, LoadRequest, Attempt]], start_unix: float,
                  duration_s: float) -> None:
        for i, req, a in sent:
            if math.isnan(a.sent_s):
                continue  # scheduled but never sent (the sweep stopped first): nothing to record
            self.rows.append(self.row(step, i, req, a, start_unix, duration_s))
        if self.journal is not None:
            self.journal.flush()  # first the journal: rows the parquet will hold are already safe there
        write_rows(self.rows, self.path)


def run_load(run: LoadRun, plan: Plan, requests: list[LoadRequest],
             progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run the plan against run.target; rows land in run.rows and run.path as steps end."""
    steps = plan.steps()

    def on_step(step: Step, sent: list, start_unix: float, duration_s: float) -> None:
        run.step_done(step, sent, start_unix, duration_s)
        if progress:
            ok = sum(a.status == "ok" for _, _, a in sent)
            load = f"concurrency {step.concurrency}" if step.mode != "rate" else f"rate {step.rate:g}/s"
            progress(f"step {step.index} ({step.mode}, {load}): {len(sent)} sent, {ok} ok, {duration_s:.2f} s")

    journal = run.open_journal()

    async def main() -> None:
        flusher = asyncio.create_task(journal.run())
        try:
            await run_sweep(steps, run.target, requests, on_step, run.request_done)
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    written = False
    try:
        asyncio.run(main())
        written = True
    except KeyboardInterrupt:
        written = True  # the interrupted step's rows were written on the way out (run_sweep's on_step)
        raise
    finally:
        # Every row is in load.parquet once the sweep ended or stopped cleanly: the journal goes.
        # After any other failure it stays, and read_rows recovers its rows.
        journal.close(remove=written and run.path.exists())
    return run.rows


def ignored_max_tokens(max_tokens: int | None, a: Attempt) -> str:
    """"server ignored max_tokens: 64 > 8" when the answer holds more tokens than were asked for
    (the server's usage count, else the text chunks received); "" otherwise."""
    usage = _int((a.usage or {}).get("completion_tokens"))
    got = max(usage or 0, a.counted_tokens)
    if max_tokens is None or got <= max_tokens:
        return ""
    return f"server ignored max_tokens: {got} > {max_tokens}"


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
