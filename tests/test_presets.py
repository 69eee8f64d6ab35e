"""Real-size random checkpoints, tested here through the same code at a scaled-down size."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness.core import checkpoint
from harness.fixtures import presets
from harness.fixtures.build import is_valid
from harness.measure import bandwidth

# The 7B preset's code path with every dimension cut down; the vocabulary stays larger than the
# fixture tokenizer's so the zeroed rows past it are exercised, and shards are forced small.
SMALL = replace(presets.PRESETS["qwen2.5-vl-7b"], name="small-qwen", config=presets.merge(
    presets.PRESETS["qwen2.5-vl-7b"].config,
    {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
     "num_key_value_heads": 2, "vocab_size": 4096, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
     "vision_config": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4,
                       "out_hidden_size": 128, "fullatt_block_indexes": [1]}}),
    preprocessor={"max_pixels": 64 * 28 * 28})


LLAVA = presets.PRESETS["llava-1.6-mistral-7b"]
SMALL_LLAVA = replace(LLAVA, name="small-llava", config=presets.merge(LLAVA.config, {
    "vocab_size": 2048, "image_grid_pinpoints": [[112, 224], [224, 112]],
    "text_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "vocab_size": 2048},
    "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "image_size": 112, "projection_dim": 64}}),
    preprocessor={"size": {"shortest_edge": 112}, "crop_size": {"height": 112, "width": 112},
                  "image_grid_pinpoints": [[112, 224], [224, 112]]})
PHI = presets.PRESETS["phi-3.5-vision"]
SMALL_LM = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "vocab_size": 2048,
            "rope_scaling": {"type": "su", "short_factor": [1.0] * 16, "long_factor": [1.0] * 16}}
# The stock phi3_v class builds the published CLIP-L tower (300 M parameters) whatever the config
# says, as the real preset wants; minutes on this CPU, so the everyday variant keeps the fixture's
# slim model file and a small tower, and the stock-tower one is marked slow.
SMALL_PHI = replace(PHI, name="small-phi", drop=(), preprocessor={"num_crops": 1}, config=presets.merge(
    PHI.config, {**SMALL_LM, "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                                               "num_hidden_layers": 2}}))
SMOL = presets.PRESETS["smolvlm2-2.2b"]
SMALL_SMOL = replace(SMOL, name="small-smol", processor={"image_seq_len": 16}, config=presets.merge(SMOL.config, {
    "scale_factor": 2, "vocab_size": 2048,
    "text_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 2048},
    "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "patch_size": 16, "image_size": 128}}),
    preprocessor={"size": {"longest_edge": 256}, "max_image_size": {"longest_edge": 128}})
SMALL_PHI_STOCK = replace(PHI, name="small-phi-stock", preprocessor={"num_crops": 1},
                          config=presets.merge(PHI.config, SMALL_LM))


def test_presets_carry_the_published_dimensions():
    seven = presets.resolve("7b")
    assert seven.name == "qwen2.5-vl-7b" and seven.config["hidden_size"] == 3584
    cost = bandwidth.decode_cost_from_config(presets.merge({"torch_dtype": "bfloat16"}, seven.config))
    assert 13.5e9 < cost.weight_bytes < 14.5e9  # 7.07 B parameters read per token (lm_head in, embedding out), bf16
    assert presets.resolve("3b").config["tie_word_embeddings"] is True
    assert presets.resolve("llava-7b").config["text_config"]["hidden_size"] == 4096
    assert presets.resolve("phi-3.5").config["hidden_size"] == 3072
    smol = presets.resolve("smolvlm2").config
    # SmolVLM's image tokens per crop follow from its tower: (384 // 14)^2 / scale_factor^2.
    assert (smol["vision_config"]["image_size"] // smol["vision_config"]["patch_size"]) ** 2 // smol["scale_factor"] ** 2 \
        == presets.resolve("smolvlm2").processor["image_seq_len"]
    with pytest.raises(KeyError, match="known"):
        presets.resolve("70b")


def test_a_scaled_preset_streams_shards_loads_in_mlx_vlm_and_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "SHARD_BYTES", 1 << 20)  # several shards
    monkeypatch.setattr(presets, "BLOCK_ELEMS", 1 << 16)  # several blocks per large tensor
    full, quant = presets.build_preset(SMALL, tmp_path / "a", threads=2)
    assert len(list(full.glob("model-*.safetensors"))) > 1
    manifest = json.loads((full / "fixture.json").read_text())
    assert manifest["random_weights"] is True and manifest["preset"] == "small-qwen"
    assert is_valid(full) and is_valid(quant)
    config = json.loads((full / "config.json").read_text())
    assert config["vocab_size"] == 4096 and config["hidden_size"] == 128
    # Headers and config agree on what decoding reads; 4-bit reads about a quarter.
    assert checkpoint.language_weight_bytes(full) == pytest.approx(checkpoint.language_weight_bytes_from_config(config), rel=0.01)
    assert checkpoint.language_weight_bytes(quant) < checkpoint.language_weight_bytes(full) / 3
    # Another thread count and shard order give the same bytes.
    again, _ = presets.build_preset(SMALL, tmp_path / "b", threads=1)
    assert json.loads((again / "fixture.json").read_text())["content_hash"] == manifest["content_hash"]

    import mlx_vlm
    from mlx_vlm import apply_chat_template, stream_generate

    for ckpt in (full, quant):
        model, processor = mlx_vlm.load(str(ckpt))
        prompt = apply_chat_template(processor, model.config, "What is this?", num_images=1)
        results = list(stream_generate(model, processor, prompt, image=["datasets/natural/images/chelsea.png"],
                                       max_tokens=12, temperature=0.0))
        assert results[-1].generation_tokens == 12  # stop rows are zero: it decodes to the limit


@pytest.mark.parametrize("preset", [SMALL_LLAVA, SMALL_PHI, SMALL_SMOL,
                                    pytest.param(SMALL_PHI_STOCK, marks=pytest.mark.slow)], ids=lambda p: p.name)
def test_other_scaled_presets_load_and_decode_to_the_limit(tmp_path, preset):
    import mlx_vlm
    from mlx_vlm import apply_chat_template, stream_generate

    full, quant = presets.build_preset(preset, tmp_path, threads=2)
    # phi3_v's slim model file goes exactly when the preset drops its config key.
    assert bool(list(full.glob("*.py"))) == ("model_file" in json.loads((full / "config.json").read_text()))
    for ckpt in (full, quant):
        model, processor = mlx_vlm.load(str(ckpt))
        prompt = apply_chat_template(processor, model.config, "What is this?", num_images=1)
        results = list(stream_generate(model, processor, prompt, image=["datasets/natural/images/chelsea.png"],
                                       max_tokens=6, temperature=0.0))
        assert results[-1].generation_tokens == 6
