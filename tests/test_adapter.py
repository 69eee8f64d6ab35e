from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from harness.adapters import Unsupported
from harness.adapters.mlx_vlm import ImageError, MlxVlmAdapter
from harness.core.records import Sample
from harness.models import ModelError, ModelSpec

IMAGES = Path(__file__).resolve().parent.parent / "datasets/natural/images"


def sample(images=("chelsea.png",), prompt="What animal is this?"):
    paths = tuple(str(p) if Path(p).is_absolute() else str(IMAGES / p) for p in images)
    return Sample("t", "x", paths, prompt, ("cat",), "object", "exact_match", 16)


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    a = MlxVlmAdapter(ModelSpec(name="q", source=str(qwen_dir)), str(qwen_dir))
    stats = a.load()
    yield a, stats
    a.close()


def test_load_records_what_the_report_needs(qwen, qwen_dir):
    _, s = qwen
    assert s.arch == "qwen2_5_vl"
    assert s.quantization == "bf16"
    assert s.random_weights is True
    assert s.backend in ("cpu", "metal", "cuda")
    assert 0 < s.load_s < 60 and s.import_s >= 0
    assert s.size_bytes == sum(p.stat().st_size for p in qwen_dir.rglob("*") if p.is_file())
    assert len(s.content_hash) == 64
    assert s.peak_mlx_bytes > 1_000_000  # the weights (~1.5 MB) are materialised, not lazy


def test_generate_measures_each_phase(qwen):
    a, _ = qwen
    a.generate(sample(), 4)  # warm-up: kernels compile on first use
    m = a.generate(sample(), 16)
    assert m.generated_tokens == 16
    assert m.finish_reason == "length"
    assert m.prompt_tokens > 20
    assert 0 < m.ttft_s < m.wall_s
    assert m.prefill_tps > 0 and m.decode_tps > 0
    assert m.peak_mlx_bytes > 1_000_000 and m.peak_rss_bytes > 10_000_000
    assert len(m.token_times) == 16 and list(m.token_times) == sorted(m.token_times)
    # The decode rate is the tokens after the first over the time after the first token.
    assert m.decode_tps == pytest.approx(15 / (m.token_times[-1] - m.token_times[0]), rel=1e-9)
    assert m.text


def test_one_token_has_no_decode_rate(qwen):
    a, _ = qwen
    m = a.generate(sample(), 1)
    assert m.generated_tokens == 1
    assert math.isnan(m.decode_tps)


def test_unreadable_and_missing_images_name_the_file(qwen, tmp_path):
    a, _ = qwen
    bad = tmp_path / "broken.png"
    bad.write_bytes((IMAGES / "chelsea.png").read_bytes()[:300])  # a truncated file
    with pytest.raises(ImageError, match="broken.png"):
        a.generate(sample((str(bad),)), 4)
    with pytest.raises(ImageError, match="does not exist"):
        a.generate(sample((str(tmp_path / "nope.png"),)), 4)


def test_several_images_on_a_single_image_model_are_unsupported(fixtures_root):
    path = fixtures_root / "llava_next"
    a = MlxVlmAdapter(ModelSpec(name="l", source=str(path)), str(path))
    a.load()
    with pytest.raises(Unsupported, match="one image"):
        a.generate(sample(("chelsea.png", "coffee.png")), 4)


def test_two_images_run_on_a_multi_image_model(fixtures_root):
    path = fixtures_root / "smolvlm"
    a = MlxVlmAdapter(ModelSpec(name="s", source=str(path)), str(path))
    a.load()
    one = a.generate(sample(("chelsea.png",)), 4)
    two = a.generate(sample(("chelsea.png", "coffee.png")), 4)
    assert two.prompt_tokens > one.prompt_tokens


def test_missing_checkpoint_and_unknown_architecture_are_clear_errors(tmp_path, qwen_dir):
    with pytest.raises(ModelError, match="does not exist"):
        MlxVlmAdapter(ModelSpec(name="x", source=str(tmp_path / "gone")), str(tmp_path / "gone")).load()
    with pytest.raises(ModelError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        MlxVlmAdapter(ModelSpec(name="x", source="nobody/no-such-model"), "nobody/no-such-model").load()
    ckpt = tmp_path / "alien"
    shutil.copytree(qwen_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = "alien_vlm"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="alien_vlm.*upgrade mlx-vlm or fix model_type"):
        MlxVlmAdapter(ModelSpec(name="x", source=str(ckpt)), str(ckpt)).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        MlxVlmAdapter(ModelSpec(name="x", source=str(tmp_path / "empty")), str(tmp_path / "empty")).load()
