"""Planning a suite run: which model measures which sample, how often, under which limit, in
which round.

A pure step before anything runs: models are resolved, suites loaded, and every (model, suite,
sample, repetition) not already finished becomes a numbered task. What cannot be planned (an
unknown model, a bad suite file) becomes a problem the run records as an error row.

Rounds (as asv runs its benchmarks): the samples of the suites, in order, are dealt into
`rounds` parts like cards (the k-th sample to round k mod rounds), and each round measures every model on its part, each in a
fresh worker, in an order rotated by one from round to round (A B C, B C A, C A B, ...). Load
that drifts during a run, and whatever the order of models does to them, so falls on every
model alike, and each round gives every model a figure measured close in time to the others'
(the unit the report's verdicts pair). Splitting rather than repeating keeps the total work that
of one pass; what rounds add is one model load and warm-up per model and round. A small run is
the exception: a round's paired figure is a median over its samples, and from a handful one slow
answer moves it, so a run with fewer than `round_samples` samples a model per round measures each
sample in several rounds (`rounds_per_sample`), up to every round.

Lockstep (the default where the round's models fit in memory together): inside a round, every
model's worker is loaded and warmed up in turn, then their samples alternate one by one, the
order reversed every other turn (A B, B A, A B, ...; `turns`). On a shared machine speed drifts
by tens of per cent from one second to the next; two models' answers to the same sample, taken
a few hundred milliseconds apart, differ mostly by what the models do, so a round's paired
figure (harness/core/stats.py `compare_rounds`) is far steadier than two blocks' would be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.core.records import Sample
from harness.models import ModelError, ModelSpec, resolve, with_adapter
from harness.run.shards import Shard
from harness.suites import Suite, SuiteError

# A round's paired figure is the median, over the samples both models answered in it, of their
# ratio. With 4 a round (16 samples a model in 4 rounds) a 25 % slower decode was named in 14 of
# 20 trials on a 2-core VM; with 12 a round, in 18 and 19 of 20; with 13-14 a round in six rounds
# (DEFAULT_ROUNDS), in 20 of 20 (benchmarks/verdict_trials.py planted).
ROUND_SAMPLES = 12


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
    rounds: int | None = None  # None: DEFAULT_ROUNDS with two or more models, else one
    round_samples: int = ROUND_SAMPLES  # a round's least samples a model; fewer: samples recur across rounds (0: never)
    lockstep: bool = True  # a round's models held loaded together, their samples alternated (see `turns`)
    # Accuracy mode (harness/run/batched.py): answers at the machine's throughput, no per-request timing.
    mode: str = "latency"  # latency | accuracy
    batch_size: int | None = None  # None: what the free memory holds
    concurrency: int = 4  # requests in flight, for adapters that send requests
    verify: int = 0  # batched answers per model also generated alone, to check them
    workers: int | None = None  # worker processes answering one model at once; None: one per core on MLX's CPU
    cache: bool = True  # read and write the response cache (harness/run/response_cache.py)
    shard: Shard | None = None  # measure only this part of the plan (harness/run/shards.py)


# Six rounds: a paired comparison over rounds has rounds − 1 degrees of freedom, and its 95 % t
# is 3.18 with four rounds, 2.57 with six, 2.36 with eight: at 12-14 samples a round, six found a
# 25 % slower decode in 20 trials of 20 where four found it in 18 and 19 (per-round spread
# 0.07-0.09 in log ratio on a 2-core VM). Each round adds a model load and warm-up per model, so eight would
# cost the bench (nine models) about 1.5 minutes more for little more. With two or three models
# each takes every place in the order equally often.
DEFAULT_ROUNDS = 6


def rounds_for(settings: Settings, n_models: int) -> int:
    if settings.mode == "accuracy":  # no timings to compare: one pass at the machine's throughput
        return 1
    if settings.rounds is not None:
        return max(1, int(settings.rounds))
    return DEFAULT_ROUNDS if n_models > 1 else 1


def rounds_per_sample(settings: Settings, samples: int, rounds: int) -> int:
    """In how many rounds each sample is measured (each time in a different round, the k-th
    visit's `repeat` after the first's): 1, the samples split between the rounds, unless that
    leaves a round fewer than `settings.round_samples` measurements a model; then enough for
    that, at most every round."""
    if rounds < 2 or settings.mode == "accuracy" or samples < 1 or settings.round_samples < 1:
        return 1
    return max(1, min(rounds, math.ceil(settings.round_samples * rounds / (samples * settings.repeats))))


def turns(counts: list[int]) -> list[tuple[int, int]]:
    """Lockstep order for one round: (model index, its place in this turn) for every task, given
    how many tasks each model has, in the round's order. Turn k takes one task of each model that
    has a k-th, in the round's order when k is even and reversed when odd, so each model is first
    as often as last and neither place's effect (a warm cache, the other's leftovers) favours one."""
    out = []
    for k in range(max(counts, default=0)):
        order = [i for i in range(len(counts)) if counts[i] > k]
        if k % 2:
            order.reverse()
        out += [(i, place) for place, i in enumerate(order)]
    return out


@dataclass(frozen=True)
class Task:
    index: int
    model: ModelSpec
    suite: Suite
    sample: Sample  # max_tokens already the limit that applies: the row records what the worker used
    repeat: int
    round: int = 0


@dataclass(frozen=True)
class Problem:
    model: str  # "*" when it concerns a suite
    suite: str  # "*" when it concerns a model
    error: str


@dataclass(frozen=True)
class Step:
    """One model's part of one round: measured by one fresh worker."""

    round: int
    position: int  # the model's place in this round's order
    model: ModelSpec
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Plan:
    models: tuple[tuple[ModelSpec, tuple[Task, ...]], ...]
    problems: tuple[Problem, ...]
    rounds: int = 1
    rounds_per_sample: int = 1

    @property
    def total(self) -> int:
        return sum(len(tasks) for _, tasks in self.models)

    def schedule(self) -> list[Step]:
        """The steps in the order they run: round by round, the models rotated by one each round."""
        steps = []
        n = len(self.models)
        for r in range(self.rounds):
            order = [self.models[(r + k) % n] for k in range(n)]
            for position, (spec, tasks) in enumerate(order):
                mine = tuple(t for t in tasks if t.round == r)
                if mine:
                    steps.append(Step(r, position, spec, mine))
        return steps


