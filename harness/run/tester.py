"""VLMTester, the public face of a suite run: plan (harness/run/planning.py) → one worker per model
under the supervisor (harness/run/supervisor.py) → a row per sample, scored (harness/judge/scoring.py)
and stored the moment it arrives (harness/results/store.py) → accuracy (harness/judge/accuracy.py).

Each stage is its own module; this one wires them together for one run directory.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.schema import KEY
from harness.core.workloads import SuiteWorkload
from harness.judge import scoring
from harness.judge.accuracy import write_accuracy
from harness.measure import bandwidth
from harness.measure.environment import machine_id
from harness.models import ModelSpec, checkpoint_path
from harness.results.rundir import RunDir, latest_unfinished, new_run_id, now
from harness.results.store import ResultsStore
from harness.run import data_parallel, response_cache
from harness.run.batched import BatchedWorkload
from harness.run.planning import ROUND_SAMPLES, Plan, Settings, Step, Task, make_plan, turns
from harness.run.progress import Progress, say
from harness.run.protocol import Finished, Loaded
from harness.run.rows import load_columns, measurement_columns
from harness.run.shards import Shard
from harness.run.supervisor import GaveUp, Job, Rules, Supervisor
from harness.suites import default_suites, load_suite


class _SuiteRows:
    """Supervisor events for one model -> scored results rows, stored as they arrive."""

    def __init__(self, tester: VLMTester, spec: ModelSpec, tasks: tuple[Task, ...], path: str,
                 progress: Progress, position: int | None = None) -> None:
        self.tester, self.spec, self.path, self.progress = tester, spec, path, progress
        self.position = position
        self.positions: dict[int, int] = {}  # lockstep: each task's place in its turn
        self.lockstep = False
        self.tasks = {t.index: t for t in tasks}
        self.load: dict[str, Any] = {}
        self.cost = None
        self.model_id: dict[str, Any] | None = None  # the response cache's view of this model
        self.fallbacks: dict[str, int] = {}  # accuracy mode: why samples went alone, how many

    def cache_identity(self) -> dict[str, Any] | None:
        if self.model_id is None and self.tester.cache is not None:
            try:
                self.model_id = response_cache.identity(self.tester.cache, self.spec, self.path)
            except Exception as e:  # the cache is an aid: the run goes on without it
                say(f"warning: {self.spec.name}: response cache not used ({type(e).__name__}: {e})")
                self.tester.cache = None
        return self.model_id

    def cache_key(self, task: Task) -> str | None:
        model = self.cache_identity()
        return response_cache.request_key(model, self.spec, task.sample) if model is not None else None

    def loaded(self, msg: Loaded) -> None:
        self.load = load_columns(msg.stats, msg.env)
        self.cost = bandwidth.decode_cost_or_none(self.path)  # on disk now, even a fresh download

    def started(self, task: int) -> None:
        t = self.tasks[task]
        where = f" | round {t.round + 1}" if self.position is not None else ""
        self.progress.doing(f"{self.spec.name}{where} | {t.suite.name} | {t.sample.id}")

    def finished(self, msg: Finished) -> None:
        cpu0 = time.process_time()
        row = self.row(self.tasks[msg.task], msg.status, msg.error, msg.traceback)
        if msg.result is not None:
            row.update(measurement_columns(msg.result))
            row.update(bandwidth.bound_columns(self.cost, self.tester.bandwidth(), msg.result.prompt_tokens,
                                               msg.result.generated_tokens))
            row.update(scoring.score_row(row))
            row.update(self.checked(self.tasks[msg.task], row, msg.result))
        row["harness_s"] = msg.harness_s
        row["parent_cpu_s"] = time.process_time() - cpu0  # building and scoring; the write follows
        self.tester.store.append([row])
        self.progress.advance()

    def checked(self, task: Task, row: dict[str, Any], result: Any) -> dict[str, Any]:
        """The answer against the one-at-a-time path's (a checked batch) or the cache's (a latency
        run); a new answer goes into the cache."""
        why = row.get("batch_fallback")
        if why:
            self.fallbacks[why] = self.fallbacks.get(why, 0) + 1
        out = response_cache.compare(row["output"], getattr(result, "solo_text", None))
        key = self.cache_key(task) if self.tester.cache is not None else None
        if key is None:
            return out
        found = self.tester.cache.get(key)
        if found is None:
            self.tester.cache.put(key, response_cache.entry(row))
        elif not out:
            out = response_cache.compare(row["output"], found["output"])
        return out

    def cached(self, hits: dict[int, dict[str, Any]]) -> None:
        """Rows for answers the cache already holds: nothing generated, nothing timed."""
        from harness.core import checkpoint

        facts = checkpoint.inspect(self.path)
        model = {} if facts is None else {
            "model_hash": (self.model_id or {}).get("model_hash") or None, "arch": facts.arch,
            "quantization": facts.quantization, "random_weights": facts.random_weights, "model_role": facts.role,
        }
        rows = []
        for index, found in hits.items():
            row = {**self.row(self.tasks[index], "ok", ""), **model, **response_cache.hit_columns(found)}
            row.update(scoring.score_row(row))
            rows.append(row)
        self.tester.store.append(rows)
        self.progress.advance(len(rows))

    def summary(self, generated: int, hits: int) -> str:
        """One line per model in accuracy mode: what came from the cache, what went alone and why."""
        parts = [f"{generated} generated"] + ([f"{hits} from the response cache"] if hits else [])
        parts += [f"{n} one at a time ({why})" for why, n in sorted(self.fallbacks.items())]
        return f"{self.spec.name}: " + ", ".join(parts)

    def failed(self, tasks: list[int], status: str, error: str, traceback: str = "") -> None:
        load = self.load if status == "error" else {}
        self.tester.store.append([{**self.row(self.tasks[t], status, error, traceback), **load} for t in tasks])
        self.progress.advance(len(tasks))

    def row(self, task: Task, status: str, error: str, traceback: str = "") -> dict[str, Any]:
        s = task.sample
        return {
            # The worker's environment (self.load) names the machine too; rows failed before any
            # load still say where they ran.
            "machine_id": machine_id(), **self.load,
            "run_id": self.tester.run_id, "model": self.spec.name, "adapter": self.spec.adapter,
            "model_source": self.spec.source, "suite": task.suite.name, "suite_kind": task.suite.kind,
            "suite_hash": task.suite.hash, "benchmark": ",".join(task.suite.definition.benchmark) or None,
            "sample_id": s.id, "category": s.category, "repeat": task.repeat,
            "round": task.round, "round_position": self.positions.get(task.index, self.position),
            "lockstep": self.lockstep if self.tester.settings.mode == "latency" else None,
            "prompt": s.prompt, "images": list(s.images), "answers": list(s.answers), "metric": s.metric,
            # Empty lists, not null: null marks a row from before these were stored (scoring.py).
            "keywords": list(s.keywords), "choices": list(s.choices), "turns": list(s.turns) or None,
            "max_tokens": s.max_tokens, "status": status, "error": error, "traceback": traceback or None,
            "recorded_at": datetime.now(UTC), "mode": self.tester.settings.mode, "cache_hit": False,
            "shard": self.tester.shard_label, "node": self.tester.node,
        }


class _Tee:
    """A results store that also hands each batch of rows on, once it is durable here."""

    def __init__(self, store: ResultsStore, forward: Callable[[list[dict[str, Any]]], None]) -> None:
        self.store, self.forward = store, forward

    def append(self, rows: list[dict[str, Any]]) -> None:
        self.store.append(rows)
        self.forward(rows)


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
        rounds: int | None = None,
        round_samples: int = ROUND_SAMPLES,
        lockstep: bool = True,
        mode: str = "latency",
        batch_size: int | None = None,
        concurrency: int = 4,
        verify: int = 0,
        workers: int | None = None,
        cache: bool = True,
        cache_path: Path | None = None,
        shard: Shard | str | None = None,
        node: str | None = None,
        ray: str | None = None,
        skip: frozenset[tuple] = frozenset(),
        forward: Callable[[list[dict[str, Any]]], None] | None = None,
        report: Path | None = None,
    ) -> None:
        """`mode` "accuracy": answers at the machine's throughput (harness/run/batched.py), in
        batches of `batch_size` (default: what the free memory holds) or `concurrency` requests in
        flight, `verify` answers per model checked against the one-at-a-time path, by
        `workers` processes at once (default: one per core on MLX's CPU backend;
        harness/run/data_parallel.py). `cache`: reuse
        and keep temperature-0 answers (harness/run/response_cache.py; `cache_path` its file)."""
        from harness.core.paths import reports_dir

        if mode not in ("latency", "accuracy"):
            raise ValueError(f"mode {mode!r} is not one of latency, accuracy")
        self.out_dir = Path(out_dir) if out_dir else reports_dir() / "runs"
        self.resume = resume
        self._explicit_id = run_id
        self.run_id = run_id or new_run_id()
        if isinstance(shard, str):
            shard = Shard.parse(shard)
        if isinstance(shard, str):
            shard = Shard.parse(shard)
        self.settings = Settings(repeats=repeats, warmup=warmup, limit=limit, max_tokens=max_tokens,
                                 reuse_prefix=reuse_prefix, adapter=adapter, base_url=base_url, rounds=rounds,
                                 round_samples=round_samples,
                                 lockstep=lockstep, mode=mode, batch_size=batch_size, concurrency=concurrency, verify=verify,
                                 workers=workers, cache=cache, shard=shard)
        self.cache_path = cache_path
        self.cache: response_cache.ResponseCache | None = None
        # The fleet node that measures (harness/run/fleet.py); rows of a local run leave it null.
        self.node = node
        self.ray = ray  # a Ray cluster's address: the run's tasks go to its nodes (harness/run/fleet.py)
        self.skip = frozenset(skip)  # keys finished elsewhere (a fleet's head run): not measured again
        self.forward = forward  # also hand every stored row to this (a fleet task streams rows to the head)
        self.incomplete: list[str] = []  # why a fleet run left samples unmeasured; --resume measures them
        self.rules = Rules(task_timeout_s=timeout_s, load_timeout_s=2 * timeout_s, max_restarts=max_restarts)
        self.progress = progress
        self.fixtures_root = fixtures_root
        self.report = report  # the report the caller renders once the run is finished, if any

    # -- public API -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.run_id

    @property
    def shard_label(self) -> str | None:
        return str(self.settings.shard) if self.settings.shard else None

    def test_model(self, name: str, suites: Sequence[str] | None = None) -> pd.DataFrame:
        df = self.run([name], suites)
        return df[df["model"] == name].reset_index(drop=True)

    def select_run(self, models: Sequence[str], suites: Sequence[str]) -> Path:
        """The run directory this run writes: with resume and no run id, the newest unfinished
        run of the same models and suites (never a finished or foreign one)."""
        if self.resume and self._explicit_id is None:
            prev = latest_unfinished(self.out_dir, models=list(models), suites=list(suites), shard=self.shard_label)
            if prev is None:
                raise FileNotFoundError(f"--resume: no unfinished run of these models and suites in {self.out_dir}; "
                                        "give --run-id to name one, or run without --resume")
            self.run_id = prev.run_id
        return self.run_dir

    def run(self, models: Iterable[str], suites: Sequence[str] | None = None) -> pd.DataFrame:
        models, suites = list(models), list(suites) if suites is not None else default_suites()
        self.select_run(models, suites)
        run = RunDir(self.run_dir)
        with run.lock():
            return self._run_locked(run, models, suites)

    # -- internals --------------------------------------------------------------------------
    def _run_locked(self, run: RunDir, models: list[str], suites: list[str]) -> pd.DataFrame:
        self.store = ResultsStore(run.path)
        plan_record = {"run_id": self.run_id, "command": "run", "models": models, "suites": suites,
                       "repeats": self.settings.repeats, "warmup": self.settings.warmup,
                       "limit": self.settings.limit, "max_tokens": self.settings.max_tokens,
                       "reuse_prefix": self.settings.reuse_prefix, "adapter": self.settings.adapter,
                       "timeout_s": self.rules.task_timeout_s, "rounds": self.settings.rounds,
                       "round_samples": self.settings.round_samples,
                       "lockstep": self.settings.lockstep, "mode": self.settings.mode,
                       "batch_size": self.settings.batch_size, "concurrency": self.settings.concurrency,
                       "verify": self.settings.verify, "workers": self.settings.workers, "cache": self.settings.cache,
                       "shard": self.shard_label, "ray": self.ray,
                       # The report the command renders after the rows: a run killed before it is
                       # written is continued by --resume (harness/results/rundir.py, latest_unfinished).
                       **({"report": str(self.report)} if self.report else {})}
        previous = run.plan() if self.resume else {}
        run.write_plan({**plan_record, "started_at": previous.get("started_at") or now(),
                        **({"resumed_at": now()} if self.resume else {})})
        done = (self._done_keys(bool(previous.get("finished_at"))) if self.resume else set()) | self.skip
        if self.ray:
            from harness.run.fleet import measure_on_ray

            self.incomplete = measure_on_ray(self, models, suites, done)
        else:
            self._measure_here(run, models, suites, done)
        self.store.consolidate()
        df = self.store.read()
        try:
            write_accuracy(run.path, df)
        except Exception as e:  # the measurements are safe on disk; the summary can be redone
            say(f"warning: accuracy.parquet not written ({type(e).__name__}: {e}); "
                "`vlm-harness rescore` or harness.judge.accuracy.accuracy_table(results) recomputes it")
        if not self.incomplete:  # an unfinished run is what --resume continues
            run.update_plan(finished_at=now())
        return df

    def _measure_here(self, run: RunDir, models: list[str], suites: list[str], done: set[tuple]) -> None:
        if self.forward is not None:
            self.store = _Tee(self.store, self.forward)
        plan = make_plan(models, suites, self.settings, load_suite=load_suite, done=done)
        self._record_problems(plan)
        progress = Progress(plan.total, enabled=self.progress)
        supervisor = Supervisor(self.rules, say=say)
        run.update_plan(rounds=plan.rounds, rounds_per_sample=plan.rounds_per_sample)
        if plan.rounds_per_sample > 1:
            say(f"each sample is measured in {plan.rounds_per_sample} of the {plan.rounds} rounds: split, a round would "
                f"hold fewer than {self.settings.round_samples} samples a model for its paired figure "
                "(--round-samples 0 splits them)")
        # Every round of a model warms up on the same sample, the first of all its tasks.
        # (A sample refused when its suite was built cannot warm anything up.)
        warmup_of = {spec.name: next((t.sample for t in tasks if not t.sample.problem), None)
                     for spec, tasks in plan.models if tasks}
        gave_up: dict[str, GaveUp] = {}
        self.cache = response_cache.ResponseCache(self.cache_path) if self.settings.cache else None
        try:
            for _, group in itertools.groupby(plan.schedule(), key=lambda step: step.round):
                steps = list(group)
                if self._round_together(supervisor, steps, progress, warmup_of, gave_up):
                    continue
                for step in steps:
                    name = step.model.name
                    if name in gave_up:  # it could not load or warm up: every start ends the same way
                        self._gave_up_rows(step, gave_up[name], progress)
                        continue
                    ended = self._run_model(supervisor, step.model, step.tasks, progress, step.position,
                                            warmup_of.get(name))
                    if ended is not None:
                        gave_up[name] = ended
        finally:
            progress.close()
            if self.cache is not None:
                self.cache.close()
            if isinstance(self.store, _Tee):
                self.store = self.store.store

    def _gave_up_rows(self, step: Step, why: GaveUp, progress: Progress) -> None:
        _SuiteRows(self, step.model, step.tasks, step.model.source, progress, step.position).failed(
            [t.index for t in step.tasks], why.status, why.error, why.traceback)

    def _round_together(self, supervisor: Supervisor, steps: list[Step], progress: Progress,
                        warmup_of: dict[str, Any], gave_up: dict[str, GaveUp]) -> bool:
        """One round's models in lockstep (harness/run/planning.py `turns`); False, with nothing
        run, where the round is measured one model after another instead: lockstep off, the
        accuracy mode, one model, or models that do not fit in memory together."""
        s = self.settings
        live = [step for step in steps if step.model.name not in gave_up]
        if not s.lockstep or s.mode != "latency" or len(live) < 2:
            return False
        paths = {}
        for step in live:
            try:
                paths[step.model.name] = checkpoint_path(step.model, self.fixtures_root, say)
            except Exception:  # the one-at-a-time path records why
                return False
        if not _fit_together(list(paths.values())):
            say("lockstep off: the models do not fit in memory together; each round measures one model after "
                "another")
            self.settings = replace(s, lockstep=False)  # said once: later rounds hold the same models
            return False
        for step in steps:
            if step.model.name in gave_up:
                self._gave_up_rows(step, gave_up[step.model.name], progress)
        jobs, rows = [], []
        for step in live:
            events = _SuiteRows(self, step.model, step.tasks, paths[step.model.name], progress, step.position)
            events.lockstep = True
            workload = SuiteWorkload(tuple((t.index, t.sample) for t in step.tasks), warmup=s.warmup,
                                     reuse_prefix=s.reuse_prefix, warmup_sample=warmup_of.get(step.model.name))
            jobs.append(Job(step.model, paths[step.model.name], workload, events,
                            alone=lambda events=events: setattr(events, "lockstep", False)))
            rows.append(events)
        order = turns([len(step.tasks) for step in live])
        taken = [0] * len(live)
        for i, place in order:
            rows[i].positions[live[i].tasks[taken[i]].index] = place
            taken[i] += 1
        progress.model(" + ".join(step.model.name for step in live))
        ended = supervisor.run_together(jobs, [i for i, _ in order])
        if ended is None:
            say("lockstep off: a model was refused memory while the others were loaded; each round measures "
                "one model after another")
            self.settings = replace(s, lockstep=False)
            return False
        for step, why in zip(live, ended, strict=True):
            if why is not None:
                gave_up[step.model.name] = why
        progress.model_done(f"round {live[0].round + 1}, {len(live)} models in lockstep")
        return True

    def _record_problems(self, plan: Plan) -> None:
        for p in plan.problems:
            self.store.append([{
                "run_id": self.run_id, "model": p.model, "suite": p.suite, "suite_hash": "", "sample_id": "*",
                "repeat": 0, "status": "error", "error": p.error, "recorded_at": datetime.now(UTC),
                "shard": self.shard_label, "node": self.node, "machine_id": machine_id(),
            }])
            say(f"error: {p.error}")

    def bandwidth(self) -> Any:
        if not hasattr(self, "_bw"):
            try:
                self._bw = bandwidth.machine_bandwidth()
            except Exception:  # a failed measurement leaves the bound columns empty
                self._bw = None
        return self._bw

    def _done_keys(self, finished_before: bool) -> set[tuple]:
        run = RunDir(self.run_dir)
        moved = self.store.quarantine_damaged(warn=say)  # measured again below
        if moved:
            say(f"{len(moved)} damaged file(s) quarantined in {run.quarantine}")
        lost_whole = not run.results.exists() and (finished_before or any(p.name.endswith(run.results.name) for p in moved))
        df = self.store.read(damaged="skip")
        if lost_whole:
            # A finished run's results.parquet damaged or gone: what the intact parts hold is
            # kept and written back into it; only the rest is measured again.
            how = "damaged" if moved else "missing"
            say(f"{run.results} is {how}: {len(df)} row(s) rebuilt from its intact parts; the samples missing from "
                "them are measured again" if len(df) else
                f"{run.results} is {how} and no parts remain: its samples are measured again")
        if df.empty:
            return set()
        # Errors are retried on resume: the cause may have been fixed. The newer row wins.
        ok = df[df["status"].isin(["ok", "unsupported"])]
        return set(ok[list(KEY)].itertuples(index=False, name=None))

    def _run_model(self, supervisor: Supervisor, spec: ModelSpec, tasks: tuple[Task, ...], progress: Progress,
                   position: int | None = None, warmup_sample: Any = None) -> GaveUp | None:
        progress.model(spec.name)
        try:
            path = checkpoint_path(spec, self.fixtures_root, say)
        except Exception as e:
            events = _SuiteRows(self, spec, tasks, spec.source, progress, position)
            error = f"cannot build fixture: {type(e).__name__}: {e}"
            events.failed([t.index for t in tasks], "error", error)
            return GaveUp("error", error)
        self.bandwidth()  # measured before any worker starts: a busy machine copies slower
        events = _SuiteRows(self, spec, tasks, path, progress, position)
        s = self.settings
        ended = None
        if s.mode == "accuracy":
            hits = self._cache_hits(events, tasks)
            events.cached(hits)
            tasks = tuple(t for t in tasks if t.index not in hits)
            if tasks:  # a model whose every answer was cached is not loaded at all
                ended = self._answer(supervisor, spec, path, tasks, events)
        elif tasks:
            workload = SuiteWorkload(tuple((t.index, t.sample) for t in tasks), warmup=s.warmup,
                                     reuse_prefix=s.reuse_prefix, warmup_sample=warmup_sample)
            ended = supervisor.run(spec, path, workload, events)
        if s.mode == "accuracy":
            say(events.summary(len(tasks), len(hits)))
        progress.model_done(spec.name)
        return ended

    def _answer(self, supervisor: Supervisor, spec: ModelSpec, path: str, tasks: tuple[Task, ...],
                events: _SuiteRows) -> GaveUp | None:
        """Accuracy mode: the model's tasks batched, by one worker or several at once."""
        from harness.adapters import ADAPTERS
        from harness.measure.environment import device

        s = self.settings
        n, why = data_parallel.worker_count(
            s.workers, one_thread=getattr(ADAPTERS.get(spec.adapter), "ONE_THREAD_ON_CPU", False),
            backend=device().backend, samples=len(tasks), fits=lambda n: _fit_together([path] * n))
        parts = data_parallel.deal(tasks, n)
        workloads = [BatchedWorkload(tuple((t.index, t.sample) for t in part), warmup=s.warmup,
                                     batch_size=s.batch_size, in_flight=s.concurrency, verify=s.verify,
                                     worker=k + 1 if len(parts) > 1 else None, memory_share=1 / len(parts))
                     for k, part in enumerate(parts)]
        if len(workloads) == 1:
            return supervisor.run(spec, path, workloads[0], events)
        say(f"{spec.name}: {len(workloads)} workers at once ({why})")
        ended = data_parallel.run_parallel(
            lambda w, relay, stopped: Supervisor(self.rules, say=say, cancelled=stopped).run(spec, path, w, relay),
            workloads, events)
        return next((e for e in ended if e is not None), None)

    def _cache_hits(self, events: _SuiteRows, tasks: tuple[Task, ...]) -> dict[int, dict[str, Any]]:
        """Accuracy mode: the tasks whose answers the response cache holds, by task index."""
        if self.cache is None:
            return {}
        hits = {}
        for t in tasks:
            key = events.cache_key(t)
            found = self.cache.get(key) if key is not None and self.cache is not None else None
            if found is not None:
                hits[t.index] = found
        return hits


# What one worker process holds beyond its model, with a margin: Python, MLX, mlx-vlm and their
# imports (about 0.11 GB resident at peak with the fixtures here; processors that pull in torch
# take more).
WORKER_BYTES = 768 * 1024**2


def _fit_together(paths: list[str]) -> bool:
    """Whether the models, held at once, leave room: each checkpoint's size on disk with a
    quarter more for activations and caches, plus a worker process each, under 80 % of what
    the machine has free now (the worker's own memory check still guards each load)."""
    import psutil

    from harness.core.checkpoint import dir_size

    try:
        need = sum(dir_size(Path(p)) * 1.25 + WORKER_BYTES for p in paths)
    except OSError:
        return False
    return need < psutil.virtual_memory().available * 0.8
