"""Helpers the synthetic generators share: one random stream per sample, atomic PNG writes,
and fonts that exist on every machine the harness installs on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFont

# Fonts that ship inside the harness's own dependencies, so OCR images build offline.
FONTS = ("default", "sans", "serif", "mono")
_MPL_FONTS = {"sans": "DejaVuSans.ttf", "serif": "DejaVuSerif.ttf", "mono": "DejaVuSansMono.ttf"}


def sample_rng(seed: int, index: int, version: int) -> np.random.Generator:
    """One generator per sample: sample i is the same whatever the suite's sample count."""
    return np.random.default_rng([seed, index, version])


def seeded_samples(defn: Any, version: int) -> Iterator[tuple[int, np.random.Generator]]:
    """(index, generator) for each of a suite's samples, each drawn from its own seeded generator."""
    for i in range(defn.samples):
        yield i, sample_rng(defn.seed, i, version)


def save_png(img: Image.Image, path: Path) -> Path:
    # Pillow writes no timestamp or software chunk, so the same pixels give the same bytes.
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        img.save(tmp, format="PNG")
        tmp.replace(path)
    return path


@cache
def _mpl_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if name == "default":
        return ImageFont.load_default(size=size)  # Pillow's bundled Aileron (Pillow >= 10.1)
    return ImageFont.truetype(str(_mpl_font_dir() / _MPL_FONTS[name]), size=size)


def grid_positions(rng: np.random.Generator, n: int, cells: int, width: int, height: int) -> tuple[list[tuple[float, float]], float]:
    """n non-overlapping centres on a cells-per-side grid with jitter, and the shape radius.

    A grid rather than rejection sampling: it always finishes and never lets shapes touch,
    so a count is never ambiguous."""
    cw, ch = width / cells, height / cells
    r = 0.34 * min(cw, ch)
    chosen = rng.permutation(cells * cells)[:n]
    out = []
    for k in chosen:
        col, row = divmod(int(k), cells)
        jx, jy = rng.uniform(-0.1, 0.1, size=2)
        out.append(((col + 0.5 + jx) * cw, (row + 0.5 + jy) * ch))
    return out, r


def cells_for(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))