def token_limit(settings: Settings, spec: ModelSpec, sample: Sample) -> int:
    """--max-tokens, else the model file's limit, else the suite's."""
    return settings.max_tokens or spec.max_tokens or sample.max_tokens


def make_plan(models: list[str], suites: list[str], settings: Settings, *, load_suite: Callable[..., Suite],
              done: set[tuple] = frozenset()) -> Plan:
    """Every task still to measure; `done` holds (model, suite, suite_hash, sample_id, repeat).
    With `settings.shard`, only the tasks of that shard."""
    problems: list[Problem] = []
    loaded: list[Suite] = []
    for name in suites:
        try:
            loaded.append(load_suite(name, settings.limit))
        except SuiteError as e:
            problems.append(Problem("*", name, str(e)))
    planned = []
    index = 0
    rounds = rounds_for(settings, len(models))
    chosen = [(suite, suite.samples[: settings.limit] if settings.limit else suite.samples) for suite in loaded]
    visits = rounds_per_sample(settings, sum(len(samples) for _, samples in chosen), rounds)
    for name in models:
        try:
            spec = resolve(name)
            if settings.adapter:
                spec = with_adapter(spec, settings.adapter, settings.base_url)
        except ModelError as e:
            problems.append(Problem(name, "*", str(e)))
            continue
        tasks = []
        dealt = 0  # samples dealt to rounds so far, over all suites: rounds get equal shares
        for suite, samples in chosen:
            if settings.reuse_prefix:  # questions on one image back to back, so its prefix can be reused
                first: dict[tuple[str, ...], int] = {}
                samples = sorted(samples, key=lambda s: first.setdefault(s.images, len(first)))
            for sample in samples:
                # Dealt before the shard's choice: a sample's round is the same whether or not the plan is split.
                this_round, dealt = dealt % rounds, dealt + 1
                if settings.shard is not None and not settings.shard.contains(spec.name, suite.name, sample.id):
                    continue
                limited = replace(sample, max_tokens=token_limit(settings, spec, sample))
                for visit in range(visits):  # a small run: the sample again in the rounds after its own
                    for rep in range(settings.repeats):
                        repeat = visit * settings.repeats + rep
                        if (spec.name, suite.name, suite.hash, sample.id, repeat) in done:
                            continue
                        # A visit's repetitions stay in its round: their spread is request noise.
                        tasks.append(Task(index, spec, suite, limited, repeat, (this_round + visit) % rounds))
                        index += 1
        planned.append((spec, tuple(tasks)))
    return Plan(tuple(planned), tuple(problems), rounds, visits)
