"""Spatial relations between two distinct shapes: is A left of, right of, above or below B?
The offset along the asked axis is always at least twice the offset across it, so the
relation has one answer."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, check_params
from harness.suites._common import save_png, seeded_samples
from harness.suites.shapes import COLOURS, SHAPES, draw_shape

GENERATOR_VERSION = 1
RELATIONS = ("left", "right", "above", "below")
# A one-word answer is asked for, but "left of" and "to the left" say the same thing.
ANSWERS = {
    "left": ("left", "left of", "to left", "to left of"),
    "right": ("right", "right of", "to right", "to right of"),
    "above": ("above",),
    "below": ("below",),
}

PARAMS = {
    "size": (336, (64, 4096)),
    "relations": (list(RELATIONS), RELATIONS),
}


def render(relation: str, rng, size: int) -> tuple[Image.Image, str, str]:
    (ca, cb) = [str(c) for c in rng.choice(list(COLOURS), size=2, replace=False)]
    (sa, sb) = [str(s) for s in rng.choice(SHAPES, size=2, replace=False)]
    r = size * 0.09
    along = rng.uniform(0.35, 0.6) * size  # distance between centres along the asked axis
    across = rng.uniform(-0.5, 0.5) * along * 0.5
    sign = -1 if relation in ("left", "above") else 1  # A's position relative to B
    dx, dy = (sign * along, across) if relation in ("left", "right") else (across, sign * along)
    # Centre the pair, then shift it at random as far as the margins allow.
    lo_x, hi_x = r - min(0, dx) , size - r - max(0, dx)
    lo_y, hi_y = r - min(0, dy), size - r - max(0, dy)
    bx, by = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    ax, ay = bx + dx, by + dy
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw_shape(draw, sa, ax, ay, r, COLOURS[ca])
    draw_shape(draw, sb, bx, by, r, COLOURS[cb])
    return img, f"{ca} {sa}", f"{cb} {sb}"


@SOURCES.register("spatial")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        relation = p["relations"][i % len(p["relations"])]
        img, a, b = render(relation, rng, p["size"])
        path = save_png(img, workdir / f"{i:05d}.png")
        q = f"Is the {a} left of, right of, above or below the {b}?"
        out.append(RawSample(id=f"{i:05d}-{relation}", images=(path,), question=q, answers=ANSWERS[relation], category=relation))
    return out
