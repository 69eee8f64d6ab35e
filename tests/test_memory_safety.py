from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from harness.adapters.mlx_vlm import MlxVlmAdapter
from harness.core.records import Sample
from harness.measure import memory_safety as ms
from harness.models import ModelSpec

IMAGE = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/chelsea.png")
HUGE = 700_000_000_000


def sample(max_tokens=4) -> Sample:
    return Sample("t", "x", (IMAGE,), "What animal is this?", ("cat",), "object", "exact_match", max_tokens)


def test_kv_cache_per_token_from_config(qwen_dir):
    config = json.loads((qwen_dir / "config.json").read_text())
    c = {**config, **(config.get("text_config") or {})}
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    expected = 2 * c["num_hidden_layers"] * c.get("num_key_value_heads", heads) * head_dim * 2
    assert ms.kv_bytes_per_token(config) == expected > 0
    f32 = {**config, "torch_dtype": "float32", "text_config": {**(config.get("text_config") or {}), "torch_dtype": "float32"}}
    assert ms.kv_bytes_per_token(f32) == 2 * expected


def test_weights_from_disk_then_declared_then_parameters(qwen_dir):
    on_disk = sum(p.stat().st_size for p in qwen_dir.glob("*.safetensors"))
    assert ms.weight_bytes(qwen_dir, declared=HUGE) == on_disk
    assert ms.weight_bytes(None, declared=123) == 123
    assert ms.weight_bytes(None, params_b=7.0, quantization="4bit") == 3_500_000_000


def test_budget_is_below_what_is_available():
    budget, source = ms.budget_bytes()
    assert 0 < budget < psutil.virtual_memory().total and source


def test_a_declared_700_gb_model_is_refused_with_the_numbers():
    with pytest.raises(ms.WontFit, match=r"model big will not fit in memory: needs about weights 700\.00 GB"):
        ms.check_load("big", None, declared_bytes=HUGE)


def test_the_check_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VLM_HARNESS_MEMORY_CHECK", "0")
    assert ms.check_load("big", None, declared_bytes=HUGE).weights == HUGE


def test_refused_before_the_hub_is_even_asked():
    # Not in the cache and no hub: the memory refusal comes first, so nothing is downloaded either.
    spec = ModelSpec(name="big", source="mlx-community/Imaginary-700B-4bit", weight_bytes=HUGE)
    a = MlxVlmAdapter(spec, spec.source)
    with pytest.raises(ms.WontFit, match="will not fit"):
        a.load()
    assert a.model is None


def test_absurd_context_is_refused_before_any_allocation(qwen_dir):
    import mlx.core as mx

    spec = ModelSpec(name="q-long", source=str(qwen_dir), max_tokens=10**12)
    a = MlxVlmAdapter(spec, str(qwen_dir))
    before = mx.get_active_memory()
    with pytest.raises(ms.WontFit, match=r"KV cache [\d,.]+ GB for 1,000,000,002,048 tokens"):
        a.load()
    assert a.model is None and mx.get_active_memory() == before


def test_each_request_is_checked(qwen_dir):
    a = MlxVlmAdapter(ModelSpec(name="q", source=str(qwen_dir)), str(qwen_dir))
    a.load()
    assert a.generate(sample(), 4).generated_tokens == 4
    with pytest.raises(ms.WontFit, match="this request to q will not fit"):
        a.generate(sample(), 10**12)


def test_a_model_that_cannot_fit_is_a_recorded_skip(tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    toml = tmp_path / "giant.toml"
    toml.write_text(f'source = "mlx-community/Imaginary-700B-4bit"\nweight_bytes = {HUGE}\n')
    df = VLMTester(tmp_path / "runs", limit=2, progress=False, fixtures_root=fixtures_root).run(
        [str(toml)], ["synthetic-shapes"])
    assert len(df) == 2 and (df["status"] == "skipped").all()
    assert df["error"].str.contains("will not fit in memory").all()
    assert df["load_s"].isna().all()  # never loaded


def test_the_cuda_free_memory_query_never_keeps_a_sample_waiting(monkeypatch):
    """nvidia-smi takes tens of milliseconds (23.7 ms on the H200): asked once at load, then only
    in the background. No GPU here, so the query is a planted slow one; MLX's own memory counter is
    the real one."""
    import time

    import mlx.core as mx

    from harness.measure import environment

    def answers(mib: str):
        def query(fields: str) -> list[str]:
            assert fields == "memory.free"
            time.sleep(1.0)
            return [mib]
        return query

    monkeypatch.setattr(ms, "_cuda_reading", None)
    monkeypatch.setattr(ms, "_cuda_refresh", None)
    monkeypatch.setattr(ms, "CUDA_QUERY_EVERY_S", 0.05)
    monkeypatch.setattr(environment, "nvidia_query", answers("1024"))
    t = time.perf_counter()
    assert ms._cuda_free(mx) == 1024 * 2**20
    assert time.perf_counter() - t >= 1.0  # the first answer, at load, is waited for
    time.sleep(0.1)  # now older than the interval
    monkeypatch.setattr(environment, "nvidia_query", answers("2048"))
    t = time.perf_counter()
    assert ms._cuda_free(mx) == 1024 * 2**20  # the last answer, at once
    assert time.perf_counter() - t < 0.5  # far under the query's 1 s, with room for a loaded machine
    assert ms._cuda_free(mx) == 1024 * 2**20  # one refresh at a time, still running
    ms._cuda_refresh.join(5)
    assert ms._cuda_free(mx) == 2048 * 2**20  # the refreshed answer
    held = mx.ones((1 << 20,), dtype=mx.float32)
    mx.eval(held)  # MLX's own allocations count at once, between answers
    assert ms._cuda_free(mx) <= 2048 * 2**20 - held.nbytes
