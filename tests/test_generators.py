"""The synthetic generators: byte-identical builds, hashes that follow every param, clear
errors for bad params, and answers that the pixels bear out."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from harness.suites import SOURCES, SuiteError, materialise, parse_suite
from harness.suites.shapes import COLOURS

REPO = Path(__file__).resolve().parent.parent
SUITES = ["synthetic-counting", "synthetic-ocr", "synthetic-ocr-hard", "synthetic-charts", "synthetic-spatial",
          "synthetic-sizes", "multi-image", "multi-turn"]


def small(name: str, tmp_path: Path, samples: int = 6, **params) -> Path:
    """A copy of the project's suite file with fewer samples and some params replaced."""
    data = tomllib.loads((REPO / "suites" / f"{name}.toml").read_text())
    data["samples"] = samples
    data.setdefault("params", {}).update(params)
    path = tmp_path / f"{name}-{hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:8]}.toml"
    path.write_text(_toml(data))
    return path


def _toml(data: dict) -> str:
    top = [f"{k} = {json.dumps(v)}" for k, v in data.items() if k != "params"]
    params = [f"{k} = {json.dumps(v)}" for k, v in data.get("params", {}).items()]
    return "\n".join(top + ["", "[params]"] + params) + "\n"


def build(path: Path, workdir: Path):
    return materialise(parse_suite(path), workdir)


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def components(img: np.ndarray, colour: tuple[int, int, int]) -> list[tuple[float, float]]:
    """Centres (x, y) of the connected regions drawn exactly in this colour."""
    labels, n = ndimage.label((img == colour).all(axis=2))
    return [(float(x), float(y)) for y, x in ndimage.center_of_mass(labels > 0, labels, range(1, n + 1))]


def colours_in(img: np.ndarray) -> set[str]:
    return {name for name, rgb in COLOURS.items() if (img == rgb).all(axis=2).sum() > 3}


_BUILD_ALL = """
import hashlib, json, sys
from pathlib import Path
from harness.suites import materialise, find_suite
out = {}
for path in sys.argv[2:]:
    name = Path(path).stem.rsplit("-", 1)[0]
    s = materialise(find_suite(path), Path(sys.argv[1]) / name)
    out[name] = [s.hash, [[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in x.images] for x in s.samples]]
print(json.dumps(out))
"""


def test_every_generator_builds_byte_identical_suites_in_two_workdirs_and_processes(tmp_path):
    here = {}
    # Nine samples: every condition of the sizes sweep, 2048 px included.
    files = {name: small(name, tmp_path, samples=9) for name in SUITES}
    for name in SUITES:
        s = materialise(parse_suite(files[name]), tmp_path / "a" / name)
        here[name] = [s.hash, [[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in x.images] for x in s.samples]]
        assert all(str(tmp_path / "a" / name) in p for x in s.samples for p in x.images)
    # A second process with another hash seed: no dict, set or font-cache order can leak in.
    env = {**os.environ, "PYTHONHASHSEED": "123", "VLM_HARNESS_ROOT": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _BUILD_ALL, str(tmp_path / "b"), *map(str, files.values())], env=env,
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == here


