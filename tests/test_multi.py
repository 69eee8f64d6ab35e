"""Multi-image and multi-turn samples through the real adapter and VLMTester."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.adapters.mlx_vlm import MlxVlmAdapter
from harness.models import ModelSpec
from harness.run.tester import VLMTester
from harness.suites import load_suite


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    a = MlxVlmAdapter(ModelSpec(name="q", source=str(qwen_dir)), str(qwen_dir))
    a.load()
    yield a
    a.close()


def test_the_follow_up_prompt_carries_the_models_first_answer(qwen):
    sample = load_suite("multi-turn").samples[0]
    assert sample.turns
    single = qwen.generate(replace(sample, turns=()), 6)
    m = qwen.generate(sample, 6)
    first = m.turn_outputs[0]
    assert len(m.turn_outputs) == 1 and first  # the random model says something
    assert first == single.text.strip()  # greedy: the first turn is the single-turn answer
    prompt = qwen.last_prompt
    # user question 1 (with the image), the model's answer, then the follow-up, in that order.
    assert prompt.index("<|image_pad|>") < prompt.index(sample.prompt) < prompt.index(first) < prompt.index(sample.turns[0])
    assert prompt.count("<|image_pad|>") == 1
    assert m.prompt_tokens > single.prompt_tokens + 10
    assert m.generated_tokens > 0 and m.ttft_s > 0


@pytest.fixture(scope="module")
def run(fixtures_root, tmp_path_factory):
    tester = VLMTester(tmp_path_factory.mktemp("runs"), limit=3, progress=False, round_samples=0)
    return tester.run(["fixture-llava_next", "fixture-smolvlm-4bit"], ["multi-image", "multi-turn"])


def test_two_images_on_a_one_image_model_are_unsupported_rows_not_a_crash(run):
    rows = run[run["suite"] == "multi-image"]
    llava, smol = rows[rows["model"] == "fixture-llava_next"], rows[rows["model"] == "fixture-smolvlm-4bit"]
    assert len(llava) == 3 and (llava["status"] == "unsupported").all()
    assert llava["error"].str.contains("takes one image per prompt").all()
    assert llava["score"].isna().all()
    assert len(smol) == 3 and (smol["status"] == "ok").all()
    assert smol["images"].map(len).eq(2).all() and smol["score"].notna().all()


def test_multi_turn_rows_record_the_turns_and_score_the_last(run):
    rows = run[run["suite"] == "multi-turn"]
    assert len(rows) == 6 and (rows["status"] == "ok").all()  # one image: llava_next takes it
    assert rows["turns"].map(len).eq(1).all() and rows["turn_outputs"].map(len).eq(1).all()
    assert rows["score"].notna().all()
    samples = load_suite("multi-turn").samples[:3]
    one = rows[rows["model"] == rows["model"].iloc[0]].set_index("sample_id")  # rows come in round order
    assert one.loc[[s.id for s in samples], "answers"].map(lambda a: a[0]).tolist() == [s.answers[0] for s in samples]
