"""Counting: 1–12 target shapes of one colour among distractors that share the colour or the
shape but not both ("How many red circles are there?"). Answers known by construction."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params
from harness.suites._common import cells_for, grid_positions, save_png, seeded_samples
from harness.suites.shapes import COLOURS, SHAPES, draw_shape

GENERATOR_VERSION = 1
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}

PARAMS = {
    "size": (336, (64, 4096)),
    "min_count": (1, (1, 12)),
    "max_count": (12, (1, 12)),
    "max_distractors": (6, (0, 12)),
}


def bucket(n: int) -> str:
    """Categories by count range: models that subitise small counts fail on large ones."""
    return "count-1-4" if n <= 4 else "count-5-8" if n <= 8 else "count-9-12"


def render(rng, size: int, lo: int, hi: int, max_distractors: int) -> tuple[Image.Image, str, str, int]:
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    n = int(rng.integers(lo, hi + 1))
    d = int(rng.integers(0, max_distractors + 1))
    others_c = [c for c in COLOURS if c != colour]
    others_s = [s for s in SHAPES if s != shape]
    distractors = []
    for _ in range(d):
        # Half share the colour, half the shape: counting must check both attributes.
        if rng.random() < 0.5:
            distractors.append((colour, str(rng.choice(others_s))))
        else:
            distractors.append((str(rng.choice(others_c)), shape))
    items = [(colour, shape)] * n + distractors
    centres, r = grid_positions(rng, len(items), cells_for(hi + max_distractors), size, size)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for (c, s), (cx, cy) in zip(items, centres, strict=True):
        draw_shape(draw, s, cx, cy, r, COLOURS[c])
    return img, colour, shape, n


@SOURCES.register("counting")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    if p["min_count"] > p["max_count"]:
        raise SuiteError(f"{defn.path}: param 'min_count' ({p['min_count']}) is above 'max_count' ({p['max_count']})")
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        img, colour, shape, n = render(rng, p["size"], p["min_count"], p["max_count"], p["max_distractors"])
        path = save_png(img, workdir / f"{i:05d}.png")
        out.append(RawSample(
            id=f"{i:05d}-count", images=(path,), question=f"How many {colour} {PLURAL[shape]} are there?",
            answers=(str(n),), category=bucket(n),
        ))
    return out
