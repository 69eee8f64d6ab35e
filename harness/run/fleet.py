"""The fleet engine: a run's (model × shard) tasks on the nodes of a Ray cluster.

Ray schedules, restarts nothing and moves the rows; the harness measures exactly as it does
locally. Each node that offers the custom resource `vlm_harness` (`ray start ... --resources
'{"vlm_harness": 1}'`) takes one measuring task at a time, so two benchmarks never share a
machine, and a node without it (a head that only coordinates) takes none. A task is one model
on one shard of the suites' samples (harness/run/shards.py, N = the measuring nodes): it runs a
local VLMTester on its node (a worker process per model, the same supervisor and timeouts) and
streams every row back as a Ray generator, the moment the row is stored on the node. The head
(this process) appends each row to its own run directory as it arrives, a part file renamed into
place as in a local run. A node that dies costs only the samples it had not yet streamed: the
run is left unfinished and `--resume` measures exactly those, on whichever nodes are alive.

Why Ray: it is what teams running many models already operate (KubeRay, `ray up` on cloud
machines, or `ray start` on a few Macs), it streams results back from tasks, and a custom
resource gives one-benchmark-per-machine without a scheduler of our own.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from harness.run.progress import say

RESOURCE = "vlm_harness"  # one per node: a node measures one task at a time
_END = object()


class FleetError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or no node offers the resource."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FleetError("--ray needs Ray: pip install 'vlm-harness[ray]'") from None
    return ray


def _reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A quick TCP check of HOST:PORT first: ray.init would retry a wrong address for minutes.
    'auto' and ray:// addresses are left to Ray."""
    import socket

    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit() or "://" in str(address):
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise FleetError(f"--ray {address}: nothing answers there ({e.strerror or e}); give the address "
                         "`ray start --head` printed, e.g. 127.0.0.1:6379") from None


def measuring_nodes(ray: Any) -> list[str]:
    """Ids of the live nodes that offer the measuring resource."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(RESOURCE, 0) >= 1)


def _measure_task(tester_cls: type, model: str, suites: list[str], shard: str, options: dict[str, Any], run_id: str,
                  skip: frozenset) -> Iterator[list[dict[str, Any]]]:
    """Runs on a node: one model on one shard, its rows yielded as they are stored there.
    `tester_cls` is VLMTester, passed in (by reference) so that this module never imports it."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    rows: queue.Queue = queue.Queue()
    failure: list[BaseException] = []
    out = tempfile.mkdtemp(prefix="vlm-harness-fleet-")

    def measure() -> None:
        try:
            tester = tester_cls(out, run_id=run_id, shard=shard, node=node, skip=skip, forward=rows.put, progress=False,
                               **options)
            tester.run([model], suites)
        except BaseException as e:  # re-raised in the generator: the head names the task that failed
            failure.append(e)
        finally:
            rows.put(_END)

    thread = threading.Thread(target=measure, name=f"vlm-harness {model} {shard}", daemon=True)
    thread.start()
    try:
        while (batch := rows.get()) is not _END:
            yield batch
        thread.join()
        if failure:
            raise failure[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure_on_ray(tester: Any, models: list[str], suites: list[str], done: set[tuple]) -> list[str]:
    """Measure `tester`'s plan on the cluster at `tester.ray`, appending rows to `tester.store` as
    they arrive. Returns why tasks ended early (empty when every task finished)."""
    ray = _ray()
    if not ray.is_initialized():
        _reachable(tester.ray)
        try:
            ray.init(address=tester.ray, logging_level="ERROR", log_to_driver=False)
        except Exception as e:  # ConnectionError, and Ray's own for a wrong address
            raise FleetError(f"--ray {tester.ray}: cannot connect ({type(e).__name__}: {e}); give the address "
                             "`ray start --head` printed, e.g. 127.0.0.1:6379") from None
    nodes = measuring_nodes(ray)
    if not nodes:
        raise FleetError(f"--ray {tester.ray}: no live node offers the '{RESOURCE}' resource; start measuring nodes "
                         f"with ray start --resources '{{\"{RESOURCE}\": 1}}'")
    s = tester.settings
    options = {"repeats": s.repeats, "warmup": s.warmup, "limit": s.limit, "max_tokens": s.max_tokens,
               "reuse_prefix": s.reuse_prefix, "adapter": s.adapter, "base_url": s.base_url, "rounds": s.rounds,
               "round_samples": s.round_samples,
               "lockstep": s.lockstep, "mode": s.mode, "batch_size": s.batch_size, "concurrency": s.concurrency,
               "verify": s.verify, "workers": s.workers, "cache": s.cache,
               "timeout_s": tester.rules.task_timeout_s, "max_restarts": tester.rules.max_restarts}
    remote = ray.remote(_measure_task).options(resources={RESOURCE: 1}, num_cpus=0, max_retries=0)
    n = len(nodes)
    say(f"fleet: {len(models)} model(s) × {n} shard(s) on {n} measuring node(s) of {tester.ray}")
    lock = threading.Lock()
    problems: list[str] = []
    counts: dict[str, int] = {}

    def gather(model: str, shard: str) -> None:
        gen = remote.remote(type(tester), model, suites, shard, options, tester.run_id, frozenset(done))
        try:
            for ref in gen:
                batch = ray.get(ref)
                with lock:  # one writer: parts get distinct sequence numbers
                    tester.store.append(batch)
                    counts[model] = counts.get(model, 0) + len(batch)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            with lock:
                problems.append(f"{model} shard {shard}: {type(e).__name__}: {first[:300]}")

    threads = [threading.Thread(target=gather, args=(m, f"{k}/{n}"), daemon=True)
               for m in models for k in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in problems:
        say(f"fleet: task ended early: {p}; its finished rows are saved, `--resume` measures the rest")
    return problems


__all__ = ["RESOURCE", "FleetError", "measure_on_ray", "measuring_nodes"]
