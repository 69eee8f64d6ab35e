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


def test_machine_id_is_the_same_in_every_process_where_no_network_card_is_read(monkeypatch):
    # Seen on a GPU container with no /etc/machine-id and no readable card: uuid.getnode() made up
    # a random number per worker process, each worker became a machine of its own, and the report
    # compared no two models ("twin-b, the only model measured").
    import random
    import uuid

    monkeypatch.delenv(environment.MACHINE_ID_ENV, raising=False)
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (_ for _ in ()).throw(FileNotFoundError(self))
                        if "machine-id" in str(self) else real_read(self, *a, **k))
    ids = set()
    for _ in range(3):  # each a fresh process's made-up node: random, with the multicast bit set
        monkeypatch.setattr(uuid, "getnode", lambda: random.getrandbits(48) | 1 << 40)
        environment.machine_id.cache_clear()
        ids.add(environment.machine_id())
    environment.machine_id.cache_clear()
    assert len(ids) == 1
    # A real card's address (multicast bit clear) still names the machine.
    monkeypatch.setattr(uuid, "getnode", lambda: 0x0242AC110002)
    assert "0242ac110002" in environment._raw_machine_id()
    environment.machine_id.cache_clear()


def test_rows_name_the_cores_the_process_may_use(monkeypatch):
    """A worker started under taskset (or in a container's cpuset) says so in its rows."""
    import os

    cores = sorted(os.sched_getaffinity(0))
    code = "from harness.measure.environment import collect; print(collect()['env_cpu_affinity'])"
    pinned = subprocess.run(["taskset", "-c", str(cores[-1]), sys.executable, "-c", code], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert pinned == str(cores[-1])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {8, 0, 2, 1, 5, 7})
    assert environment.cpu_affinity() == "0-2,5,7-8"
