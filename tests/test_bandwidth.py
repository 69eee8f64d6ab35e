from __future__ import annotations

import json
import math

import pytest

from harness.core import checkpoint
from harness.measure import bandwidth as bw

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
    from harness.core.schema import to_table

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


def _numpy_read_gbps(array) -> float:
    """The independent figure: the whole array read by numpy, in one thread and in one thread
    per core (one core cannot saturate a server's memory), the faster of the two, GB/s."""
    import os
    import threading
    import time

    t0 = time.perf_counter()
    array.sum()
    single = array.nbytes / (time.perf_counter() - t0) / 1e9
    n = os.cpu_count() or 1
    step = -(-array.size // n)
    start = threading.Barrier(n)
    began, ended = [], []

    def part(i: int) -> None:
        start.wait()
        began.append(time.perf_counter())
        array[i * step:(i + 1) * step].sum()
        ended.append(time.perf_counter())

    threads = [threading.Thread(target=part, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threaded = array.nbytes / (max(ended) - min(began)) / 1e9
    return max(single, threaded)


def test_cpu_read_bandwidth_agrees_with_an_independent_numpy_read_of_the_same_size():
    import numpy as np

    probe = bw.CpuReadProbe()
    assert probe.nbytes >= 2**30  # past the last-level cache, at least 1 GiB
    # as large as the probe's (filled so its pages are real): on a busy machine a shorter read is
    # likelier to fit between other processes' time slices, and its best reads higher
    independent = np.full(probe.nbytes // 4, 2.0, dtype=np.float32)
    best_independent = 0.0
    # Interleaved trials: a burst of load from other processes hits both methods alike. Best of
    # five each, as the probe itself does; on a shared machine a burst can spoil one method's five
    # and not the other's, so rounds go on (both methods alike, at most 15) while the two bests
    # disagree. Within 25 %: on this kind of shared VM the same method on the same array read
    # 12-24 GB/s from one minute to the next. A probe that is wrong stays out of that band however
    # many rounds run: bytes miscounted by a thread's share (2× here) or a read served from cache
    # (several times main memory).
    agree = 0.25
    for round_ in range(15):
        harness = max(probe.trial().values())
        best_independent = max(best_independent, _numpy_read_gbps(independent))
        if round_ >= 4 and harness == pytest.approx(best_independent, rel=agree):
            break
    assert harness == pytest.approx(best_independent, rel=agree), (probe.rates(), best_independent)


def test_datasheet_rows_follow_the_device_name():
    assert bw.datasheet("NVIDIA H200") == ("H200", 4800)
    assert bw.datasheet("NVIDIA H100 80GB HBM3") == ("H100 SXM", 3350)
    assert bw.datasheet("NVIDIA H100 PCIe") == ("H100 PCIe", 2000)
    assert bw.datasheet("NVIDIA A100-SXM4-80GB") == ("A100 80GB SXM", 2039)
    assert bw.datasheet("NVIDIA A100 80GB PCIe") == ("A100 80GB PCIe", 1935)
    assert bw.datasheet("NVIDIA A100-SXM4-40GB") == ("A100 40GB", 1555)
    assert bw.datasheet("NVIDIA L4") == ("L4", 300)
    assert bw.datasheet("NVIDIA L40S") == ("L40S", 864)
    assert bw.datasheet("NVIDIA GeForce RTX 4090") == ("GeForce RTX 4090", 1008)
    assert bw.datasheet("AMD Instinct MI300X") == ("Instinct MI300X", 5300)
    assert bw.datasheet("Apple M4 Pro") == ("Apple M4 Pro", 273)
    assert bw.datasheet("Intel(R) Xeon(R) Processor") is None


def test_a_rate_is_impossible_only_above_the_larger_of_measured_and_datasheet():
    cost = bw.decode_cost_from_config(SEVEN_B_4BIT)
    b = bw.Bandwidth(4000.0, "measured", 4000.0, 4800.0, "cuda NVIDIA H200")
    row = bw.bound_columns(cost, b, 100, 256)
    assert row["bandwidth_source"] == "measured" and row["bandwidth_datasheet_gbps"] == 4800.0
    bound = row["decode_bound_tps"]
    # 110 % of the measured bound is still under the datasheet's: not impossible.
    assert not bw.is_impossible({**row, "decode_tps": 1.10 * bound})
    assert bw.is_impossible({**row, "decode_tps": 1.25 * bound})
    assert b.ceiling_gbps == 4800.0


def test_the_cache_is_keyed_by_device_not_host():
    a = bw.cache_path("cpu", "Intel Xeon", "vm")
    assert a != bw.cache_path("cuda", "NVIDIA H200", "vm")
    assert a != bw.cache_path("cpu", "AMD EPYC", "vm")
