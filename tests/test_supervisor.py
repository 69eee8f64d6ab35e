"""One supervisor for every worker: crashes and deadlines at load, warm-up and per task."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

from harness.run.supervisor import exit_hint, signal_name
from harness.run.tester import VLMTester

REPO = Path(__file__).resolve().parent.parent

MISBEHAVING_MODEL = '''
import os, signal, time
from mlx_vlm.models.qwen2_5_vl import LanguageModel, ModelConfig, TextConfig, VisionConfig, VisionModel  # noqa: F401
from mlx_vlm.models.qwen2_5_vl import Model as _Model

MODE = {mode!r}
STARTS = {starts!r}


class Model(_Model):
    """Qwen2.5-VL whose vision side faults (SIGFPE) or stalls on every image, as a vision tower
    that builds an empty attention window does on some backends."""

    def __init__(self, config):
        super().__init__(config)
        with open(STARTS, "a") as f:
            f.write("start\\n")

    def get_input_embeddings(self, input_ids=None, pixel_values=None, **kwargs):
        if MODE == "fpe":
            os.kill(os.getpid(), signal.SIGFPE)
        time.sleep(30)
        return super().get_input_embeddings(input_ids, pixel_values, **kwargs)
'''


def _misbehaving(qwen_dir: Path, tmp_path: Path, mode: str) -> tuple[Path, Path]:
    ckpt = tmp_path / f"model-{mode}"
    shutil.copytree(qwen_dir, ckpt)
    (ckpt / "fixture.json").unlink()
    starts = tmp_path / f"starts-{mode}.txt"
    (ckpt / "misbehave.py").write_text(MISBEHAVING_MODEL.format(mode=mode, starts=str(starts)))
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "model_file": "misbehave.py"}))
    return ckpt, starts


def test_a_crash_at_warm_up_is_tried_once_named_and_the_run_goes_on(fixtures_root, qwen_dir, tmp_path):
    ckpt, starts = _misbehaving(qwen_dir, tmp_path, "fpe")
    df = VLMTester(tmp_path / "runs", limit=3, progress=False, round_samples=0).run([str(ckpt), "fixture-qwen2_5_vl"],
                                                                  ["synthetic-shapes"])
    bad = df[df["model"] == str(ckpt)]
    assert starts.read_text().count("start") == 1  # loaded once: a warm-up crash recurs, so no retry
    assert len(bad) == 3 and (bad["status"] == "error").all()
    error = bad["error"].iloc[0]
    assert "worker process died (SIGFPE) during warm-up" in error and "not retried" in error
    assert "out-of-memory" not in error  # only SIGKILL suggests memory
    # The faulthandler dump travels with the row: a stack that names the model's own code.
    assert "Floating point exception" in bad["traceback"].iloc[0]
    assert "get_input_embeddings" in bad["traceback"].iloc[0]
    assert (df[df["model"] == "fixture-qwen2_5_vl"]["status"] == "ok").sum() == 3


def test_a_slow_warm_up_is_a_timeout_not_a_crash(fixtures_root, qwen_dir, tmp_path):
    ckpt, starts = _misbehaving(qwen_dir, tmp_path, "stall")
    df = VLMTester(tmp_path / "runs", limit=2, timeout_s=3, progress=False).run([str(ckpt)], ["synthetic-shapes"])
    assert starts.read_text().count("start") == 1
    assert (df["status"] == "error").all() and len(df) == 2
    assert df["error"].str.contains("timed out after 3 s during warm-up").all()
    assert not df["error"].str.contains("crash|died").any()


def test_signal_names_and_hints():
    assert signal_name(-signal.SIGFPE) == "SIGFPE" and signal_name(3) == "exit code 3"
    assert "out-of-memory" in exit_hint(-signal.SIGKILL)
    for sig in (signal.SIGSEGV, signal.SIGFPE, signal.SIGABRT, signal.SIGBUS):
        assert "memory killer" not in exit_hint(-sig)


def test_one_place_starts_worker_processes():
    users = [p for p in (REPO / "harness").rglob("*.py") if re.search(r"\bPipe\(", p.read_text())]
    assert [p.name for p in users] == ["supervisor.py"]
    speed = (REPO / "harness" / "run" / "speed.py").read_text()
    # Speed sweeps drive the adapter's public methods: no mlx_vlm import, no private helper.
    assert not re.search(r"^\s*(from|import) mlx_vlm", speed, flags=re.M)
    assert not re.search(r"import _\w+|(?<!self)\._\w+\(", speed)


def test_a_cancelled_supervisor_kills_its_worker_mid_run(qwen_dir):
    """Supervisors of workers answering at once run in threads, which Ctrl-C does not reach: their
    caller's word (`cancelled`, polled while waiting) stops the run and kills the worker."""
    import time

    import psutil
    import pytest

    from harness.core.workloads import SuiteWorkload
    from harness.models import resolve
    from harness.run.supervisor import Cancelled, Supervisor
    from harness.suites import load_suite

    samples = load_suite("synthetic-shapes", 40).samples[:40]
    started: list[int] = []

    class Events:
        def loaded(self, msg):
            pass

        def started(self, task):
            started.append(task)

        def finished(self, msg):
            pass

        def failed(self, tasks, status, error, traceback=""):
            pass

    def workers():
        return [p for p in psutil.Process().children() if p.is_running() and p.status() != "zombie"
                and "multiprocessing.spawn" in " ".join(p.cmdline())]

    with pytest.raises(Cancelled):
        Supervisor(cancelled=lambda: len(started) >= 2).run(
            resolve("fixture-qwen2_5_vl"), str(qwen_dir), SuiteWorkload(tuple(enumerate(samples)), warmup=0), Events())
    assert 2 <= len(started) < 10  # stopped at once, not after its 40 samples
    deadline = time.monotonic() + 5
    while workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers() == []
