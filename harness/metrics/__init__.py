"""Metrics: one module each, registered with whether higher is better and how it aggregates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.records import Sample
from harness.registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[str, Sample], float]  # (model output, sample) -> score in [0, 1]
    higher_is_better: bool = True
    aggregation: str = "mean"
    description: str = ""
    version: int = 1  # bumped whenever the rule changes; stored with every score (metric_version)


METRICS: Registry[MetricSpec] = Registry("metric", "harness.metrics")


def metric(name: str, *, higher_is_better: bool = True, aggregation: str = "mean") -> Callable:
    def decorator(fn: Callable[[str, Sample], float]) -> Callable[[str, Sample], float]:
        METRICS.register(name)(
            MetricSpec(name, fn, higher_is_better, aggregation, (fn.__doc__ or "").strip().split("\n")[0])
        )
        return fn

    return decorator


def score(output: str, sample: Sample) -> float:
    return float(METRICS.get(sample.metric).fn(output, sample))
