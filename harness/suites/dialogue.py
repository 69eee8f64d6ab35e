"""Two-turn conversations about one image where the second question only makes sense after
the first: "What colour is the shape?" then "And what shape is it?". The adapter sends the
model's own first answer back as the assistant turn; the answers score the second turn."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, check_params
from harness.suites._common import cells_for, grid_positions, save_png, seeded_samples
from harness.suites.shapes import COLOURS, SHAPES, draw_shape

GENERATOR_VERSION = 1
# task: (first question, follow-up)
TASKS = {
    "shape-after-colour": ("What colour is the shape?", "And what shape is it?"),
    "colour-after-shape": ("What shape is on the left?", "What colour is it?"),
    "count-plus-two": ("How many shapes are there?", "What is that number plus two?"),
}

PARAMS = {
    "size": (224, (32, 4096)),
    "tasks": (list(TASKS), tuple(TASKS)),
    "max_count": (5, (1, 10)),
}


def render(task: str, rng, size: int, max_count: int) -> tuple[Image.Image, str]:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if task == "shape-after-colour":
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        draw_shape(draw, shape, size / 2, size / 2, size * rng.uniform(0.22, 0.34), COLOURS[colour])
        return img, shape
    if task == "colour-after-shape":
        # Two shapes of different kinds and colours, one in each half: "it" is the left one.
        (ca, cb) = (str(c) for c in rng.choice(list(COLOURS), size=2, replace=False))
        (sa, sb) = (str(s) for s in rng.choice(SHAPES, size=2, replace=False))
        r = size * 0.16
        draw_shape(draw, sa, size * 0.25, size * rng.uniform(0.3, 0.7), r, COLOURS[ca])
        draw_shape(draw, sb, size * 0.75, size * rng.uniform(0.3, 0.7), r, COLOURS[cb])
        return img, ca
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    n = int(rng.integers(1, max_count + 1))
    centres, r = grid_positions(rng, n, cells_for(max_count), size, size)
    for cx, cy in centres:
        draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    return img, str(n + 2)


@SOURCES.register("dialogue")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        task = p["tasks"][i % len(p["tasks"])]
        img, answer = render(task, rng, p["size"], p["max_count"])
        first, follow_up = TASKS[task]
        path = save_png(img, workdir / f"{i:05d}.png")
        out.append(RawSample(id=f"{i:05d}-{task}", images=(path,), question=first, turns=(follow_up,),
                             answers=(answer,), category=task))
    return out
