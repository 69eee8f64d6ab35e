"""What a worker process does with a loaded model: a workload is a list of numbered tasks plus
how to warm up and how to run one task, all through the adapter's public methods.

Workloads travel to the worker process (pickled), so they hold plain data; the little state
they keep while running (which speed tests have been warmed up) lives in the worker's copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.records import Measurement, Sample


class SampleRefused(ValueError):
    """A sample its suite refused when it was built (an image path outside the dataset, a URL
    the image checks refused); the message says why, and becomes the sample's error row."""


@dataclass(frozen=True)
class SuiteWorkload:
    """Suite samples: one generation per task, after `warmup` untimed generations."""

    tasks: tuple[tuple[int, Sample], ...]
    warmup: int = 1
    reuse_prefix: bool = False
    # The sample warmed up on; default the first task's. A run in rounds gives every round of a
    # model the same one, so a warm-up that crashes does so in every round, and one that works
    # never depends on which share of the samples the round drew.
    warmup_sample: Sample | None = None

    def items(self) -> Iterable[tuple[int, Sample]]:
        return self.tasks

    def subset(self, ids: Iterable[int]) -> SuiteWorkload:
        keep = set(ids)
        return replace(self, tasks=tuple(t for t in self.tasks if t[0] in keep))

    def describe(self, task: int) -> str:
        sample = dict(self.tasks).get(task)
        return f"sample {sample.id}" if sample is not None else f"task {task}"

    def warm_up(self, adapter: Any) -> None:
        # MLX compiles kernels on first use (seconds on a CPU); untimed warm-up keeps that cost
        # out of the first sample. A Python error here is left for the real sample to report;
        # a native crash ends the process, and the supervisor says it happened at warm-up.
        runnable = [s for _, s in self.tasks if not s.problem]  # a refused sample cannot warm anything up
        for _ in range(self.warmup if runnable else 0):
            first = self.warmup_sample or runnable[0]
            try:
                adapter.generate(first, first.max_tokens)
            except Exception:
                break
        # After the warm-up, so the first measured sample does not reuse the warm-up's prefix.
        if self.reuse_prefix and hasattr(adapter, "enable_prefix_reuse"):
            adapter.enable_prefix_reuse()

    def run(self, adapter: Any, sample: Sample) -> Measurement:
        if sample.problem:  # refused when the suite was built: this sample's row says why
            raise SampleRefused(sample.problem)
        return adapter.generate(sample, sample.max_tokens)

    @staticmethod
    def model_seconds(result: Any) -> float | None:
        """The task's time spent by the model, or preparing what any caller must give it."""
        model_s = getattr(result, "model_s", None)
        return None if model_s is None else model_s + (getattr(result, "inputs_s", None) or 0.0)


# What the speed tests measure; part of every test's hash (harness/run/speed.py).
TG_PROMPT_TOKENS = 16  # the short context a tg test decodes from
IMAGE_QUESTION = "Describe this image."  # the question an img test asks about its noise image


@dataclass(frozen=True)
class SpeedTest:
    kind: str  # pp | tg | img
    value: int  # prompt tokens, generated tokens, or image side in pixels
    repeat: int

    @property
    def name(self) -> str:
        return f"{self.kind}{self.value}"


@dataclass(frozen=True)
class SpeedWorkload:
    """llama-bench-style tests (harness/run/speed.py): each test shape is warmed up on its first
    repetition, since every shape compiles its own kernels."""

    tasks: tuple[tuple[int, SpeedTest], ...]
    warmup: int = 1
    seed: int = 0
    scratch: str = ""  # where the noise images go
    _warm: set[str] = field(default_factory=set, compare=False, repr=False)

    def items(self) -> Iterable[tuple[int, SpeedTest]]:
        return self.tasks

    def subset(self, ids: Iterable[int]) -> SpeedWorkload:
        keep = set(ids)
        return replace(self, tasks=tuple(t for t in self.tasks if t[0] in keep), _warm=set())

    def describe(self, task: int) -> str:
        test = dict(self.tasks).get(task)
        return f"{test.name} (repetition {test.repeat})" if test else f"task {task}"

    def warm_up(self, adapter: Any) -> None:
        if not hasattr(adapter, "speed_test"):
            raise TypeError(f"speed sweeps need an in-process MLX adapter; {type(adapter).__name__} has no speed_test")

    def run(self, adapter: Any, test: SpeedTest) -> dict[str, Any]:
        if test.name not in self._warm:
            for _ in range(self.warmup):
                adapter.speed_test(test.kind, test.value, self.seed, Path(self.scratch))
            self._warm.add(test.name)
        return adapter.speed_test(test.kind, test.value, self.seed, Path(self.scratch))

    @staticmethod
    def model_seconds(result: Any) -> float | None:
        return None