@pytest.mark.parametrize("name", SUITES)
def test_the_hash_changes_when_any_param_changes(tmp_path, name):
    data = tomllib.loads((REPO / "suites" / f"{name}.toml").read_text())
    spec = sys.modules[SOURCES.get(data["source"]).__module__].PARAMS
    base = build(small(name, tmp_path, samples=2), tmp_path / "base").hash
    seen = {base}
    for key, (default, allowed) in spec.items():
        value = data["params"].get(key, default)
        if isinstance(value, list):
            new = value[:-1] if len(value) > 1 else [a for a in allowed if a != value[0]][:1]
        elif isinstance(value, str):
            new = next(a for a in (allowed or ("exact_match", "keyword_recall")) if a != value)
        elif isinstance(value, float):
            new = value + 0.5
        else:
            new = value - 1 if value - 1 >= allowed[0] and key not in ("min_count", "min_items", "min_font_size") else value + 1
        h = build(small(name, tmp_path, samples=2, **{key: new}), tmp_path / key).hash
        assert h not in seen, key
        seen.add(h)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("synthetic-counting", {"max_count": 13}, "param 'max_count' is 13; allowed: (1, 12)"),
        ("synthetic-counting", {"min_count": 9, "max_count": 3}, "param 'min_count' (9) is above 'max_count' (3)"),
        ("synthetic-ocr", {"fonts": ["comic"]}, "param 'fonts' is ['comic']; allowed: ('default', 'sans', 'serif', 'mono')"),
        ("synthetic-ocr", {"contrast": "medium"}, "param 'contrast' is 'medium'; allowed: ('high', 'low')"),
        ("synthetic-ocr-hard", {"max_rotation": 120}, "param 'max_rotation' is 120; allowed: (0, 90)"),
        ("synthetic-charts", {"value_metric": "nope"}, "param 'value_metric' is 'nope'; allowed: ("),
        ("synthetic-charts", {"charts": ["pie"]}, "param 'charts' is ['pie']; allowed: ('bar', 'line')"),
        ("synthetic-spatial", {"relations": ["behind"]}, "param 'relations' is ['behind']; allowed: ('left', 'right', 'above', 'below')"),
        ("synthetic-sizes", {"sizes": [4, 64]}, "param 'sizes' is [4, 64]; allowed: a list of integers in (8, 8192)"),
        ("synthetic-sizes", {"aspects": ["round"]}, "param 'aspects' is ['round']; allowed: ('square', 'wide', 'tall')"),
        ("multi-image", {"tasks": ["bigger"]}, "param 'tasks' is ['bigger']; allowed: ('same_colour', 'same_shape', 'more')"),
        ("multi-turn", {"tasks": []}, "param 'tasks' is []; allowed: ('shape-after-colour'"),
        ("multi-turn", {"hue": 2}, "unknown param 'hue' for source 'dialogue'; allowed: size, tasks, max_count"),
    ],
)
def test_bad_params_name_the_file_the_param_and_the_allowed_values(tmp_path, name, params, message):
    path = small(name, tmp_path, **params)
    with pytest.raises(SuiteError) as e:
        build(path, tmp_path / "w")
    assert str(path) in str(e.value) and message in str(e.value)


def test_counting_answers_match_the_shapes_drawn(tmp_path):
    plain = build(small("synthetic-counting", tmp_path, samples=12, max_distractors=0), tmp_path / "plain")
    for s in plain.samples:
        colour = s.prompt.split()[2]
        assert len(components(pixels(s.images[0]), COLOURS[colour])) == int(s.answers[0])
    busy = build(small("synthetic-counting", tmp_path, samples=24), tmp_path / "busy")
    extra = 0
    for s in busy.samples:
        img = pixels(s.images[0])
        n, colour = int(s.answers[0]), s.prompt.split()[2]
        assert 1 <= n <= 12 and s.category == ("count-1-4" if n <= 4 else "count-5-8" if n <= 8 else "count-9-12")
        same_colour = len(components(img, COLOURS[colour]))
        everything = sum(len(components(img, rgb)) for rgb in COLOURS.values())
        assert same_colour >= n
        extra += everything - n
    assert extra > 0  # distractors are drawn
    assert {s.category for s in busy.samples} == {"count-1-4", "count-5-8", "count-9-12"}


def test_spatial_answers_match_the_centres(tmp_path):
    s = build(small("synthetic-spatial", tmp_path, samples=16), tmp_path / "w")
    assert {x.category for x in s.samples} == {"left", "right", "above", "below"}
    for x in s.samples:
        words = x.prompt.split("?")[0].split()
        a_colour, b_colour = words[2], words[-2]
        img = pixels(x.images[0])
        (ax, ay), (bx, by) = components(img, COLOURS[a_colour])[0], components(img, COLOURS[b_colour])[0]
        dx, dy = ax - bx, ay - by
        expected = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
        assert x.answers[0] == expected and abs(dx if expected in ("left", "right") else dy) > 2 * min(abs(dx), abs(dy))


def test_sizes_cover_each_size_and_aspect_with_the_answer_drawn(tmp_path):
    s = build(REPO / "suites" / "synthetic-sizes.toml", tmp_path / "w")
    dims = {x.category: Image.open(x.images[0]).size for x in s.samples}
    assert dims["size-16"] == (16, 16) and dims["size-2048"] == (2048, 2048) and dims["size-224"] == (224, 224)
    (ww, wh), (tw, th), (sw, sh) = dims["aspect-wide"], dims["aspect-tall"], dims["aspect-square"]
    assert ww == 3 * wh and th == 3 * tw and sw == sh and abs(sw * sh - ww * wh) / (ww * wh) < 0.02
    for x in s.samples:
        if "colour" in x.prompt:
            assert colours_in(pixels(x.images[0])) == {x.answers[0]}


