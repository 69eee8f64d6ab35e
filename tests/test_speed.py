from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pandas as pd
import pytest

from harness.adapters import _mlx_sweeps as sweeps
from harness.cli import main
from harness.results.store import read_results
from harness.run import speed


@pytest.fixture(scope="module")
def qwen_model(qwen_dir):
    import mlx_vlm

    return mlx_vlm.load(str(qwen_dir))


def test_random_prompts_are_seeded_and_free_of_special_tokens(qwen_model):
    model, processor = qwen_model
    a = sweeps.random_prompt(model, processor, 200, seed=3)
    assert a.shape == (1, 200)
    assert mx.array_equal(a, sweeps.random_prompt(model, processor, 200, seed=3))
    assert not mx.array_equal(a, sweeps.random_prompt(model, processor, 200, seed=4))
    ids = set(np.array(a).ravel().tolist())
    assert not ids & set(processor.tokenizer.all_special_ids)
    assert model.config.image_token_id not in ids


def test_tg_generates_exactly_n_tokens_and_pp_counts_the_prompt(qwen_model):
    model, processor = qwen_model
    tg = sweeps.measure_tg(model, processor, 12, seed=0)
    assert tg["generated_tokens"] == 12 and tg["decode_tps"] > 0
    assert tg["wall_s"] > tg["ttft_s"] > 0
    pp = sweeps.measure_pp(model, processor, 40, seed=0)
    assert pp["prompt_tokens"] == 40 and pp["prefill_tps"] == pytest.approx(40 / pp["ttft_s"])


def test_image_sweep_counts_image_tokens(qwen_model, tmp_path):
    model, processor = qwen_model
    small = sweeps.measure_img(model, processor, 56, seed=0, directory=tmp_path)
    large = sweeps.measure_img(model, processor, 224, seed=0, directory=tmp_path)
    # 56 px -> 2×2 merged patches of 28 px; 224 px is capped at max_pixels = 64 tokens
    assert small["image_tokens"] == 4 and large["image_tokens"] == 64
    assert large["prompt_tokens"] - small["prompt_tokens"] == 60
    assert small["prefill_tps"] > 0 and small["ttft_s"] > 0


def test_speed_command_prints_a_table_and_writes_the_same_rows(fixtures_root, tmp_path, capsys):
    code = main(["speed", "-m", "fixture-qwen2_5_vl", "-p", "16", "-n", "8", "--image-sizes", "56", "--repeats", "2",
                 "--out", str(tmp_path), "--run-id", "s1", "--fixtures", str(fixtures_root)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("| fixture-qwen2_5_vl")]
    assert [ln.split("|")[2].strip() for ln in lines] == ["pp16", "tg8", "img56"]
    assert all("±" in ln for ln in lines)
    df = read_results(tmp_path / "s1")
    assert (df["status"] == "ok").all() and len(df) == 6
    assert set(df["suite"]) == {"speed-pp", "speed-tg", "speed-img"}
    assert sorted(df["repeat"].unique()) == [0, 1]
    tg = df[df["sample_id"] == "tg8"]
    assert (tg["generated_tokens"] == 8).all() and (tg["decode_bound_tps"] > 0).all()
    assert (tg["bytes_per_token"] > 0).all() and (tg["bandwidth_gbps"] > 0).all()
    # the table's mean is the parquet's mean
    table = speed.speed_table(df)
    mean = table.loc[table["test"] == "tg8", "mean"].item()
    assert mean == pytest.approx(tg["decode_tps"].mean())
    assert f"{mean:.2f}" in lines[1]


def test_table_flags_an_impossible_and_a_noisy_figure():
    rows = [{"model": "m", "suite": "speed-tg", "sample_id": "tg128", "status": "ok", "decode_tps": v,
             "decode_bound_tps": 30.0, "prefill_tps": math.nan, "ttft_s": 0.1, "image_tokens": None}
            for v in (92.0, 95.0, 93.0)]
    rows += [{"model": "m", "suite": "speed-pp", "sample_id": "pp64", "status": "ok", "prefill_tps": v,
              "decode_tps": math.nan, "decode_bound_tps": math.nan, "ttft_s": 0.1, "image_tokens": None}
             for v in (100.0, 200.0, 150.0)]
    table = speed.speed_table(pd.DataFrame(rows))
    text = speed.format_table(table)
    tg = table[table["test"] == "tg128"].iloc[0]
    assert "IMPOSSIBLE" in tg["flags"] and tg["pct_bound"] > 3
    assert "noisy" in table[table["test"] == "pp64"].iloc[0]["flags"]
    assert text.index("pp64") < text.index("tg128")  # llama-bench order: pp, tg, img


def test_bad_lengths_are_one_line_errors(capsys):
    with pytest.raises(ValueError, match="'x'"):
        speed.parse_lengths("64,x", "-p")
    assert speed.parse_lengths("", "-p") == ()
    assert main(["speed", "-m", "fixture-qwen2_5_vl", "-p", "0"]) == 2
    assert "-p/--prompt-lengths" in capsys.readouterr().err
