"""Seeded coloured shapes on a plain background: colour, shape and count questions whose
answers are known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, check_params

GENERATOR_VERSION = 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "orange": (245, 130, 20),
    "purple": (130, 40, 170),
}
SHAPES = ("circle", "square", "triangle", "star")
TASKS = ("colour", "shape", "count")
QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "What shape is this?",
    "count": "How many shapes are there?",
}

PARAMS = {
    "size": (224, (16, 4096)),
    "width": (0, (0, 4096)),  # 0: same as size (square); otherwise a wide or tall image
    "tasks": (list(TASKS), TASKS),
    "max_count": (5, (1, 12)),
}


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.cos(angle + k * math.pi / 2 + math.pi / 4), math.sin(angle + k * math.pi / 2 + math.pi / 4)) for k in range(4)]
    elif shape == "triangle":
        pts = [(math.cos(angle + k * 2 * math.pi / 3 - math.pi / 2), math.sin(angle + k * 2 * math.pi / 3 - math.pi / 2)) for k in range(3)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = angle + k * math.pi / 5 - math.pi / 2
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    else:
        raise ValueError(shape)
    return [(cx + r * x, cy + r * y) for x, y in pts]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour: tuple[int, int, int], angle: float = 0.0) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle), fill=colour)


def render(task: str, rng: np.random.Generator, width: int, height: int, max_count: int) -> tuple[Image.Image, str, str]:
    """One image and its (category, answer)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    short = min(width, height)
    if task in ("colour", "shape"):
        r = short * rng.uniform(0.22, 0.38)
        cx = rng.uniform(r, width - r)
        cy = rng.uniform(r, height - r)
        draw_shape(draw, shape, cx, cy, r, COLOURS[colour], angle=0.0)
        return img, task, colour if task == "colour" else shape
    n = int(rng.integers(1, max_count + 1))
    r = short / (2.2 * math.ceil(math.sqrt(max_count)) + 1) / 1.2
    placed: list[tuple[float, float]] = []
    while len(placed) < n:
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        if all((cx - x) ** 2 + (cy - y) ** 2 > (2.3 * r) ** 2 for x, y in placed):
            placed.append((cx, cy))
    for cx, cy in placed:
        draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    return img, "count", str(n)


@SOURCES.register("shapes")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    height = p["size"]
    width = p["width"] or height
    out = []
    for i in range(defn.samples):
        # One generator per sample: sample i is the same whatever the suite's sample count.
        rng = np.random.default_rng([defn.seed, i, GENERATOR_VERSION])
        task = p["tasks"][i % len(p["tasks"])]
        img, category, answer = render(task, rng, width, height, p["max_count"])
        path = workdir / f"{i:05d}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            img.save(tmp, format="PNG")
            tmp.replace(path)
        out.append(RawSample(id=f"{i:05d}-{category}", images=(path,), question=QUESTIONS[category], answers=(answer,), category=category))
    return out
