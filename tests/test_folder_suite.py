"""The folder source: a directory of the user's own images and a questions file, run for real."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from harness.suites import SuiteError, load_suite


def jpeg_rotated(size=(40, 20)) -> bytes:
    """A JPEG whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    im = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def png(colour=(20, 120, 220), size=(24, 24), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def suite(tmp_path: Path, *, params: str = 'path = "photos"\n', samples: int = 20) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\nkind = "natural"\nsource = "folder"\nmetric = "exact_match"\n'
                    f'prompt = "{{question}}"\nmax_tokens = 4\nsamples = {samples}\n\n[params]\n{params}')
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "cat.jpg").write_bytes(jpeg_rotated())
    (root / "sub" / "blue.png").write_bytes(png())
    (root / "bitmap.bmp").write_bytes(png(fmt="BMP"))
    (root / "questions.csv").write_text(
        "image,question,answers,category\n"
        "cat.jpg,What colour is it?,red|crimson,colour\n"
        "sub/blue.png,What colour is it?,blue,colour\n"
        "gone.png,What is this?,nothing,missing\n"
        "bitmap.bmp,What colour is it?,blue,format\n")
    return root


def test_a_folder_suite_reads_the_users_files_in_place(photos, tmp_path):
    s = load_suite(str(suite(tmp_path)))
    assert [x.id for x in s.samples] == ["00000", "00001", "00002", "00003"]
    first = s.samples[0]
    assert first.images == (str(photos / "cat.jpg"),)  # the user's own file, not a copy
    assert first.answers == ("red", "crimson") and first.category == "colour" and first.metric == "exact_match"
    assert s.samples[2].images == (str(photos / "gone.png"),)  # missing: left for its sample to fail
    assert len(load_suite(str(suite(tmp_path, samples=2))).samples) == 2


def test_a_run_fails_only_the_samples_whose_image_is_missing_or_refused(photos, tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    df = VLMTester(tmp_path / "runs", progress=False, warmup=0, fixtures_root=fixtures_root).run(
        ["fixture-qwen2_5_vl"], [str(suite(tmp_path))])
    status = dict(zip(df["sample_id"], df["status"], strict=True))
    assert status == {"00000": "ok", "00001": "ok", "00002": "error", "00003": "error"}
    errors = dict(zip(df["sample_id"], df["error"], strict=True))
    assert str(photos / "gone.png") in errors["00002"] and "does not exist" in errors["00002"]
    assert str(photos / "bitmap.bmp") in errors["00003"] and "BMP" in errors["00003"]
    # The JPEG kept its bytes and format; EXIF orientation was applied at run time, as for any suite.
    rec = json.loads(df.loc[df.sample_id == "00000", "preprocessing"].item())["images"][0]
    assert rec["format"] == "JPEG" and rec["exif_orientation"] == 6 and rec["size"] == [40, 20]
    w, h = rec["final_size"]
    assert h > w  # upright: 40 wide × 20 high as stored, taller than wide as shown


def test_paths_outside_the_folder_are_refused_unless_allowed(photos, tmp_path):
    (tmp_path / "secret.png").write_bytes(png())
    (photos / "link.png").symlink_to(tmp_path / "secret.png")
    for image in ("../secret.png", str(tmp_path / "secret.png"), "link.png", "../../../../etc/passwd"):
        # One outside path fails its own sample only: the suite's other samples stay.
        (photos / "questions.csv").write_text(f"image,question,answers\ncat.jpg,q?,a\n{image},q?,a\n"
                                              "cat.jpg,q2?,a\n")
        s = load_suite(str(suite(tmp_path)))
        assert [x.id for x in s.samples] == ["00000", "00001", "00002"]
        assert not s.samples[0].problem and not s.samples[2].problem
        assert re.match(r".*questions.csv:3: image path .* leads outside the dataset folder.*allow_outside = true",
                        s.samples[1].problem), s.samples[1].problem
    (photos / "questions.csv").write_text("image,question,answers\n../secret.png,q?,a\n")
    s = load_suite(str(suite(tmp_path, params='path = "photos"\nallow_outside = true\n')))
    assert Path(s.samples[0].images[0]).resolve() == (tmp_path / "secret.png").resolve()


def test_jsonl_with_a_data_uri_keeps_the_bytes_and_refuses_a_url_it_may_not_fetch(photos, tmp_path, monkeypatch, capsys):
    from harness.images import HOSTS_ENV

    monkeypatch.delenv(HOSTS_ENV, raising=False)
    data = jpeg_rotated()
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    (photos / "q.jsonl").write_text(
        json.dumps({"image": uri, "question": "Colour?", "answers": "red", "id": "inline"}) + "\n\n"
        + json.dumps({"image": "http://127.0.0.1:9/x.png", "question": "Colour?", "answers": ["red"]}) + "\n")
    s = load_suite(str(suite(tmp_path, params='path = "photos"\nquestions = "q.jsonl"\n')))
    kept = Path(s.samples[0].images[0])
    assert s.samples[0].id == "inline" and kept.suffix == ".jpg" and kept.read_bytes() == data
    assert not Path(s.samples[1].images[0]).exists()  # refused before any connection: one error row
    assert "host '127.0.0.1' is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("params, files, message", [
    ('path = "nowhere"\n', {}, r"no such folder"),
    ('', {}, r"param 'path' is required"),
    ('path = "photos"\nshuffle = true\n', {}, r"unknown param 'shuffle'"),
    ('path = "photos"\nallow_outside = "yes"\n', {}, r"'allow_outside' must be true or false"),
    ('path = "photos"\n', {"questions.csv": "picture,question,answers\nx.png,q,a\n"}, r"no column 'image'"),
    ('path = "photos"\n', {"questions.csv": "image,question,answers\nx.png,q,\n"}, r"questions.csv:2: no 'answers'"),
    ('path = "photos"\n', {"questions.csv": b"image,question,answers\nx.png,caf\xe9,a\n"}, r"not UTF-8"),
    ('path = "photos"\nquestions = "q.jsonl"\n', {"q.jsonl": "{not json\n"}, r"q.jsonl:1: not valid JSON"),
    ('path = "photos"\nquestions = "q.jsonl"\n', {"q.jsonl": '{"image": "a.png", "question": "q", "answers": "a", '
                                                              '"colour": "red"}\n'}, r"unknown column 'colour'"),
    ('path = "photos"\nquestions = "../q.csv"\n', {}, r"leads outside the folder"),
    ('path = "photos"\n', {"questions.csv": "image,question,answers,metric\nx.png,q,a,nope\n"}, r"unknown metric"),
])
def test_malformed_folder_suites_are_one_line_naming_the_file(tmp_path, params, files, message):
    (tmp_path / "photos").mkdir()
    for name, content in files.items():
        target = tmp_path / "photos" / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    with pytest.raises(SuiteError, match=message) as e:
        load_suite(str(suite(tmp_path, params=params)))
    assert "\n" not in str(e.value)


def test_the_readme_example_is_a_valid_folder_suite(tmp_path):
    """The README's example, as written, loads."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```toml\n# suites/my-photos.toml")[1].split("```")[0]
    (tmp_path / "my-photos").mkdir()
    (tmp_path / "my-photos" / "kitchen.jpg").write_bytes(jpeg_rotated())
    (tmp_path / "my-photos" / "questions.csv").write_text("image,question,answers\nkitchen.jpg,What room is this?,kitchen\n")
    (tmp_path / "my-photos.toml").write_text(block)
    s = load_suite(str(tmp_path / "my-photos.toml"))
    assert s.samples[0].answers == ("kitchen",)
