from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.suites import SuiteError, find_suite, load_suite, materialise, parse_suite

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, body: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


SHAPES = """
name = "t"
kind = "synthetic"
source = "shapes"
metric = "exact_match"
prompt = "{question}"
samples = 9
seed = 3
"""


def test_shapes_are_byte_identical_across_builds(tmp_path):
    defn = parse_suite(write(tmp_path, SHAPES))
    a = materialise(defn, tmp_path / "a")
    b = materialise(defn, tmp_path / "b")
    assert a.hash == b.hash
    for x, y in zip(a.samples, b.samples, strict=True):
        assert Path(x.images[0]).read_bytes() == Path(y.images[0]).read_bytes()
    assert {s.category for s in a.samples} == {"colour", "shape", "count"}


def test_answers_are_known_by_construction(tmp_path):
    from PIL import Image

    from harness.suites.shapes import COLOURS

    s = materialise(parse_suite(write(tmp_path, SHAPES)), tmp_path / "a")
    for sample in s.samples:
        if sample.category == "colour":
            pixels = np.asarray(Image.open(sample.images[0]).convert("RGB")).reshape(-1, 3)
            assert (pixels == COLOURS[sample.answers[0]]).all(axis=1).any()
        if sample.category == "count":
            assert 1 <= int(sample.answers[0]) <= 5


def test_a_changed_seed_or_prompt_changes_the_hash(tmp_path):
    base = materialise(parse_suite(write(tmp_path, SHAPES)), tmp_path / "a").hash
    seed = materialise(parse_suite(write(tmp_path, SHAPES.replace("seed = 3", "seed = 4"), "b.toml")), tmp_path / "b").hash
    prompt = materialise(parse_suite(write(tmp_path, SHAPES.replace('"{question}"', '"Q: {question}"'), "c.toml")), tmp_path / "c").hash
    assert len({base, seed, prompt}) == 3


def test_sample_i_does_not_depend_on_the_sample_count(tmp_path):
    small = materialise(parse_suite(write(tmp_path, SHAPES.replace("samples = 9", "samples = 3"), "b.toml")), tmp_path / "b")
    big = materialise(parse_suite(write(tmp_path, SHAPES)), tmp_path / "a")
    for x, y in zip(small.samples, big.samples[:3], strict=True):
        assert Path(x.images[0]).read_bytes() == Path(y.images[0]).read_bytes()


@pytest.mark.parametrize(
    "body, message",
    [
        (SHAPES + 'colour = "red"\n', "unknown field 'colour'; allowed: name"),
        (SHAPES.replace('"synthetic"', '"cartoon"'), "field 'kind' is 'cartoon'; allowed: natural, synthetic"),
        (SHAPES.replace('"exact_match"', '"exact_macth"'), "field 'metric': unknown metric 'exact_macth'. Did you mean exact_match"),
        (SHAPES.replace('"shapes"', '"blobs"'), "unknown suite source 'blobs'"),
        (SHAPES.replace("samples = 9", "samples = 0"), "field 'samples' is 0; allowed 1..100000"),
        (SHAPES.replace("samples = 9", 'samples = "9"'), "field 'samples' must be int"),
        (SHAPES.replace('"{question}"', '"no placeholder"'), "must contain {question}"),
        (SHAPES + "[params]\nmax_count = 40\n", "param 'max_count' is 40; allowed: (1, 12)"),
        (SHAPES + "[params]\ntasks = [\"colour\", \"smell\"]\n", "param 'tasks'"),
        (SHAPES + "[params]\nhue = 3\n", "unknown param 'hue' for source 'shapes'"),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_suite_files_name_the_file_and_field(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(SuiteError) as e:
        materialise(parse_suite(path), tmp_path / "w")
    assert str(path) in str(e.value)
    assert message in str(e.value)


def test_unknown_suite_name_suggests_close_ones():
    with pytest.raises(SuiteError, match="Did you mean natural"):
        find_suite("natrual")


def test_natural_suite_covers_the_photographs_with_checked_hashes():
    s = load_suite("natural")
    images = {Path(x.images[0]).name for x in s.samples}
    assert len(images) >= 15
    assert len(s.samples) >= 60
    assert {x.category for x in s.samples} == {"object", "colour", "count", "yes_no", "text"}
    # Round-robin order: the first 20 samples already cover 20 different photographs.
    assert len({x.images[0] for x in s.samples[:20]}) == 20
    assert all((REPO / "datasets/natural/images" / Path(x.images[0]).name).exists() for x in s.samples)


@pytest.fixture
def natural_copy(tmp_path, monkeypatch):
    """A private copy of the project's suites and data, to break without harm."""
    for d in ("suites", "datasets"):
        shutil.copytree(REPO / d, tmp_path / d)
    monkeypatch.setenv("VLM_HARNESS_ROOT", str(tmp_path))
    return tmp_path


def test_a_changed_photograph_is_refused(natural_copy):
    img = natural_copy / "datasets/natural/images/chelsea.png"
    img.write_bytes(img.read_bytes() + b"\0")
    with pytest.raises(SuiteError, match="chelsea.png: sha256 differs"):
        load_suite("natural")


def test_a_question_without_answers_is_refused_with_its_line(natural_copy):
    q = natural_copy / "datasets/natural/questions.jsonl"
    lines = q.read_text().splitlines()
    lines[2] = lines[2].replace('"answers": [', '"answers": [], "was": [')
    q.write_text("\n".join(lines) + "\n")
    with pytest.raises(SuiteError, match=r"questions.jsonl:3: .* has no 'answers'"):
        load_suite("natural")
