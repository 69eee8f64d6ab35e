"""Metrics: one module each, registered with the reference scorer it matches, a behaviour
version, whether higher is better and how it aggregates.

A metric's default behaviour is that of a named public scorer (its `reference`); a deliberate
difference is a separately registered name (e.g. `multiple_choice_can_infer`), so a suite picks
it with `metric = "..."` alone. `version` goes up whenever a metric's scores change, so scores
stored under an older version can be told apart and recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.core.records import Sample
from harness.core.registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[str, Sample], float]  # (model output, sample) -> score in [0, 1]
    higher_is_better: bool = True
    aggregation: str = "mean"
    description: str = ""  # the first line of the scoring function's docstring
    version: int = 1  # bumped whenever the rule changes; stored with every score (metric_version)
    reference: str = ""  # one line: the public scorer this metric reproduces (repo, file, function)


METRICS: Registry[MetricSpec] = Registry("metric", "harness.metrics")


def metric(name: str, *, version: int, reference: str, higher_is_better: bool = True,
           aggregation: str = "mean") -> Callable:
    def decorator(fn: Callable[[str, Sample], float]) -> Callable[[str, Sample], float]:
        description = (fn.__doc__ or "").strip().split("\n")[0]
        METRICS.register(name)(
            MetricSpec(name, fn, higher_is_better, aggregation, description, version, reference)
        )
        return fn

    return decorator


def score(output: str, sample: Sample) -> float:
    return float(METRICS.get(sample.metric).fn(output, sample))
