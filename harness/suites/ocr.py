"""Rendered text to read back: words, numbers and short lines in several fonts and sizes,
optionally rotated and in low contrast. The answer is the text drawn."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params
from harness.suites._common import FONTS, font, save_png, seeded_samples

GENERATOR_VERSION = 1
KINDS = ("word", "number", "line")
# Common concrete words; none is a number word or an article, which the metric would rewrite.
WORDS = (
    "apple", "river", "garden", "window", "yellow", "planet", "candle", "silver", "bridge", "forest",
    "orange", "market", "pencil", "rabbit", "winter", "castle", "guitar", "mirror", "pocket", "island",
    "coffee", "ladder", "jacket", "violin", "butter", "harbor", "meadow", "rocket", "tunnel", "velvet",
    "lemon", "tiger", "cloud", "train", "stone", "horse", "chair", "bread", "light", "ocean",
    "green", "paper", "music", "table", "sugar", "storm", "glass", "money", "smile", "water",
)
QUESTIONS = {
    "word": "What word is written in the image?",
    "number": "What number is written in the image?",
    "line": "What text is written in the image?",
}

PARAMS = {
    "width": (448, (32, 4096)),
    "height": (160, (32, 4096)),
    "kinds": (list(KINDS), KINDS),
    "fonts": (list(FONTS), FONTS),
    "min_font_size": (20, (6, 400)),
    "max_font_size": (44, (6, 400)),
    "max_rotation": (0, (0, 90)),  # degrees either way
    "contrast": ("high", ("high", "low")),
}


def text_for(kind: str, rng) -> str:
    if kind == "word":
        return str(rng.choice(WORDS))
    if kind == "number":
        digits = int(rng.integers(2, 7))
        return str(int(rng.integers(10 ** (digits - 1), 10**digits)))
    return " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(3, 5)), replace=False))


def colours(contrast: str, rng) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    if contrast == "high":
        return (255, 255, 255), (0, 0, 0)
    # Low contrast: grey on a grey about 40 levels lighter, the kind a faded scan gives.
    bg = int(rng.integers(150, 230))
    return (bg, bg, bg), (bg - 40, bg - 40, bg - 40)


def render(text: str, rng, p: dict) -> Image.Image:
    w, h = p["width"], p["height"]
    face = str(rng.choice(p["fonts"]))
    bg, fg = colours(p["contrast"], rng)
    size = int(rng.integers(p["min_font_size"], p["max_font_size"] + 1))
    f = font(face, size)
    left, top, right, bottom = f.getbbox(text)
    # Shrink a font that would not fit: text cut at the edge would make the answer unknowable.
    while (right - left > 0.9 * w or bottom - top > 0.9 * h) and size > 6:
        size = max(6, int(size * 0.85))
        f = font(face, size)
        left, top, right, bottom = f.getbbox(text)
    tw, th = right - left, bottom - top
    layer = Image.new("RGB", (tw + 8, th + 8), bg)
    ImageDraw.Draw(layer).text((4 - left, 4 - top), text, font=f, fill=fg)
    angle = float(rng.uniform(-p["max_rotation"], p["max_rotation"])) if p["max_rotation"] else 0.0
    if angle:
        # Bilinear, not bicubic: bicubic rings past the two greys and breaks "low contrast".
        layer = layer.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=bg)
    if layer.width > w or layer.height > h:
        layer.thumbnail((w, h), Image.Resampling.BILINEAR)
    img = Image.new("RGB", (w, h), bg)
    x = int(rng.integers(0, w - layer.width + 1))
    y = int(rng.integers(0, h - layer.height + 1))
    img.paste(layer, (x, y))
    return img


@SOURCES.register("ocr")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = check_params(defn, PARAMS)
    if p["min_font_size"] > p["max_font_size"]:
        raise SuiteError(f"{defn.path}: param 'min_font_size' ({p['min_font_size']}) is above 'max_font_size' ({p['max_font_size']})")
    out = []
    for i, rng in seeded_samples(defn, GENERATOR_VERSION):
        kind = p["kinds"][i % len(p["kinds"])]
        text = text_for(kind, rng)
        path = save_png(render(text, rng, p), workdir / f"{i:05d}.png")
        out.append(RawSample(id=f"{i:05d}-{kind}", images=(path,), question=QUESTIONS[kind], answers=(text,), category=kind))
    return out
