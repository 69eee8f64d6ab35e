"""Size and aspect-ratio sweeps of the colour and shape questions: square images from tiny
to larger than any model's input, and wide and tall images of one pixel count. Categories
(`size-16` ... `size-2048`, `aspect-square|wide|tall`) let a report show where a model breaks."""

from __future__ import annotations

import math
from pathlib import Path

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params
from harness.suites._common import save_png, seeded_samples
from harness.suites.shapes import QUESTIONS
from harness.suites.shapes import render as render_shape

GENERATOR_VERSION = 1
ASPECTS = ("square", "wide", "tall")
TASKS = ("colour", "shape")

PARAMS = {
    "sizes": ([16, 64, 224, 448, 1024, 2048], ()),  # square sides, px; checked by _check_sizes
    "aspects": (list(ASPECTS), ASPECTS),
    "aspect_long": (672, (32, 4096)),  # long side of the wide and tall images, px
    "aspect_ratio": (3.0, (1.0, 16.0)),
    "tasks": (list(TASKS), TASKS),
}
SIZE_RANGE = (8, 8192)


def conditions(p: dict) -> list[tuple[str, int, int]]:
    """(category, width, height) for every image shape the suite sweeps, sizes first."""
    out = [(f"size-{s}", s, s) for s in p["sizes"]]
    long, ratio = p["aspect_long"], p["aspect_ratio"]
    short = max(8, round(long / ratio))
    side = max(8, round(long / math.sqrt(ratio)))  # the square with the wide image's pixel count
    dims = {"square": (side, side), "wide": (long, short), "tall": (short, long)}
    out += [(f"aspect-{a}", *dims[a]) for a in p["aspects"]]
    return out


def _check_sizes(defn: SuiteDef) -> list[int]:
    sizes = defn.params.get("sizes", PARAMS["sizes"][0])
    ok = isinstance(sizes, list) and len(sizes) > 0 and all(isinstance(s, int) and not isinstance(s, bool) and SIZE_RANGE[0] <= s <= SIZE_RANGE[1] for s in sizes)
    if not ok:
        raise SuiteError(f"{defn.path}: param 'sizes' is {sizes!r}; allowed: a list of integers in {SIZE_RANGE} (square sides, px)")
    return sizes


@SOURCES.register("sizes")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    sizes = _check_sizes(defn)
    p = check_params(defn, PARAMS | {"sizes": (sizes, tuple(sizes))})
    conds = conditions(p)
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        # Every condition gets each task in turn, so a cut suite still covers all sizes.
        category, w, h = conds[i % len(conds)]
        task = p["tasks"][(i // len(conds)) % len(p["tasks"])]
        img, _, answer = render_shape(task, rng, w, h, 1)
        path = save_png(img, workdir / f"{i:05d}.png")
        out.append(RawSample(id=f"{i:05d}-{category}-{task}", images=(path,), question=QUESTIONS[task], answers=(answer,), category=category))
    return out
