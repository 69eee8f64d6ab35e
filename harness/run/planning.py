"""Planning a suite run: which model measures which sample, how often, under which limit.

A pure step before anything runs: models are resolved, suites loaded, and every (model, suite,
sample, repetition) not already finished becomes a numbered task. What cannot be planned (an
unknown model, a bad suite file) becomes a problem the run records as an error row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.core.records import Sample
from harness.models import ModelError, ModelSpec, resolve, with_adapter
from harness.suites import Suite, SuiteError


@dataclass(frozen=True)
class Settings:
    """How a run measures; recorded in its plan (run.json)."""

    repeats: int = 1
    warmup: int = 1
    limit: int | None = None
    max_tokens: int | None = None
    reuse_prefix: bool = False
    adapter: str | None = None  # run every model through this adapter instead of its own
    base_url: str = ""
    # Accuracy mode (harness/run/batched.py): answers at the machine's throughput, no per-request timing.
    mode: str = "latency"  # latency | accuracy
    batch_size: int | None = None  # None: what the free memory holds
    concurrency: int = 4  # requests in flight, for adapters that send requests
    verify: int = 0  # batched answers per model also generated alone, to check them
    cache: bool = True  # read and write the response cache (harness/run/response_cache.py)


@dataclass(frozen=True)
class Task:
    index: int
    model: ModelSpec
    suite: Suite
    sample: Sample  # max_tokens already the limit that applies: the row records what the worker used
    repeat: int


@dataclass(frozen=True)
class Problem:
    model: str  # "*" when it concerns a suite
    suite: str  # "*" when it concerns a model
    error: str


@dataclass(frozen=True)
class Plan:
    models: tuple[tuple[ModelSpec, tuple[Task, ...]], ...]
    problems: tuple[Problem, ...]

    @property
    def total(self) -> int:
        return sum(len(tasks) for _, tasks in self.models)


def token_limit(settings: Settings, spec: ModelSpec, sample: Sample) -> int:
    """--max-tokens, else the model file's limit, else the suite's."""
    return settings.max_tokens or spec.max_tokens or sample.max_tokens


def make_plan(models: list[str], suites: list[str], settings: Settings, *, load_suite: Callable[..., Suite],
              done: set[tuple] = frozenset()) -> Plan:
    """Every task still to measure; `done` holds (model, suite, suite_hash, sample_id, repeat)."""
    problems: list[Problem] = []
    loaded: list[Suite] = []
    for name in suites:
        try:
            loaded.append(load_suite(name, settings.limit))
        except SuiteError as e:
            problems.append(Problem("*", name, str(e)))
    planned = []
    index = 0
    for name in models:
        try:
            spec = resolve(name)
            if settings.adapter:
                spec = with_adapter(spec, settings.adapter, settings.base_url)
        except ModelError as e:
            problems.append(Problem(name, "*", str(e)))
            continue
        tasks = []
        for suite in loaded:
            samples = suite.samples[: settings.limit] if settings.limit else suite.samples
            if settings.reuse_prefix:  # questions on one image back to back, so its prefix can be reused
                first: dict[tuple[str, ...], int] = {}
                samples = sorted(samples, key=lambda s: first.setdefault(s.images, len(first)))
            for sample in samples:
                limited = replace(sample, max_tokens=token_limit(settings, spec, sample))
                for rep in range(settings.repeats):
                    if (spec.name, suite.name, suite.hash, sample.id, rep) in done:
                        continue
                    tasks.append(Task(index, spec, suite, limited, rep))
                    index += 1
        planned.append((spec, tuple(tasks)))
    return Plan(tuple(planned), tuple(problems))
