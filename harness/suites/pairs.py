"""Two images per question: are the two shapes the same colour (or kind), and which image has
more shapes. Models that take one image per prompt get an "unsupported" row from the adapter."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, check_params
from harness.suites._common import cells_for, grid_positions, save_png, seeded_samples
from harness.suites.shapes import COLOURS, SHAPES, draw_shape

GENERATOR_VERSION = 1
TASKS = ("same_colour", "same_shape", "more")
QUESTIONS = {
    "same_colour": "Are the shapes in the two images the same colour?",
    "same_shape": "Are the shapes in the two images the same shape?",
    "more": "Which image has more shapes, the first or the second?",
}
ANSWERS = {
    "yes": ("yes",), "no": ("no",),
    "first": ("first", "first one", "first image", "1st"),
    "second": ("second", "second one", "second image", "2nd"),
}

PARAMS = {
    "size": (224, (32, 4096)),
    "tasks": (list(TASKS), TASKS),
    "max_count": (6, (2, 12)),
}


def picture(items: list[tuple[str, str]], rng, size: int, cells: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    centres, r = grid_positions(rng, len(items), cells, size, size)
    for (c, s), (cx, cy) in zip(items, centres, strict=True):
        draw_shape(draw, s, cx, cy, r, COLOURS[c])
    return img


def render(task: str, rng, size: int, max_count: int) -> tuple[Image.Image, Image.Image, str]:
    colours, shapes = list(COLOURS), list(SHAPES)
    if task == "more":
        colour, shape = str(rng.choice(colours)), str(rng.choice(shapes))
        na, nb = (int(x) for x in rng.choice(range(1, max_count + 1), size=2, replace=False))
        cells = cells_for(max_count)
        a = picture([(colour, shape)] * na, rng, size, cells)
        b = picture([(colour, shape)] * nb, rng, size, cells)
        return a, b, "first" if na > nb else "second"
    same = bool(rng.random() < 0.5)  # yes and no equally often: a model that always says yes scores 50 %
    ca, cb = (str(x) for x in rng.choice(colours, size=2, replace=False))
    sa, sb = (str(x) for x in rng.choice(shapes, size=2, replace=False))
    # The attribute not asked about varies freely, so it cannot give the answer away.
    if task == "same_colour":
        cb = ca if same else cb
        sb = str(rng.choice(shapes))
    else:
        sb = sa if same else sb
        cb = str(rng.choice(colours))
    return picture([(ca, sa)], rng, size, 2), picture([(cb, sb)], rng, size, 2), "yes" if same else "no"


@SOURCES.register("pairs")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        task = p["tasks"][i % len(p["tasks"])]
        a, b, answer = render(task, rng, p["size"], p["max_count"])
        paths = (save_png(a, workdir / f"{i:05d}-a.png"), save_png(b, workdir / f"{i:05d}-b.png"))
        # yes/no questions take the first yes or no of the answer ("Yes, both are red." is yes).
        out.append(RawSample(id=f"{i:05d}-{task}", images=paths, question=QUESTIONS[task], answers=ANSWERS[answer],
                             category=task.replace("_", "-"), metric=None if task == "more" else "yes_no"))
    return out
