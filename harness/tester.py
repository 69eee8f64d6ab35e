"""VLMTester: plans model × suite × sample × repetition, runs each model in its own worker
process, scores the answers and appends every row to the results store as it arrives."""

from __future__ import annotations

import json
import multiprocessing as mp
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness import bandwidth, metrics
from harness.fixtures.build import build_arch, default_root, fixture_name
from harness.models import ModelError, ModelSpec, resolve, with_adapter
from harness.paths import reports_dir
from harness.records import LoadStats, Measurement, Sample
from harness.schema import KEY
from harness.store import ResultsStore
from harness.suites import Suite, SuiteError, load_suite

# Every suite that runs offline. The hub benchmarks (textvqa, chartqa, ...) are named explicitly:
# a default run must not download gigabytes.
DEFAULT_SUITES = (
    "synthetic-shapes", "synthetic-counting", "synthetic-ocr", "synthetic-ocr-hard", "synthetic-charts",
    "synthetic-spatial", "synthetic-sizes", "multi-image", "multi-turn", "natural", "natural-captions",
)
PLAN = "run.json"


@dataclass(frozen=True)
class Task:
    index: int
    model: ModelSpec
    suite: Suite
    sample: Sample
    repeat: int


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def latest_run(out_dir: Path) -> Path | None:
    runs = sorted(p for p in out_dir.glob("*") if (p / PLAN).exists())
    return runs[-1] if runs else None


def signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class VLMTester:
    """Benchmark models on suites; results go to `<out_dir>/<run_id>/` as parquet."""

    def __init__(
        self,
        out_dir: Path | str | None = None,
        *,
        run_id: str | None = None,
        resume: bool = False,
        repeats: int = 1,
        warmup: int = 1,
        limit: int | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 600.0,
        progress: bool = True,
        fixtures_root: Path | None = None,
        max_restarts: int = 2,
        reuse_prefix: bool = False,
        adapter: str | None = None,
        base_url: str = "",
    ) -> None:
        self.out_dir = Path(out_dir) if out_dir else reports_dir() / "runs"
        if resume and run_id is None:
            prev = latest_run(self.out_dir)
            if prev is None:
                raise FileNotFoundError(f"--resume: no earlier run in {self.out_dir}")
            run_id = prev.name
        self.run_id = run_id or new_run_id()
        self.run_dir = self.out_dir / self.run_id
        self.store = ResultsStore(self.run_dir)
        self.resume = resume
        self.repeats = repeats
        self.warmup = warmup
        self.limit = limit
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.progress = progress
        self.fixtures_root = fixtures_root or default_root()
        self.max_restarts = max_restarts
        self.reuse_prefix = reuse_prefix
        self.adapter = adapter  # run every model through this adapter instead of its own (run --adapter)
        self.base_url = base_url
        self._decode_cost: dict[str, Any] = {}  # model name -> bandwidth.DecodeCost | None

    # -- public API -------------------------------------------------------------------------
    def test_model(self, name: str, suites: Sequence[str] = DEFAULT_SUITES) -> pd.DataFrame:
        df = self.run([name], suites)
        return df[df["model"] == name].reset_index(drop=True)

    def run(self, models: Iterable[str], suites: Sequence[str] = DEFAULT_SUITES) -> pd.DataFrame:
        models, suites = list(models), list(suites)
        self._write_plan(models, suites)
        loaded_suites: list[Suite] = []
        for s in suites:
            try:
                loaded_suites.append(load_suite(s))
            except SuiteError as e:
                self._record_error(model="*", suite=s, error=str(e))
                self._say(f"error: {e}")
        done = self._done_keys() if self.resume else set()
        plan: list[tuple[ModelSpec | str, list[Task]]] = []
        index = 0
        for name in models:
            try:
                spec = resolve(name)
                if self.adapter:
                    spec = with_adapter(spec, self.adapter, self.base_url)
            except ModelError as e:
                self._record_error(model=name, suite="*", error=str(e))
                self._say(f"error: {e}")
                continue
            tasks = []
            for suite in loaded_suites:
                samples = suite.samples[: self.limit] if self.limit else suite.samples
                if self.reuse_prefix:  # questions on one image back to back, so its prefix can be reused
                    first = {}
                    samples = sorted(samples, key=lambda x: first.setdefault(x.images, len(first)))
                for sample in samples:
                    for rep in range(self.repeats):
                        if (spec.name, suite.name, suite.hash, sample.id, rep) in done:
                            continue
                        tasks.append(Task(index, spec, suite, sample, rep))
                        index += 1
            plan.append((spec, tasks))
        total = sum(len(t) for _, t in plan)
        bar = self._bar(total)
        try:
            for spec, tasks in plan:
                if tasks:
                    self._run_model(spec, tasks, bar)
        finally:
            if bar is not None:
                bar.close()
        self.store.consolidate()
        df = self.store.read()
        self._write_accuracy(df)
        return df

    # -- internals --------------------------------------------------------------------------
    def _write_accuracy(self, df: pd.DataFrame) -> None:
        from harness.accuracy import write_accuracy

        try:
            write_accuracy(self.run_dir, df)
        except Exception as e:  # the measurements are safe on disk; the summary can be redone
            self._say(f"warning: accuracy.parquet not written ({type(e).__name__}: {e}); "
                      "harness.accuracy.accuracy_table(results) recomputes it")

    def _bandwidth(self) -> Any:
        if not hasattr(self, "_bw"):
            try:
                self._bw = bandwidth.machine_bandwidth()
            except Exception:  # a failed measurement leaves the bound columns empty
                self._bw = None
        return self._bw

    def _say(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def _bar(self, total: int) -> Any:
        if not self.progress or not sys.stderr.isatty():
            # In a log (CI, a pipe) a redrawn bar is noise: one line per model instead.
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="sample", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)

    def _write_plan(self, models: list[str], suites: list[str]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        plan = {
            "run_id": self.run_id, "models": models, "suites": suites, "repeats": self.repeats,
            "warmup": self.warmup, "limit": self.limit, "max_tokens": self.max_tokens, "reuse_prefix": self.reuse_prefix,
        }
        (self.run_dir / PLAN).write_text(json.dumps(plan, indent=2) + "\n")

    def _done_keys(self) -> set[tuple]:
        df = self.store.read()
        if df.empty:
            return set()
        # Errors are retried on resume: the cause may have been fixed. The newer row wins.
        ok = df[df["status"].isin(["ok", "unsupported"])]
        return set(ok[list(KEY)].itertuples(index=False, name=None))

    def _checkpoint_path(self, spec: ModelSpec) -> str:
        if not spec.is_fixture:
            return spec.source
        name = spec.source.split(":", 1)[1]
        arch = name.removesuffix("-4bit")
        precision = "4bit" if name.endswith("-4bit") else "full"
        path = self.fixtures_root / fixture_name(arch, precision)
        if not path.exists():
            self._say(f"building fixture {arch} in {self.fixtures_root}")
        build_arch(arch, self.fixtures_root)
        return str(path)

    def _base_row(self, task: Task) -> dict[str, Any]:
        s = task.sample
        return {
            "run_id": self.run_id, "model": task.model.name, "adapter": task.model.adapter,
            "model_source": task.model.source, "suite": task.suite.name, "suite_kind": task.suite.kind,
            "suite_hash": task.suite.hash, "sample_id": s.id, "category": s.category, "repeat": task.repeat,
            "prompt": s.prompt, "images": list(s.images), "answers": list(s.answers), "metric": s.metric,
            "turns": list(s.turns) or None,
            "max_tokens": self._limit(task),
        }

    def _limit(self, task: Task) -> int:
        """--max-tokens, else the model file's limit, else the suite's."""
        return self.max_tokens or task.model.max_tokens or task.sample.max_tokens

    def _record_error(self, *, model: str, suite: str, error: str) -> None:
        self.store.append([{
            "run_id": self.run_id, "model": model, "suite": suite, "suite_hash": "", "sample_id": "*",
            "repeat": 0, "status": "error", "error": error, "recorded_at": datetime.now(UTC),
        }])

    def _row(self, task: Task, load: dict[str, Any], m: Measurement | None, status: str, error: str) -> dict[str, Any]:
        row = {**self._base_row(task), **load, "status": status, "error": error, "recorded_at": datetime.now(UTC)}
        if m is not None:
            row.update(
                output=m.text, prompt_tokens=m.prompt_tokens, generated_tokens=m.generated_tokens,
                ttft_s=m.ttft_s, prefill_tps=m.prefill_tps, decode_tps=m.decode_tps, wall_s=m.wall_s,
                peak_mlx_bytes=m.peak_mlx_bytes, peak_rss_bytes=m.peak_rss_bytes, finish_reason=m.finish_reason,
                cached_tokens=m.cached_tokens, preprocessing=m.preprocessing or None,
                turn_outputs=list(m.turn_outputs) or None,
                server_prompt_tokens=m.server_prompt_tokens, server_completion_tokens=m.server_completion_tokens,
                server_prefill_s=m.server_prefill_s, server_prefill_tps=m.server_prefill_tps,
                server_decode_tps=m.server_decode_tps,
            )
            row.update(bandwidth.bound_columns(self._decode_cost.get(task.model.name), self._bandwidth(),
                                               m.prompt_tokens, m.generated_tokens))
            try:
                row["score"] = metrics.score(m.text, task.sample)
            except Exception as e:  # a metric bug must not lose the measurement
                row["error"] = f"scoring failed: {type(e).__name__}: {e}"
        return row

    def _run_model(self, spec: ModelSpec, tasks: list[Task], bar: Any) -> None:
        try:
            path = self._checkpoint_path(spec)
        except Exception as e:
            self._fail_all(tasks, {}, f"cannot build fixture: {type(e).__name__}: {e}", bar)
            return
        self._bandwidth()  # measured before any worker starts: a busy machine copies slower
        pending = list(tasks)
        restarts = 0
        started = time.monotonic()
        while pending:
            pending, crashed = self._run_worker(spec, path, pending, bar)
            if not crashed:
                break
            restarts += 1
            if restarts > self.max_restarts:
                self._fail_all(pending, {}, f"not run: the worker for {spec.name} crashed {restarts} times", bar)
                break
        if bar is None and self.progress:
            self._say(f"{spec.name}: {len(tasks)} sample(s) in {time.monotonic() - started:.1f} s")

    def _fail_all(self, tasks: list[Task], load: dict[str, Any], error: str, bar: Any, status: str = "error") -> None:
        self.store.append([self._row(t, load, None, status, error) for t in tasks])
        if bar is not None:
            bar.update(len(tasks))

    def _run_worker(self, spec: ModelSpec, path: str, tasks: list[Task], bar: Any) -> tuple[list[Task], bool]:
        """Run tasks in one worker; return (tasks not finished, whether the worker crashed)."""
        from harness.worker import worker_main

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        # The limit the row records is the one the worker uses: it travels inside the sample.
        payload = [(t.index, replace(t.sample, max_tokens=self._limit(t)), t.repeat) for t in tasks]
        proc = ctx.Process(target=worker_main, args=(child, spec, path, payload, self.warmup, self.reuse_prefix),
                           daemon=True)
        proc.start()
        child.close()
        by_index = {t.index: t for t in tasks}
        remaining = dict(by_index)
        load: dict[str, Any] = {}
        current: int | None = None
        last_msg = time.monotonic()
        # Loading a large checkpoint on a slow disk can take longer than one sample.
        deadline_s = self.timeout_s * 2
        try:
            while True:
                if parent.poll(0.2):
                    try:
                        msg = parent.recv()
                    except EOFError:
                        msg = None
                    if msg is None:
                        break
                    last_msg = time.monotonic()
                    kind = msg[0]
                    if kind == "loaded":
                        stats: LoadStats = msg[1]
                        load = _load_columns(stats, msg[2])
                        if self._decode_cost.get(spec.name) is None:  # on disk now, even a fresh download
                            self._decode_cost[spec.name] = bandwidth.decode_cost_or_none(path)
                        deadline_s = self.timeout_s
                    elif kind == "load_skipped":  # would not fit in memory: refused before loading
                        self._fail_all(list(remaining.values()), {}, msg[1], bar, status="skipped")
                        self._say(f"skipped: {spec.name}: {msg[1]}")
                        return [], False
                    elif kind == "load_error":
                        self._fail_all(list(remaining.values()), {}, f"load failed: {msg[1]}", bar)
                        self._say(f"error: {spec.name}: load failed: {msg[1]}")
                        return [], False
                    elif kind == "start":
                        current = msg[1]
                        if bar is not None:
                            t = by_index[current]
                            bar.set_description_str(f"{spec.name} | {t.suite.name} | {t.sample.id}", refresh=False)
                    elif kind == "result":
                        _, idx, m, status, error = msg
                        self.store.append([self._row(by_index[idx], load, m, status, error)])
                        remaining.pop(idx, None)
                        current = None
                        if bar is not None:
                            bar.update(1)
                    elif kind == "done":
                        return list(remaining.values()), False
                elif not proc.is_alive():
                    break
                elif time.monotonic() - last_msg > deadline_s:
                    proc.kill()
                    proc.join()
                    what = f"sample {by_index[current].sample.id}" if current is not None else "loading"
                    error = f"timed out after {deadline_s:.0f} s on {what}; raise --timeout if the model is just slow"
                    return self._after_crash(remaining, current, load, error, bar), True
            proc.join(timeout=5)
            what = f"sample {by_index[current].sample.id}" if current is not None else "loading or warm-up"
            error = (f"worker process died ({signal_name(proc.exitcode)}) during {what}; "
                     "SIGKILL usually means the machine ran out of memory")
            self._say(f"error: {spec.name}: {error}")
            return self._after_crash(remaining, current, load, error, bar), True
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
            parent.close()

    def _after_crash(self, remaining: dict[int, Task], current: int | None, load: dict[str, Any], error: str, bar: Any) -> list[Task]:
        if current is not None and current in remaining:
            self._fail_all([remaining.pop(current)], load, error, bar)
        elif not load and remaining:
            # Died before loading finished: retrying would only die again.
            self._fail_all(list(remaining.values()), {}, error, bar)
            return []
        return list(remaining.values())


def _load_columns(stats: LoadStats, env: dict[str, Any]) -> dict[str, Any]:
    d = asdict(stats)
    return {
        **env,
        "import_s": d["import_s"], "load_s": d["load_s"], "model_size_bytes": d["size_bytes"],
        "model_hash": d["content_hash"], "arch": d["arch"], "quantization": d["quantization"],
        "random_weights": d["random_weights"], "load_peak_mlx_bytes": d["peak_mlx_bytes"], "backend": d["backend"],
    }
