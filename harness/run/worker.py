"""The measuring process: one per model, so memory figures start clean and a crash or an
out-of-memory kill takes down only this model's process, never the run.

It loads the model through its adapter, lets the workload warm up, then runs the workload's
tasks one by one, reporting each over the pipe (harness/run/protocol.py). What a task *is* belongs
to the workload (harness/core/workloads.py): a suite sample, a speed test, ...
"""

from __future__ import annotations

import faulthandler
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from harness.models import ModelSpec
from harness.run.protocol import Done, Finished, Loaded, LoadFailed, Ready, Started


def one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".strip()


def _word(pace: Connection) -> Any:
    """The supervisor's next word in lockstep: a task to run, or None to finish (also when the
    supervisor is gone: there is nothing to report to)."""
    try:
        return pace.recv()
    except (EOFError, OSError):
        return None


def worker_main(conn: Connection, spec: ModelSpec, path: str, workload: Any, crash_log: str = "",
                pace: Connection | None = None) -> None:
    """Load, warm up, run the tasks. With `pace` (models measured in lockstep), each task waits
    for the supervisor's go, and None instead ends the tasks early."""
    if crash_log:
        # A native crash (SIGSEGV, SIGFPE, SIGABRT) leaves no Python exception to send; the
        # supervisor reads this file so the error row still carries a stack.
        log = open(crash_log, "w")  # noqa: SIM115 - open for the life of the process
        faulthandler.enable(file=log, all_threads=False)
    from harness.adapters import ADAPTERS, Unsupported
    from harness.measure import environment
    from harness.measure.memory_safety import WontFit

    try:
        adapter = ADAPTERS.get(spec.adapter)(spec, path)
        stats = adapter.load()
        env = environment.collect()
    except WontFit as e:  # refused before loading: a recorded skip, not a failure
        conn.send(LoadFailed(str(e), skipped=True))
        conn.close()
        return
    except Exception as e:  # any load failure is a recorded error, never a dead run
        conn.send(LoadFailed(one_line(e), traceback.format_exc()))
        conn.close()
        return
    conn.send(Loaded(stats, env))
    try:
        workload.warm_up(adapter)
    except Exception as e:  # the workload cannot run on this adapter at all
        conn.send(LoadFailed(one_line(e), traceback.format_exc()))
        conn.close()
        return
    conn.send(Ready())

    handoff_s = 0.0  # sending the previous result: the harness's cost, charged to the next task
    for task, item in workload.items():
        if pace is not None and _word(pace) is None:
            break
        t0 = time.perf_counter()
        conn.send(Started(task))
        status, result, error, tb = "ok", None, "", ""
        try:
            result = workload.run(adapter, item)
        except Unsupported as e:
            status, error = "unsupported", str(e)
        except WontFit as e:
            status, error = "skipped", str(e)
        except MemoryError:
            status, error, tb = "error", "out of memory during generation", traceback.format_exc()
        except Exception as e:
            status, error, tb = "error", one_line(e), traceback.format_exc()
        model_s = workload.model_seconds(result)  # the model's calls and the inputs any caller prepares
        total = time.perf_counter() - t0
        harness_s = max(0.0, total - model_s) + handoff_s if model_s is not None else None
        t1 = time.perf_counter()
        conn.send(Finished(task, status, result, error, tb, harness_s))
        handoff_s = time.perf_counter() - t1
    else:
        # In lockstep the other models are still answering: closing the model and ending the
        # process now (freeing its memory, tearing down the interpreter) would run beside their
        # last samples and slow them (measured: a round's last turn ran about 13 % slower, the
        # worst samples 2x, with another process busy). Wait for the supervisor's word.
        if pace is not None:
            _word(pace)
    adapter.close()
    conn.send(Done())
    conn.close()
