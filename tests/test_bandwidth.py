from __future__ import annotations

import json
import math

import pytest

from harness import bandwidth as bw
from harness import checkpoint

# A 7B dense decoder at 4 bits (Qwen2-7B's shape), described by its config alone.
SEVEN_B_4BIT = {
    "model_type": "qwen2_vl", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "torch_dtype": "bfloat16",
    "quantization": {"bits": 4, "group_size": 64},
}


def test_seed_claim_of_90_tokens_per_second_on_an_m4_air_is_flagged_impossible():
    cost = bw.decode_cost_from_config(SEVEN_B_4BIT)
    assert 3.7e9 < cost.weight_bytes < 4.3e9  # "~4 GB of weights read per token"
    bandwidth = bw.Bandwidth(bw.APPLE_BANDWIDTH_GBPS["M4"], "apple M4 (published)")
    row = {"decode_tps": 92.5, "prompt_tokens": 100, "generated_tokens": 256,
           **bw.bound_columns(cost, bandwidth, 100, 256)}
    assert 25 < row["decode_bound_tps"] < 32  # "decode cannot exceed ~30 tokens/s"
    assert bw.is_impossible(row)
    assert bw.bound_fraction(row) > 3
    # A plausible figure on the same machine is not flagged.
    assert not bw.is_impossible({**row, "decode_tps": 24.0})


def test_bound_columns_match_the_schema_and_kv_cache_lowers_the_bound():
    from harness.schema import to_table

    cost = bw.decode_cost_from_config(SEVEN_B_4BIT)
    b = bw.Bandwidth(100.0, "measured")
    short, long = bw.bound_columns(cost, b, 10, 0), bw.bound_columns(cost, b, 32_000, 0)
    assert long["decode_bound_tps"] < short["decode_bound_tps"]
    # 28 layers × 4 KV heads × 128 dims × keys and values × 2 bytes
    assert cost.kv_bytes_per_position == 28 * 4 * 128 * 2 * 2
    t = to_table([{"status": "ok", **short}])
    assert t.column("decode_bound_tps").type.bit_width == 64


def test_checkpoint_bytes_exclude_the_vision_tower_and_follow_precision(fixtures_root):
    full, q4 = fixtures_root / "qwen2_5_vl", fixtures_root / "qwen2_5_vl-4bit"
    total = sum(p.stat().st_size for p in full.glob("*.safetensors"))
    wb = checkpoint.language_weight_bytes(full)
    assert 0 < wb < total  # the vision tower is on disk but not read per token
    assert checkpoint.language_weight_bytes(q4) < wb / 3  # 4-bit reads about a quarter
    for ckpt in (full, q4):  # headers and config agree (biases aside)
        config = json.loads((ckpt / "config.json").read_text())
        assert checkpoint.language_weight_bytes(ckpt) == pytest.approx(checkpoint.language_weight_bytes_from_config(config), rel=0.01)


def test_apple_chip_names_and_the_bandwidth_override(monkeypatch, tmp_path):
    assert bw.apple_chip("Apple M4 Pro") == "M4 Pro"
    assert bw.apple_chip("Apple M1") == "M1"
    assert bw.apple_chip("Apple M9 Hyper") is None
    assert bw.apple_chip("Intel(R) Core(TM) i7") is None
    monkeypatch.setenv("VLM_HARNESS_BANDWIDTH_GBPS", "123.5")
    assert bw.machine_bandwidth() == bw.Bandwidth(123.5, "VLM_HARNESS_BANDWIDTH_GBPS")


def test_measured_bandwidth_is_positive_and_cached(monkeypatch, tmp_path):
    monkeypatch.delenv("VLM_HARNESS_BANDWIDTH_GBPS", raising=False)
    monkeypatch.setenv("VLM_HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(bw, "_brand_string", lambda: "")  # as on a machine whose chip is unknown
    first = bw.machine_bandwidth()
    assert first.source == "measured" and 0.5 < first.gbps < 5000
    assert list(tmp_path.glob("bandwidth-*.json"))
    assert bw.machine_bandwidth() == first  # read back, not measured again


def test_tokens_per_second_per_gib_of_peak_memory():
    assert bw.tps_per_gib({"decode_tps": 30.0, "peak_mlx_bytes": 3 * 2**30}) == pytest.approx(10.0)
    assert bw.tps_per_gib({"decode_tps": 30.0, "peak_mlx_bytes": None, "peak_rss_bytes": 2**30}) == pytest.approx(30.0)
    assert math.isnan(bw.tps_per_gib({"decode_tps": None, "peak_mlx_bytes": 2**30}))
    assert not bw.is_impossible({"decode_tps": 5.0, "decode_bound_tps": None})
