"""The reference model: a tiny Qwen2.5-VL-architecture VLM that the harness trains itself on
the synthetic shape generators, so offline accuracy has a model that is known to be right.

data.py makes the seeded training samples, train.py trains and saves a checkpoint that the
ordinary `mlx_vlm.load` reads, evaluate.py scores it through the ordinary harness path.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.paths import project_root

NAME = "reference-shapes"


def default_dir() -> Path:
    """Where the committed checkpoint lives, so bench never retrains."""
    return project_root() / "datasets" / "reference" / "shapes"
