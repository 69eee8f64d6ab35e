"""The transformers adapter on a tiny random llava_next checkpoint built offline from the MLX
fixture's config. Runs only where torch is installed (the `transformers` extra)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")



@pytest.fixture(scope="module")
def hf_llava(fixtures_root, tmp_path_factory) -> Path:
    """Same config, tokenizer, template and processor files as the MLX fixture; torch weights."""
    src = fixtures_root / "llava_next"
    dst = tmp_path_factory.mktemp("hf") / "llava_next"
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(f, dst / f.name)
    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(src)
    transformers.AutoModelForImageTextToText.from_config(config, dtype=torch.float32).save_pretrained(dst)
    return dst


def test_mlx_and_transformers_builds_side_by_side(hf_llava, fixtures_root, tmp_path):
    from harness.run.tester import VLMTester

    toml = tmp_path / "llava-tf.toml"
    toml.write_text(f'name = "llava-tf"\nsource = "{hf_llava}"\nadapter = "transformers"\n')
    df = VLMTester(tmp_path / "runs", limit=2, progress=False, fixtures_root=fixtures_root, round_samples=0).run(
        ["fixture-llava_next", str(toml)], ["synthetic-shapes"])
    assert set(df["model"]) == {"fixture-llava_next", "llava-tf"}
    assert (df["status"] == "ok").all(), df[["model", "error"]]
    # The adapter runs in the worker process, as it must: mlx_vlm, imported in this test process to
    # build the fixtures, re-registers transformers' processor classes.
    tf = df[df["model"] == "llava-tf"]
    assert set(tf["adapter"]) == {"transformers"} and set(tf["backend"]) == {"cpu"} and tf["random_weights"].all()
    assert (tf["arch"] == "llava_next").all() and (tf["load_s"] > 0).all()
    assert tf["generated_tokens"].between(1, tf["max_tokens"].iloc[0]).all() and (tf["prompt_tokens"] > 20).all()
    assert ((tf["ttft_s"] > 0) & (tf["ttft_s"] <= tf["wall_s"])).all()
    assert tf["preprocessing"].map(lambda s: json.loads(s)["images"][0]["format"] == "PNG").all()