def test_ocr_contrast_sizes_and_fonts(tmp_path):
    plain = build(small("synthetic-ocr", tmp_path, samples=12), tmp_path / "plain")
    hard = build(small("synthetic-ocr-hard", tmp_path, samples=12), tmp_path / "hard")
    assert [x.answers for x in plain.samples] == [x.answers for x in hard.samples]  # same texts, harder images
    for x in plain.samples:
        img = pixels(x.images[0])
        assert img.shape == (160, 448, 3) and img.min() == 0 and img.max() == 255
        kind = x.category
        text = x.answers[0]
        assert {"word": text.isalpha(), "number": text.isdigit(), "line": len(text.split()) >= 3}[kind]
        # Nothing drawn touches the border: the text was not cut off.
        assert (img[0] == 255).all() and (img[-1] == 255).all() and (img[:, 0] == 255).all() and (img[:, -1] == 255).all()
    for x in hard.samples:
        grey = pixels(x.images[0])[..., 0].astype(int)
        assert 30 <= grey.max() - grey.min() <= 40  # low contrast, and antialiasing keeps it below 40
    # Four fonts: the same word in two fonts renders differently.
    from harness.suites._common import FONTS, font

    widths = {f: font(f, 30).getbbox("harbor")[2] for f in FONTS}
    assert len(set(widths.values())) == len(FONTS)


def test_charts_draw_the_values_and_answers(tmp_path):
    from harness.suites import charts
    from harness.suites._common import sample_rng

    s = build(small("synthetic-charts", tmp_path, samples=8, charts=["bar"]), tmp_path / "w")
    for i, x in enumerate(s.samples):
        labels, values = charts.data("bar", sample_rng(0, i, charts.GENERATOR_VERSION), 4, 6)
        img = pixels(x.images[0])
        bars = (img == (0x4C, 0x72, 0xB0)).all(axis=2)
        cols = np.flatnonzero(bars.any(axis=0))
        runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        heights = [bars[:, r].sum(axis=0).max() for r in runs]
        assert len(heights) == len(values)
        # Bar heights are proportional to the values (give or take a pixel of rounding).
        scale = float(np.dot(heights, values) / np.dot(values, values))
        assert all(abs(h - v * scale) <= 2 for h, v in zip(heights, values, strict=True))
        if x.category == "bar-largest":
            assert x.answers == (labels[int(np.argmax(values))],) and x.metric == "exact_match"
        else:
            label = x.prompt.split("value of ")[1].split("?")[0]
            assert x.answers == (str(values[labels.index(label)]),) and x.metric == "relaxed_accuracy"


def test_pairs_answers_match_both_images(tmp_path):
    s = build(small("multi-image", tmp_path, samples=12), tmp_path / "w")
    for x in s.samples:
        a, b = (pixels(p) for p in x.images)
        if x.category == "more":
            na = sum(len(components(a, rgb)) for rgb in COLOURS.values())
            nb = sum(len(components(b, rgb)) for rgb in COLOURS.values())
            assert x.answers[0] == ("first" if na > nb else "second") and na != nb
        elif x.category == "same-colour":
            assert x.answers[0] == ("yes" if colours_in(a) == colours_in(b) else "no") and x.metric == "yes_no"
    answers = [x.answers[0] for x in s.samples if x.category != "more"]
    assert "yes" in answers and "no" in answers


def test_multi_turn_samples_carry_the_follow_up_and_its_answer(tmp_path):
    s = build(small("multi-turn", tmp_path, samples=6), tmp_path / "w")
    for x in s.samples:
        assert len(x.turns) == 1 and x.turns[0].endswith("Answer with one word or number.")
        img = pixels(x.images[0])
        if x.category == "count-plus-two":
            assert int(x.answers[0]) == sum(len(components(img, rgb)) for rgb in COLOURS.values()) + 2
        if x.category == "colour-after-shape":
            left = min((c[0], name) for name, rgb in COLOURS.items() for c in components(img, rgb))
            assert x.answers[0] == left[1]
    # Turns are part of the hash: another follow-up is another suite.
    from harness.suites import dialogue

    base = s.hash
    old = dialogue.TASKS["count-plus-two"]
    dialogue.TASKS["count-plus-two"] = (old[0], "What is that number plus three?")
    try:
        assert build(small("multi-turn", tmp_path, samples=6), tmp_path / "w2").hash != base
    finally:
        dialogue.TASKS["count-plus-two"] = old
