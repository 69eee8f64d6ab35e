"""Model adapters: one module per backend, registered by name.

An adapter loads one model in the worker process, generates for one sample at a time with
streaming timings, and closes. Errors it raises become error rows; `Unsupported` becomes an
"unsupported" row (for example several images on a model that takes one).
"""

from __future__ import annotations

from typing import Protocol

from harness.core.records import LoadStats, Measurement, Sample
from harness.models import ADAPTERS, ModelSpec


class Unsupported(Exception):
    """The model cannot take this sample (not a failure of the model or the harness)."""


class Adapter(Protocol):
    # Settings a model file may give this adapter (harness.models.Option by name); read with
    # ModelSpec.option(name).
    OPTIONS: dict

    def __init__(self, spec: ModelSpec, path: str) -> None: ...

    def load(self) -> LoadStats: ...

    def generate(self, sample: Sample, max_tokens: int) -> Measurement: ...

    def close(self) -> None: ...


__all__ = ["ADAPTERS", "Adapter", "Unsupported"]
