"""The measuring process: one per model, so memory figures start clean and a crash or an
out-of-memory kill takes down only this model's process, never the run.

It talks to the parent over a pipe: ("loaded", LoadStats, env) or ("load_error", message),
then ("result", index, Measurement | None, status, error) per task, then ("done",).
"""

from __future__ import annotations

import traceback
from multiprocessing.connection import Connection

from harness.models import ModelSpec
from harness.records import Sample


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".strip()


def worker_main(conn: Connection, spec: ModelSpec, path: str, tasks: list[tuple[int, Sample, int]], warmup: int,
                reuse_prefix: bool = False) -> None:
    from harness import environment
    from harness.adapters import ADAPTERS, Unsupported
    from harness.memory_safety import WontFit

    try:
        adapter = ADAPTERS.get(spec.adapter)(spec, path)
        stats = adapter.load()
        env = environment.collect()
    except WontFit as e:  # refused before loading: a recorded skip, not a failure
        conn.send(("load_skipped", str(e)))
        conn.close()
        return
    except Exception as e:  # any load failure is a recorded error, never a dead run
        conn.send(("load_error", _one_line(e), traceback.format_exc()))
        conn.close()
        return
    conn.send(("loaded", stats, env))

    def limit(sample: Sample) -> int:
        return sample.max_tokens  # the tester has already applied --max-tokens and the model's limit

    # MLX compiles kernels on first use (seconds on a CPU); untimed warm-up keeps that cost
    # out of the first sample. A warm-up failure is left for the real sample to report.
    for _ in range(warmup):
        if not tasks:
            break
        try:
            adapter.generate(tasks[0][1], limit(tasks[0][1]))
        except Exception:
            break
    # Enabled after the warm-up, so the first measured sample does not reuse the warm-up's prefix.
    if reuse_prefix and hasattr(adapter, "enable_prefix_reuse"):
        adapter.enable_prefix_reuse()

    for index, sample, _repeat in tasks:
        conn.send(("start", index))
        try:
            m = adapter.generate(sample, limit(sample))
            conn.send(("result", index, m, "ok", ""))
        except Unsupported as e:
            conn.send(("result", index, None, "unsupported", str(e)))
        except WontFit as e:
            conn.send(("result", index, None, "skipped", str(e)))
        except MemoryError:
            conn.send(("result", index, None, "error", "out of memory during generation"))
        except Exception as e:
            conn.send(("result", index, None, "error", _one_line(e)))
    adapter.close()
    conn.send(("done",))
    conn.close()
