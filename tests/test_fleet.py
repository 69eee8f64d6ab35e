"""The Ray fleet engine on a local cluster of two nodes: the same rows as a local run, rows
that name their node, and a node's worker killed mid-run costing only unfinished samples."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'vlm-harness[ray]' (.ci/run: nox -s tests_ray)")
psutil = pytest.importorskip("psutil")

from harness.core.schema import KEY  # noqa: E402
from harness.results.rundir import RunDir  # noqa: E402
from harness.results.store import read_results  # noqa: E402
from harness.run.fleet import RESOURCE  # noqa: E402
from harness.run.tester import VLMTester  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = ["fixture-qwen2_5_vl", "fixture-smolvlm-4bit"]
SUITES = ["synthetic-shapes", "natural"]
LIMIT = 4
# Small enough for a two-core, 24 GiB machine: a 100 MB object store (rows are kilobytes), no dashboard.
NODE = ["--num-cpus", "1", "--object-store-memory", str(100 * 2**20), "--disable-usage-stats", "--block"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """`ray start --block` stops the processes it started when it is asked to stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(fixtures_root, tmp_path_factory):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = [sys.executable, "-m", "ray.scripts.scripts"]
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("ray-logs")
    started = []
    try:
        head = subprocess.Popen([*ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                 "--include-dashboard", "false", "--resources", json.dumps({RESOURCE: 1}), *NODE],
                                env=env, stdout=open(logs / "head.log", "w"), stderr=subprocess.STDOUT)
        started.append(head)
        _wait_for_nodes(address, 1, head)
        second = subprocess.Popen([*ray_bin, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                                   "--resources", json.dumps({RESOURCE: 1}), *NODE],
                                  env=env, stdout=open(logs / "node2.log", "w"), stderr=subprocess.STDOUT)
        started.append(second)
        _wait_for_nodes(address, 2, second)
        yield address, head, second
    finally:
        for proc in reversed(started):
            _stop(proc)


def _wait_for_nodes(address: str, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            f"print(sum(1 for x in ray.nodes() if x['Alive'] and x['Resources'].get('{RESOURCE}')))")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"ray start exited with {proc.returncode}"
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120)
        if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= n:
            return
        time.sleep(2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} measuring node(s) in {timeout:.0f} s")


def _run(address: str, out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "harness", "run", "--ray", address, "--out", str(out), "--limit", str(LIMIT),
            "--warmup", "0", "--round-samples", "0", "--no-progress", *[x for m in MODELS for x in ("-m", m)],
            *[x for s in SUITES for x in ("-s", s)], *extra]
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def local(fixtures_root, tmp_path_factory):
    return VLMTester(tmp_path_factory.mktemp("local"), limit=LIMIT, warmup=0, progress=False, round_samples=0).run(MODELS, SUITES)




def _measuring_workers(node_proc: subprocess.Popen) -> list[psutil.Process]:
    """The Ray workers of the node started by `node_proc` that run a measuring task."""
    out = []
    for p in psutil.Process(node_proc.pid).children(recursive=True):
        try:
            if "_measure_task" in " ".join(p.cmdline()) or p.name().startswith("ray::_measure"):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_fleet_run_equals_a_local_run_and_survives_a_killed_worker(cluster, local, tmp_path):
    address, _head, second = cluster
    out = tmp_path / "runs"
    proc = _run(address, out, "--run-id", "fleet")
    run = RunDir(out / "fleet")
    # Wait until the second node has streamed a row to the head, then kill its measuring worker.
    killed, before = False, None
    end = time.monotonic() + 400
    while time.monotonic() < end and proc.poll() is None:
        workers = _measuring_workers(second)
        if workers and run.part_files():
            rows = read_results(run.path, damaged="skip")
            if len(rows) >= 2 and len(set(rows["node"].dropna())) >= 1 and len(rows) < len(local) - 2:
                for w in workers:
                    w.kill()
                killed = True
                before = read_results(run.path, damaged="skip")
                break
        time.sleep(0.3)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed, f"the second node's worker was never seen measuring\n{stderr[-3000:]}"
    assert proc.returncode == 1, stderr[-3000:]
    assert "ended early" in stderr and "--resume" in stderr
    assert not run.finished

    resumed = _run(address, out, "--run-id", "fleet", "--resume")
    stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-3000:]
    df = read_results(run.path)
    assert sorted(df[list(KEY)].itertuples(index=False, name=None)) == sorted(
        local[list(KEY)].itertuples(index=False, name=None))
    both = local.merge(df, on=list(KEY), suffixes=("_local", "_fleet"))
    assert (both["output_local"] == both["output_fleet"]).all()  # greedy decoding: the same text
    # Nothing finished before the kill was measured again or lost: the same rows, the same times.
    kept = before.merge(df, on=list(KEY), suffixes=("_before", "_after"))
    assert len(kept) == len(before)
    assert (kept["recorded_at_before"] == kept["recorded_at_after"]).all()
    assert df["node"].notna().all() and df["node"].nunique() == 2
    assert set(df["shard"]) == {"1/2", "2/2"} and df["machine_id"].notna().all()


def test_no_measuring_node_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--ray", "127.0.0.1:1", "--out", str(tmp_path),
                        "-m", MODELS[0], "-s", SUITES[0], "--limit", "1", "--no-progress"], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2
    assert "--ray 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr
