"""The reference model: trained reproducibly, loaded and scored like any model, and a canary
whose accuracy (and the gate) falls when preprocessing or prompting breaks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.fixtures.common import MANIFEST, content_hash
from harness.reference import NAME, data, default_dir
from harness.run.reference_eval import summary
from harness.suites import find_suite

REPO = Path(__file__).resolve().parent.parent
CANARY_SAMPLES = 30  # enough for the gate's paired bootstrap to see a fall


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    path = default_dir()
    if not (path / "model.safetensors").exists():
        pytest.fail(f"no reference checkpoint at {path}: run `vlm-harness fixtures train-reference`")
    return path


def test_training_data_matches_the_suite_it_is_scored_on():
    shapes, heldout = find_suite("synthetic-shapes"), find_suite("reference-heldout")
    assert data.PROMPT == shapes.prompt == heldout.prompt
    assert data.IMAGE_SIZE == shapes.params["size"] == heldout.params["size"]
    assert data.MAX_COUNT == shapes.params["max_count"] == heldout.params["max_count"]
    assert heldout.seed != shapes.seed
    # Training streams carry a fourth seed word, so no training image is a suite image.
    a, b = data.sample(1000, 0), data.sample(1000, 0)
    assert a.image.tobytes() == b.image.tobytes() and a.answer == b.answer
    assert {data.sample(0, i).category for i in range(6)} == {"colour", "shape", "count"}


def test_committed_checkpoint_is_intact_and_benchmarked_by_default(checkpoint):
    from harness.models import default_models, resolve

    manifest = json.loads((checkpoint / MANIFEST).read_text())
    assert manifest["content_hash"] == content_hash(checkpoint), "checkpoint files differ from their manifest"
    assert manifest["random_weights"] is False and manifest["arch"] == "qwen2_5_vl"
    for key in ("seed", "steps"):
        assert key in manifest["train_config"]
    assert manifest["generator"]["version"] == data.GENERATOR_VERSION
    assert set(manifest["heldout"]) >= {"colour", "shape", "count", "all"}
    spec = resolve(NAME)
    assert Path(spec.source) == checkpoint.resolve()  # relative source, resolved against the root
    assert NAME in default_models()


def _train(out: Path, steps: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "harness", "fixtures", "train-reference", "--out", str(out), "--steps", str(steps),
         "--heldout", "0", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_train_reference_is_bitwise_reproducible(tmp_path):
    runs = [_train(tmp_path / name, 3) for name in ("a", "b")]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    digests = [hashlib.sha256((tmp_path / n / "model.safetensors").read_bytes()).hexdigest() for n in ("a", "b")]
    assert digests[0] == digests[1]
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["weights_sha256"] == digests[0] and manifest["train_config"]["steps"] == 3
    assert "blas" in manifest and manifest["random_weights"] is False
    r = subprocess.run([sys.executable, "-m", "harness", "fixtures", "train-reference", "--steps", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--steps must be at least 1" in r.stderr


# -- canaries: faults planted in the pipeline between the suite and the model ----------------
# Each fault keeps the suite (and its hash) and the model's name, so the gate compares it with
# the clean baseline exactly as it would a harness change that broke preprocessing.


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / MANIFEST).unlink()  # the copy is no longer the committed checkpoint
    return dst


def _bgr(src: Path, dst: Path) -> Path:
    """A first layer that reads channels in the opposite order: the model computes exactly what
    the clean model computes on a BGR image (test_bgr_fault_is_a_channel_swap checks it)."""
    import mlx.core as mx

    _copy_checkpoint(src, dst)
    weights = mx.load(str(dst / "model.safetensors"))
    key = "vision_tower.patch_embed.proj.weight"  # (out, t, h, w, channels)
    weights[key] = weights[key][..., ::-1]
    mx.save_safetensors(str(dst / "model.safetensors"), weights, metadata={"format": "mlx"})
    pre = json.loads((dst / "preprocessor_config.json").read_text())
    pre["image_mean"], pre["image_std"] = pre["image_mean"][::-1], pre["image_std"][::-1]
    (dst / "preprocessor_config.json").write_text(json.dumps(pre))
    return dst


def _double_rescale(src: Path, dst: Path) -> Path:
    """Pixels divided by 255 twice: every image arrives almost uniformly dark, its content lost."""
    _copy_checkpoint(src, dst)
    pre = json.loads((dst / "preprocessor_config.json").read_text())
    pre["rescale_factor"] = pre["rescale_factor"] / 255
    (dst / "preprocessor_config.json").write_text(json.dumps(pre))
    return dst


def _broken_template(src: Path, dst: Path) -> Path:
    """A chat template that forgets the assistant turn: the model is never asked to answer."""
    _copy_checkpoint(src, dst)
    tcfg = json.loads((dst / "tokenizer_config.json").read_text())
    broken = tcfg["chat_template"].replace("<|im_start|>assistant\n", "")
    assert broken != tcfg["chat_template"]
    tcfg["chat_template"] = broken
    (dst / "tokenizer_config.json").write_text(json.dumps(tcfg))
    (dst / "chat_template.jinja").write_text(broken)
    return dst


def _model_file(root: Path, source: Path, images: str = "") -> None:
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / f"{NAME}.toml").write_text(f'name = "{NAME}"\nsource = "{source}"\nmax_tokens = 8\n{images}')


@pytest.fixture(scope="module")
def reliable(checkpoint) -> list[str]:
    """The categories the committed model answers reliably (>= 90 % held out): a canary is only
    as sensitive as the model is right, so its suite asks about those."""
    heldout = json.loads((checkpoint / MANIFEST).read_text())["heldout"]
    cats = [c for c in ("colour", "shape", "count") if heldout[c]["accuracy"] >= 0.9]
    assert cats, f"the reference model is reliable on no category: {heldout}"
    return cats


@pytest.fixture(scope="module")
def canary(checkpoint, reliable, tmp_path_factory):
    """One clean baseline run, one run per fault and a clean re-run, all through VLMTester, on
    held-out samples (seed 1000) of the categories the model is reliable on."""
    from harness.run.tester import VLMTester

    base = tmp_path_factory.mktemp("canary")
    root = base / "root"  # a project root whose models/ names the variant under test
    (root / "suites").mkdir(parents=True)
    (root / "datasets").mkdir()
    suite = (REPO / "suites" / "reference-heldout.toml").read_text()
    suite = suite.replace('name = "reference-heldout"', 'name = "reference-canary"')
    suite = suite.replace('tasks = ["colour", "shape", "count"]', f"tasks = {json.dumps(reliable)}")
    assert "reference-canary" in suite and json.dumps(reliable) in suite
    (root / "suites" / "reference-canary.toml").write_text(suite)
    variants = {
        "clean": (checkpoint, ""),
        "bgr": (_bgr(checkpoint, base / "bgr"), ""),
        "squash-28px": (checkpoint, "[images]\nmax_size = 28\n"),
        "lost-image": (_double_rescale(checkpoint, base / "rescale"), ""),
        "chat-template": (_broken_template(checkpoint, base / "template"), ""),
        "clean-again": (checkpoint, ""),
    }
    saved = os.environ.get("VLM_HARNESS_ROOT")
    os.environ["VLM_HARNESS_ROOT"] = str(root)
    runs = {}
    try:
        for name, (source, images) in variants.items():
            _model_file(root, source, images)
            tester = VLMTester(base / "runs", run_id=name, limit=CANARY_SAMPLES, progress=False)
            df = tester.run([NAME], ["reference-canary"])
            runs[name] = (tester.run_dir, summary(df))
    finally:
        os.environ["VLM_HARNESS_ROOT"] = saved or str(REPO)
    return runs


def _gate(baseline: Path, current: Path) -> int:
    from harness.cli import main

    # Timings on a shared CPU are not what a canary tests: only accuracy and errors may fail it.
    return main(["gate", "--baseline", str(baseline), "--current", str(current), "--factor", "1000"])


def _mean(table: dict, cats: list[str]) -> float:
    return sum(table[c]["accuracy"] for c in cats) / len(cats)


def test_without_a_fault_accuracy_stays_high_and_the_gate_passes(canary, reliable):
    clean_dir, clean = canary["clean"]
    again_dir, again = canary["clean-again"]
    assert clean["all"]["n"] == CANARY_SAMPLES and clean["all"]["errors"] == 0
    for c in reliable:
        assert clean[c]["accuracy"] >= 0.9, (c, clean)
    assert again == clean  # greedy decoding of the same inputs: the same answers
    assert _gate(clean_dir, again_dir) == 0


@pytest.mark.parametrize("fault", ["bgr", "squash-28px", "lost-image", "chat-template"])
def test_a_planted_fault_drops_accuracy_and_fails_the_gate(canary, reliable, fault):
    clean_dir, clean = canary["clean"]
    fault_dir, broken = canary[fault]
    # Channel order is what colour depends on; shape and count are rightly blind to it.
    affected = ["colour"] if fault == "bgr" and "colour" in reliable else reliable
    assert _mean(broken, affected) <= _mean(clean, affected) - (0.3 if affected == ["colour"] else 0.25), (fault, broken)
    assert _gate(clean_dir, fault_dir) == 1


def test_bgr_fault_is_a_channel_swap(checkpoint, tmp_path):
    """The BGR canary's checkpoint on an RGB image equals the clean model on the BGR image."""
    import mlx.core as mx
    import numpy as np
    from mlx_vlm import apply_chat_template, load
    from mlx_vlm.utils import prepare_inputs
    from PIL import Image

    img = data.sample(5, 0).image
    swapped = Image.fromarray(np.asarray(img)[..., ::-1].copy())
    logits = []
    for path, im in ((checkpoint, swapped), (_bgr(checkpoint, tmp_path / "bgr"), img)):
        model, processor = load(str(path))
        prompt = apply_chat_template(processor, model.config, data.PROMPT.format(question="What colour is the shape?"), num_images=1)
        inputs = prepare_inputs(processor, images=[im], prompts=prompt, image_token_index=model.config.image_token_id)
        out = model(inputs["input_ids"], pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
        logits.append(np.array(out.logits[0, -1].astype(mx.float32)))
    assert np.allclose(logits[0], logits[1], atol=1e-4)
