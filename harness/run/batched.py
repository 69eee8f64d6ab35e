"""The accuracy mode's workload: a model's samples answered at the machine's throughput, not
timed one request at a time.

It runs in the worker process under the supervisor like every workload (harness/worker.py), so
deadlines, crashes and restarts follow the same rules: the worker asks for one task at a time, in
plan order; the first task of a batch generates the whole batch (through the adapter's
`generate_batch`), and the batch's other tasks are then answered from what it produced. A crash
or a timeout during a batch costs the task that started it; a fresh worker takes the rest.

- **Batch size**: `batch_size` when given, else the adapter's `batch_capacity` (the in-process MLX
  adapter: what the free memory holds, from the KV bytes per token; harness/memory_safety.py). An
  adapter that sends requests (openai) keeps `in_flight` requests at once instead.
- **Alone**: a sample the adapter says cannot join a batch (the in-process MLX adapter: several
  images on an architecture that takes one), and every sample of an adapter with no batched
  path, goes one at a time through `generate`, the latency path, and its row says why
  (`batch_fallback`). A batch that fails is generated again one
  sample at a time; if each then succeeds, the model cannot batch (its processor, say) and its
  remaining samples go alone; if a sample fails alone too, the failure was that sample's own.
  A batch refused by the memory check is halved until it fits.
- **Pass**: each row carries the pass's seconds, samples and generated tokens when its batch
  finished, so the pass's throughput (samples/s, tokens/s) is recomputed from the rows alone
  (harness/judge/throughput.py). Warm-up and checking are outside the pass's clock.
- **Checking**: the first `verify` batched samples are also generated alone, and the row keeps
  that answer (`solo_text`), so the run reports which answers batching changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.core.records import Measurement, Sample

NO_BATCH_PATH = "this adapter generates one request at a time"


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".strip()


@dataclass
class _Pass:
    """The worker's running state (its copy of the workload only)."""

    pos: int = 0
    t0: float | None = None
    paused: float = 0.0  # seconds spent checking answers: outside the pass's clock
    samples: int = 0
    tokens: int = 0
    size: int = 1
    cannot: str = ""  # why this model cannot batch, once a batch showed it
    checked: int = 0
    done: dict[int, Any] = field(default_factory=dict)  # task -> Measurement or the exception to raise


