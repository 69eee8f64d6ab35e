"""Time to first token split into preprocessing, vision tower and prefill; machine state per sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.adapters.mlx_vlm import MlxVlmAdapter
from harness.core.records import Sample
from harness.models import ModelSpec

IMAGES = Path(__file__).resolve().parent.parent / "datasets/natural/images"


@pytest.fixture(scope="module")
def qwen(_isolated_env):
    from harness.fixtures.build import build_arch, default_root

    full, _ = build_arch("qwen2_5_vl", default_root())
    a = MlxVlmAdapter(ModelSpec(name="q", source=str(full)), str(full))
    stats = a.load()
    a.generate(_sample(), 4)  # warm-up: kernel compilation stays out of the figures
    yield a, stats
    a.close()


def _sample(images=("chelsea.png",), prompt="What animal is this?", max_tokens=16) -> Sample:
    return Sample("t", "x", tuple(str(IMAGES / p) for p in images), prompt, ("cat",), "object", "exact_match",
                  max_tokens)


def test_preprocess_vision_and_prefill_add_up_to_ttft(qwen):
    a, _ = qwen
    for images in (("chelsea.png",), ("chelsea.png", "astronaut.png")):
        m = a.generate(_sample(images), 8)
        parts = (m.preprocess_s, m.vision_s, m.prefill_s)
        assert all(p is not None and p > 0 for p in parts), parts
        assert sum(parts) == pytest.approx(m.ttft_s, rel=0.02)
        # The fixture's processor caps an image at 64 merged patches (8 × 8 × 28 px).
        assert 0 < m.image_tokens <= 64 * len(images)
    assert "get_input_embeddings" not in a.model.__dict__  # the wrapper is gone after the call
    text_only = a.generate(Sample("t", "y", (), "Say hi.", ("hi",), "object", "exact_match", 8), 8)
    assert text_only.image_tokens == 0
    assert text_only.preprocess_s + text_only.vision_s + text_only.prefill_s == pytest.approx(text_only.ttft_s, rel=0.02)


def test_image_tokens_follow_the_image_size(qwen):
    a, _ = qwen
    one = a.generate(_sample(("chelsea.png",)), 4)
    two = a.generate(_sample(("chelsea.png", "chelsea.png")), 4)
    assert two.image_tokens == 2 * one.image_tokens
    assert two.vision_s > 0 and two.prompt_tokens - one.prompt_tokens >= one.image_tokens


def test_load_says_whether_it_was_cold(qwen):
    _, stats = qwen
    assert stats.load_cache == ("cold" if sys.platform == "linux" else stats.load_cache)
    assert stats.import_s > 0.05  # a real import of mlx and mlx_vlm, not a cached module lookup


def test_samples_run_under_planted_cpu_contention_are_flagged(qwen):
    a, _ = qwen
    # CPU time advances in 10 ms ticks, so a short sample cannot resolve half a core (a 64-token
    # sample of 0.12 s has a margin of 0.33 cores); 256 tokens take about a second under this load.
    n = 256
    a.generate(_sample(max_tokens=n), n)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loud = [a.generate(_sample(max_tokens=n), n) for _ in range(3)]
    finally:
        for p in busy:
            p.kill()
            p.wait()
    for m in loud:
        state = json.loads(m.machine_state)
        assert m.contended is True, state
        assert any("other processes" in why for why in state["contended_by"]), state
        # Two busy processes on this machine's cores: at least half a core taken from the sample.
        assert state["others_cpu_cores"] >= 0.5 + state["others_resolution_cores"], state
        assert state["own_cpu_cores"] > 0  # this process's own work is not counted as others'
        assert state["others_resolution_cores"] < 0.15, state  # the sample was long enough to tell
