from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.rundir import RunDir
from harness.results.store import read_results
from harness.run.tester import VLMTester

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(fixtures_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    tester = VLMTester(out, limit=4, progress=False, round_samples=0)
    df = tester.run(["fixture-qwen2_5_vl", "fixture-smolvlm-4bit", "fixture-nope"], ["synthetic-shapes", "natural"])
    return tester, df


def test_every_model_suite_and_sample_gets_a_row(run):
    tester, df = run
    ok = df[df["status"] == "ok"]
    assert sorted(ok["model"].unique()) == ["fixture-qwen2_5_vl", "fixture-smolvlm-4bit"]
    assert ok.groupby(["model", "suite"]).size().to_dict() == {
        ("fixture-qwen2_5_vl", "natural"): 4, ("fixture-qwen2_5_vl", "synthetic-shapes"): 4,
        ("fixture-smolvlm-4bit", "natural"): 4, ("fixture-smolvlm-4bit", "synthetic-shapes"): 4,
    }
    assert (tester.run_dir / "results.parquet").exists()
    assert not RunDir(tester.run_dir).part_files()


def test_an_unknown_model_is_an_error_row_and_the_rest_go_on(run):
    _, df = run
    bad = df[df["model"] == "fixture-nope"]
    assert len(bad) == 1 and bad["status"].iloc[0] == "error"
    assert "unknown model 'fixture-nope'" in bad["error"].iloc[0]


def test_rows_carry_measurements_scores_and_environment(run):
    _, df = run
    ok = df[df["status"] == "ok"]
    for col in ("ttft_s", "prefill_tps", "decode_tps", "wall_s", "load_s", "import_s", "peak_mlx_bytes",
                "peak_rss_bytes", "model_size_bytes", "prompt_tokens", "generated_tokens"):
        assert (ok[col] > 0).all(), col
    assert set(ok["score"].unique()) <= {0.0, 1.0}
    assert ok["generated_tokens"].eq(ok["max_tokens"]).all()
    assert ok["random_weights"].all()
    assert set(ok["quantization"]) == {"bf16", "4bit"}
    assert ok["suite_hash"].str.len().eq(64).all() and ok["model_hash"].str.len().eq(64).all()
    for col in ("env_os", "env_cpu", "env_python", "env_mlx", "env_mlx_vlm", "env_device", "harness_version"):
        assert ok[col].astype(bool).all(), col
    assert set(ok["suite_kind"]) == {"natural", "synthetic"}
    # Load is measured once per worker: one value per model.
    assert ok.groupby(["model", "round"])["load_s"].nunique().eq(1).all()  # one load per worker: model × round
    # Inter-token latencies: one per token after the first, and decode_tps is their rate.
    for _, r in ok.iterrows():
        assert len(r["itl_s"]) == r["generated_tokens"] - 1 and min(r["itl_s"]) > 0
        assert r["decode_tps"] == pytest.approx((r["generated_tokens"] - 1) / sum(r["itl_s"]), rel=1e-9)


def test_test_model_returns_that_models_rows(fixtures_root, tmp_path):
    df = VLMTester(tmp_path, limit=2, progress=False).test_model("fixture-qwen2_5_vl", suites=["synthetic-shapes"])
    assert len(df) == 2 and set(df["model"]) == {"fixture-qwen2_5_vl"}


def _dataset(root: Path, questions: list[dict]) -> None:
    """A project tree with a small natural-style dataset, for inputs that must misbehave."""
    shutil.copytree(REPO / "suites", root / "suites")
    data = root / "datasets" / "mini"
    (data / "images").mkdir(parents=True)
    src = REPO / "datasets" / "natural"
    manifest = json.loads((src / "manifest.json").read_text())
    keep = {q["image"] for q in questions}
    (data / "manifest.json").write_text(json.dumps({"images": [m for m in manifest["images"] if m["file"] in keep]}))
    for name in keep:
        shutil.copy(src / "images" / name, data / "images" / name)
    (data / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    (root / "suites" / "mini.toml").write_text(
        'name = "mini"\nkind = "natural"\nsource = "natural"\nmetric = "exact_match"\nmax_tokens = 4\n'
        'prompt = "{question}"\n[params]\ndataset = "mini"\n'
    )


def q(i, image="chelsea.png", question="What animal is this?"):
    return {"id": f"q{i}", "image": image, "question": question, "answers": ["cat"], "kind": "object"}


def test_an_unreadable_image_is_an_error_row_and_the_rest_go_on(fixtures_root, tmp_path, monkeypatch):
    _dataset(tmp_path, [q(0), q(1, image="coffee.png"), q(2)])
    # The manifest's hash guards against edits; a file that breaks after loading the suite (a bad
    # disk, a sync in progress) must still become an error row, not a dead run.
    from harness.suites import load_suite

    monkeypatch.setenv("VLM_HARNESS_ROOT", str(tmp_path))
    suite = load_suite("mini")
    img = Path(suite.samples[1].images[0])
    img.write_bytes(img.read_bytes()[:200])
    monkeypatch.setattr("harness.run.tester.load_suite", lambda name, limit=None: suite)
    df = VLMTester(tmp_path / "runs", progress=False).run(["fixture-qwen2_5_vl"], ["mini"])
    by_id = df.set_index("sample_id")
    assert by_id.loc["q0", "status"] == "ok" and by_id.loc["q2", "status"] == "ok"
    assert by_id.loc["q1", "status"] == "error"
    assert "coffee.png cannot be read" in by_id.loc["q1", "error"]


CRASHING_MODEL = '''
import os, signal
from mlx_vlm.models.qwen2_5_vl import LanguageModel, ModelConfig, TextConfig, VisionConfig, VisionModel  # noqa: F401
from mlx_vlm.models.qwen2_5_vl import Model as _Model


class Model(_Model):
    """Qwen2.5-VL that dies like an out-of-memory kill on any prompt longer than 150 tokens."""

    def get_input_embeddings(self, input_ids=None, pixel_values=None, **kwargs):
        if input_ids is not None and input_ids.shape[-1] > 150:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().get_input_embeddings(input_ids, pixel_values, **kwargs)
'''


def test_a_worker_killed_mid_sample_costs_that_sample_only(fixtures_root, qwen_dir, tmp_path, monkeypatch):
    ckpt = tmp_path / "crashy"
    shutil.copytree(qwen_dir, ckpt)
    (ckpt / "fixture.json").unlink()
    (ckpt / "crashy.py").write_text(CRASHING_MODEL)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "model_file": "crashy.py"}))
    long_question = "Describe " + "the picture and " * 40 + "answer."
    _dataset(tmp_path, [q(0), q(1, question=long_question), q(2)])
    monkeypatch.setenv("VLM_HARNESS_ROOT", str(tmp_path))
    df = VLMTester(tmp_path / "runs", progress=False, round_samples=0).run([str(ckpt), "fixture-qwen2_5_vl"], ["mini"])
    crashy = df[df["model"] == str(ckpt)].set_index("sample_id")
    assert crashy.loc["q0", "status"] == "ok" and crashy.loc["q2", "status"] == "ok"
    assert crashy.loc["q1", "status"] == "error"
    assert "worker process died (SIGKILL) during sample q1" in crashy.loc["q1", "error"]
    # The other model in the same run is untouched.
    assert (df[df["model"] == "fixture-qwen2_5_vl"]["status"] == "ok").sum() == 3
    # In one round, lockstep: the sample after the crash goes to a fresh worker after the
    # round's turns, alone, and its row says so; the others ran turn about.
    one = VLMTester(tmp_path / "runs1", progress=False, rounds=1).run([str(ckpt), "fixture-qwen2_5_vl"], ["mini"])
    crashy = one[one["model"] == str(ckpt)].set_index("sample_id")
    assert crashy.loc["q1", "status"] == "error" and crashy.loc["q2", "status"] == "ok"
    assert crashy.loc["q0", "lockstep"] and not crashy.loc["q2", "lockstep"]
    assert one[one["model"] == "fixture-qwen2_5_vl"]["lockstep"].all()


def test_sigkill_halfway_keeps_finished_rows_and_resume_completes_the_rest(fixtures_root, tmp_path):
    cmd = [sys.executable, "-m", "harness", "run", "-m", "fixture-qwen2_5_vl", "-s", "synthetic-shapes",
           "--out", str(tmp_path), "--run-id", "k", "--repeats", "3", "--max-tokens", "24", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = RunDir(tmp_path / "k")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(run.part_files()) < 10:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_results(tmp_path / "k")
    assert 10 <= len(before) < 72, "the kill should land mid-run"
    assert (before["status"] == "ok").all()
    assert not (tmp_path / "k" / "results.parquet").exists()

    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = read_results(tmp_path / "k")
    assert len(after) == 72
    assert not after.duplicated(["sample_id", "repeat"]).any()
    # Finished rows were kept as they were, not measured again.
    merged = before.merge(after, on=["sample_id", "repeat"], suffixes=("_b", "_a"))
    assert (merged["recorded_at_b"] == merged["recorded_at_a"]).all()
    assert (merged["decode_tps_b"] == merged["decode_tps_a"]).all()