@dataclass(frozen=True)
class BatchedWorkload:
    tasks: tuple[tuple[int, Sample], ...]
    warmup: int = 1
    batch_size: int | None = None  # None: what the adapter says the memory holds
    in_flight: int = 4  # adapters that send requests: how many at once
    verify: int = 0  # batched samples per model also generated alone, to check the answers
    # One of N workers answering the model's samples at once (harness/run/data_parallel.py):
    # its number, stamped on its rows, and the share of the free memory its batches may take.
    worker: int | None = None
    memory_share: float = 1.0
    _state: _Pass = field(default_factory=_Pass, compare=False, repr=False)

    def items(self) -> Iterable[tuple[int, Sample]]:
        return self.tasks

    def subset(self, ids: Iterable[int]) -> BatchedWorkload:
        keep = set(ids)
        return replace(self, tasks=tuple(t for t in self.tasks if t[0] in keep), _state=_Pass())

    def describe(self, task: int) -> str:
        sample = dict(self.tasks).get(task)
        return f"the batch starting at sample {sample.id}" if sample is not None else f"task {task}"

    @staticmethod
    def model_seconds(result: Any) -> float | None:
        return None  # a batch's time is shared by its samples: no per-sample harness cost

    # -- in the worker ---------------------------------------------------------------------------
    def _alone(self, adapter: Any, sample: Sample) -> str:
        if not hasattr(adapter, "generate_batch"):
            return NO_BATCH_PATH
        return self._state.cannot or adapter.batchable(sample)

    def _concurrent(self, adapter: Any) -> bool:
        return getattr(adapter, "CONCURRENT", False)

    def warm_up(self, adapter: Any) -> None:
        st = self._state
        if not self.tasks:
            return
        first = self.tasks[0][1]
        for _ in range(self.warmup):
            try:
                adapter.generate(first, first.max_tokens)
            except Exception:
                break
        batchable = [s for _, s in self.tasks if not self._alone(adapter, s)]
        if self._concurrent(adapter):
            st.size = self.batch_size or self.in_flight
            if self.warmup and st.size > 1 and len(self.tasks) > 1:
                # A server meets its first requests at once with work of its own (mlx_vlm.server
                # on the H200: 2.2 s before the first concurrent answers, against 0.1-0.4 s after);
                # like one request's warm-up, that is not the throughput being measured.
                try:
                    adapter.generate_batch([s for _, s in self.tasks[:st.size]], in_flight=st.size)
                except Exception:
                    pass  # the pass finds out again, and says why
        elif batchable:
            st.size = self.batch_size or adapter.batch_capacity(batchable, share=self.memory_share)[0]
            if self.warmup and st.size > 1 and len(batchable) > 1:
                # Batched decoding compiles kernels of its own shapes: warm those up too.
                try:
                    adapter.generate_batch(batchable[:2])
                except Exception:
                    pass  # the pass finds out again, and says why

    def run(self, adapter: Any, sample: Sample) -> Measurement:
        st = self._state
        task = self.tasks[st.pos][0]
        st.pos += 1
        if task in st.done:
            return _give(st.done.pop(task))
        if st.t0 is None:
            st.t0 = time.perf_counter()
        reason = self._alone(adapter, sample)
        if reason or st.size <= 1:
            m = adapter.generate(sample, sample.max_tokens)
            return self._stamp([m], 1, reason or "batch size 1")[0]
        group = [(task, sample)]
        for t, s in self.tasks[st.pos:]:
            if len(group) >= st.size * (4 if self._concurrent(adapter) else 1):
                break
            if t not in st.done and not self._alone(adapter, s):
                group.append((t, s))
        results = self._generate(adapter, [s for _, s in group])
        for (t, _), r in zip(group[1:], results[1:], strict=True):
            st.done[t] = r
        return _give(results[0])

    def _generate(self, adapter: Any, samples: list[Sample]) -> list[Any]:
        from harness.measure.memory_safety import WontFit

        st = self._state
        if self._concurrent(adapter):
            results = adapter.generate_batch(samples, in_flight=st.size)
            return self._checked(adapter, samples, self._stamp(results, st.size, ""))
        try:
            results = adapter.generate_batch(samples)
        except WontFit:
            if len(samples) == 1:
                raise
            half = len(samples) // 2  # the memory moved since the size was chosen: smaller batches
            st.size = max(1, half)
            return self._generate(adapter, samples[:half]) + self._generate(adapter, samples[half:])
        except Exception as e:
            return self._alone_after(adapter, samples, e)
        return self._checked(adapter, samples, self._stamp(results, len(samples), ""))

    def _alone_after(self, adapter: Any, samples: list[Sample], e: Exception) -> list[Any]:
        """A batch that failed, generated again one sample at a time."""
        why = f"the batch failed ({_one_line(e)})"
        results: list[Any] = []
        for s in samples:
            try:
                results.append(adapter.generate(s, s.max_tokens))
            except Exception as own:
                results.append(own)
        if not any(isinstance(r, Exception) for r in results):
            self._state.cannot = f"cannot batch: {_one_line(e)}"
            why = self._state.cannot
        return self._stamp(results, 1, why)

    def _stamp(self, results: list[Any], size: int, fallback: str) -> list[Any]:
        """Every result with its batch and the pass's progress now that its batch is done."""
        st = self._state
        ok = [r for r in results if isinstance(r, Measurement)]
        st.samples += len(results)
        st.tokens += sum(r.generated_tokens or 0 for r in ok)
        pass_s = time.perf_counter() - (st.t0 or time.perf_counter()) - st.paused
        return [replace(r, batch_size=size, batch_fallback=fallback or None, pass_s=pass_s, pass_samples=st.samples,
                        pass_generated_tokens=st.tokens, pass_worker=self.worker) if isinstance(r, Measurement) else r for r in results]

    def _checked(self, adapter: Any, samples: list[Sample], results: list[Any]) -> list[Any]:
        """The first `verify` batched answers beside the one-at-a-time path's, off the pass's clock."""
        st = self._state
        out = []
        for s, r in zip(samples, results, strict=True):
            if st.checked < self.verify and isinstance(r, Measurement):
                t = time.perf_counter()
                try:
                    r = replace(r, solo_text=adapter.generate(s, s.max_tokens).text)
                    st.checked += 1
                except Exception:
                    pass  # the answer stands unchecked; its sample's own failure is not the batch's
                st.paused += time.perf_counter() - t
            out.append(r)
        return out


def _give(result: Any) -> Measurement:
    if isinstance(result, BaseException):
        raise result
    return result
