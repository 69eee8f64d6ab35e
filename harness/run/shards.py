"""Shards: a deterministic part K of N of a run's plan, for a CI matrix or a fleet.

A task belongs to a shard by a stable hash of model × suite × sample, never by its position:
the same sample lands in the same shard whatever the order of models and suites, whatever else
the plan holds, on every machine and Python version (sha256, not Python's salted `hash`). All
repetitions of a sample share its shard, so their spread is measured on one machine. The split
is balanced in expectation (each task falls in a shard with probability 1/N); a plan of a few
hundred tasks splits within a few percent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


class ShardError(ValueError):
    """A --shard value that is not K/N with 1 ≤ K ≤ N."""


def bucket(model: str, suite: str, sample_id: str, count: int) -> int:
    """The 1-based shard of `count` that model × suite × sample belongs to."""
    digest = hashlib.sha256(f"{model}\0{suite}\0{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@dataclass(frozen=True)
class Shard:
    index: int  # K, 1-based
    count: int  # N

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 1 <= self.index <= self.count):
            raise ShardError(f"shard {self.index}/{self.count}: give K/N with 1 ≤ K ≤ N, e.g. --shard 2/3")

    @staticmethod
    def parse(text: str) -> Shard:
        """'2/3' -> Shard(2, 3); anything else a ShardError naming the value and the form."""
        k, sep, n = str(text).partition("/")
        try:
            if not sep:
                raise ValueError
            return Shard(int(k), int(n))
        except ValueError:
            raise ShardError(f"--shard {text!r}: give K/N with 1 ≤ K ≤ N, e.g. --shard 2/3") from None

    def contains(self, model: str, suite: str, sample_id: str) -> bool:
        return self.count == 1 or bucket(model, suite, sample_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def every(count: int) -> list[Shard]:
    """The N shards of a split: together they hold every task exactly once."""
    return [Shard(k, count) for k in range(1, count + 1)]
