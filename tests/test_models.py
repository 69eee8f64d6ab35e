from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.adapters.mlx_vlm import MlxVlmAdapter
from harness.images import ImageLimits
from harness.models import ModelError, known_models, parse_model_file, resolve

SEEDS = {
    "mlx-community/llava-v1.6-mistral-7b-4bit": "4bit",
    "mlx-community/Phi-3.5-vision-instruct-4bit": "4bit",
    "mlx-community/SmolVLM2-2.2B-Instruct-mlx": "bf16",
    "mlx-community/Qwen2.5-VL-3B-Instruct-4bit": "4bit",
    "mlx-community/Qwen2.5-VL-7B-Instruct-4bit": "4bit",
}


def test_seed_models_are_known_by_their_hub_ids():
    known = known_models()
    for hub_id, quant in SEEDS.items():
        spec = known[hub_id]
        assert spec.source == hub_id and spec.adapter == "mlx_vlm" and spec.quantization == quant
        assert spec.weight_bytes > 1e9 and spec.params_b > 1 and spec.max_tokens > 0
        assert spec.images.max_size >= 1024 and 0 < spec.images.max_images <= 4
    assert known["mlx-community/llava-v1.6-mistral-7b-4bit"].images.max_images == 1


def test_aliases_resolve_to_the_same_model():
    spec = resolve("qwen2.5-vl-3b-4bit")
    assert spec.name == "mlx-community/Qwen2.5-VL-3B-Instruct-4bit"
    assert resolve(spec.name) == spec


def test_a_hub_model_with_no_hub_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLM_HARNESS_MEMORY_CHECK", "0")  # a small machine would refuse the 7B first
    spec = resolve("mlx-community/Qwen2.5-VL-7B-Instruct-4bit")
    with pytest.raises(ModelError, match="not in the local cache and HF_HUB_OFFLINE is set.*hf download"):
        MlxVlmAdapter(spec, spec.source).load()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, message", [
    ('source = "x/y"\nmax_tokens = "many"\n', r"m\.toml: field 'max_tokens' must be int, got str"),
    ('source = "x/y"\ntemperature = true\n', r"m\.toml: field 'temperature' must be float"),
    ('source = "x/y"\nmax_tokens = -1\n', r"m\.toml: field 'max_tokens' must not be negative"),
    ('source = "x/y"\nmax_token = 5\n', r"m\.toml: unknown field 'max_token'"),
    ('source = "x/y"\nadapter = "mlxvlm"\n', r"m\.toml: field 'adapter' is 'mlxvlm'; known: .*mlx_vlm"),
    ('source = "x/y"\nadapter = "openai"\n', r"m\.toml: adapter 'openai' needs base_url"),
    ('source = "x/y"\n[images]\nmax_size = "big"\n', r"m\.toml: \[images\] field 'max_size' must be int"),
    ('source = "x/y"\n[images]\nmaxsize = 5\n', r"m\.toml: \[images\] unknown field 'maxsize'"),
    ('source = "x/y"\naliases = "a"\n', r"m\.toml: field 'aliases' must be a list"),
    ('name = "x"\n', r"m\.toml: missing required field 'source'"),
])
def test_a_wrong_field_names_the_file_and_the_field(tmp_path, text, message):
    with pytest.raises(ModelError, match=message):
        parse_model_file(write(tmp_path, text))


def test_a_full_model_file_parses(tmp_path):
    spec = parse_model_file(write(tmp_path, (
        'source = "x/y"\nadapter = "openai"\nbase_url = "http://127.0.0.1:8080/v1"\ntemperature = 0\n'
        'timeout_s = 30\naliases = ["xy"]\n[images]\nmax_size = 512\nallow_hosts = ["example.org"]\n'
    )))
    assert spec.name == "m" and spec.temperature == 0.0 and isinstance(spec.temperature, float)
    assert spec.images == ImageLimits(max_size=512, allow_hosts=("example.org",))
    assert spec.aliases == ("xy",) and spec.option("timeout_s") == 30.0
    assert spec.options == {"base_url": "http://127.0.0.1:8080/v1", "timeout_s": 30.0}


def test_an_adapters_own_settings_are_declared_by_it_not_by_the_model_spec(tmp_path):
    with pytest.raises(ModelError, match="unknown field 'base_url' for adapter 'mlx_vlm'"):
        parse_model_file(write(tmp_path, 'source = "x/y"\nbase_url = "http://127.0.0.1:8080/v1"\n'))
    with pytest.raises(ModelError, match="field 'timeout_s' is 0.0; allowed"):
        parse_model_file(write(tmp_path, 'source = "x/y"\nadapter = "openai"\nbase_url = "http://h:1/v1"\ntimeout_s = 0\n'))
    spec = parse_model_file(write(tmp_path, 'source = "x/y"\nadapter = "openai"\nbase_url = "http://h:1/v1"\n'))
    assert spec.option("timeout_s") == 120.0 and spec.option("api_model") == ""  # the adapter's defaults


def test_models_command_shows_availability(tmp_path):
    # A hub cache holding one seed model's files: that model is "in the local HF cache".
    snap = tmp_path / "hub/models--mlx-community--Qwen2.5-VL-3B-Instruct-4bit"
    (snap / "snapshots/abc").mkdir(parents=True)
    (snap / "snapshots/abc/config.json").write_text("{}")
    (snap / "refs").mkdir()
    (snap / "refs/main").write_text("abc")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "harness", "models"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "in the local HF cache" in lines["mlx-community/Qwen2.5-VL-3B-Instruct-4bit"]
    assert "needs the hub" in lines["mlx-community/Qwen2.5-VL-7B-Instruct-4bit"]
    for hub_id in SEEDS:
        assert hub_id in lines
    assert "qwen2.5-vl-3b-4bit" not in lines  # aliases are shown beside their model, not as rows
