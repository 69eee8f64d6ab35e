from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.measure import environment

REPO = Path(__file__).resolve().parent.parent


def test_rows_name_the_device_mlx_computes_on():
    env = environment.collect()
    dev = environment.device()
    assert env["env_backend"] == dev.backend == "cpu"  # this machine has no GPU
    assert env["env_device_name"] == environment._cpu_name() and env["env_device_name"]
    assert env["env_device_memory_bytes"] > 2**30
    assert env["env_cuda"] is None and env["env_gpu_driver"] is None  # absent, not ""
    from harness.core.schema import NAMES

    assert set(env) <= set(NAMES)


def test_harness_git_is_the_checkout_revision_else_null(monkeypatch):
    want = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                          capture_output=True, text=True).stdout.strip()
    assert environment.git_revision() == want
    # Installed without a checkout, a build record or pip's VCS record: null, never "".
    monkeypatch.setattr(environment, "_git_from_checkout", lambda: None)
    monkeypatch.setattr(environment, "_git_from_install", lambda: None)
    monkeypatch.setitem(sys.modules, "harness._build_info", None)  # as if no wheel baked one
    assert environment.git_revision() is None


def test_import_time_is_measured_in_a_fresh_interpreter_once_mlx_is_loaded():
    import mlx.core  # noqa: F401  (already imported: an in-process timer would read ~0)

    assert environment.import_seconds() > 0.05
