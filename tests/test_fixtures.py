from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.fixtures import FIXTURES
from harness.fixtures.build import build_arch, is_valid, read_manifest
from harness.fixtures.common import content_hash, dir_size

ARCHS = ["llava_next", "phi3_v", "qwen2_5_vl", "smolvlm"]
CHELSEA = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/chelsea.png")
COFFEE = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/coffee.png")


def test_the_four_seed_architectures_are_registered():
    assert FIXTURES.names() == ARCHS


def _generate(path: Path, image: str, question: str, max_tokens: int = 12):
    from mlx_vlm import apply_chat_template, load, stream_generate

    model, processor = load(str(path))
    prompt = apply_chat_template(processor, model.config, question, num_images=1)
    text = []
    for r in stream_generate(model, processor, prompt, image=[image], max_tokens=max_tokens, temperature=0.0):
        text.append(r.text)
        last = r
    return "".join(text), last


@pytest.mark.parametrize("name", [f"{a}{s}" for a in ARCHS for s in ("", "-4bit")])
def test_every_fixture_loads_with_the_real_mlx_vlm_and_decodes_to_the_limit(fixtures_root, name):
    path = fixtures_root / name
    manifest = read_manifest(path)
    assert manifest["random_weights"] is True
    assert manifest["precision"] == ("4bit" if name.endswith("4bit") else "full")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == name.removesuffix("-4bit")
    assert ("quantization" in config) == name.endswith("-4bit")
    text, last = _generate(path, CHELSEA, "What animal is this?")
    # Stop tokens are zeroed in the head, so a speed test always decodes max_tokens tokens.
    assert last.generation_tokens == 12
    assert last.prompt_tokens > 20  # image tokens are in the prompt
    assert text


def test_fixture_output_depends_on_the_image(fixtures_root):
    a, _ = _generate(fixtures_root / "qwen2_5_vl", CHELSEA, "What colour is the shape?")
    b, _ = _generate(fixtures_root / "qwen2_5_vl", COFFEE, "What colour is the shape?")
    assert a != b


def test_same_seed_gives_the_same_bytes_and_hash(tmp_path, fixtures_root):
    build_arch("smolvlm", tmp_path / "a", seed=0)
    for name in ("smolvlm", "smolvlm-4bit"):
        ours, reference = tmp_path / "a" / name, fixtures_root / name
        files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
        for f in files:
            assert (ours / f).read_bytes() == (reference / f).read_bytes(), f
        assert read_manifest(ours)["content_hash"] == read_manifest(reference)["content_hash"]


def test_another_seed_gives_other_weights(tmp_path, fixtures_root):
    build_arch("qwen2_5_vl", tmp_path, seed=1)
    assert content_hash(tmp_path / "qwen2_5_vl") != read_manifest(fixtures_root / "qwen2_5_vl")["content_hash"]


def test_a_tampered_fixture_is_invalid_and_rebuilt(tmp_path, fixtures_root):
    shutil.copytree(fixtures_root / "qwen2_5_vl", tmp_path / "qwen2_5_vl")
    shutil.copytree(fixtures_root / "qwen2_5_vl-4bit", tmp_path / "qwen2_5_vl-4bit")
    assert is_valid(tmp_path / "qwen2_5_vl")
    with open(tmp_path / "qwen2_5_vl" / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    assert not is_valid(tmp_path / "qwen2_5_vl")
    build_arch("qwen2_5_vl", tmp_path)
    assert is_valid(tmp_path / "qwen2_5_vl")


def test_slim_phi3_v_leaves_mlx_vlm_global_state_alone(fixtures_root):
    from mlx_vlm import load
    from mlx_vlm.models.phi3_v import vision

    stock = vision.VisionModel.CLIP_VIT_LARGE_PATCH14_336_CONFIG
    before = dict(vars(stock))
    model, _ = load(str(fixtures_root / "phi3_v"))
    assert dict(vars(vision.VisionModel.CLIP_VIT_LARGE_PATCH14_336_CONFIG)) == before
    assert before["num_hidden_layers"] == 24  # the stock tower is still CLIP ViT-L
    assert dir_size(fixtures_root / "phi3_v") < 10e6  # the slim tower, not ~610 MB
