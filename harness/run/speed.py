"""Speed sweeps like llama-bench's pp/tg, apart from any suite's content.

- `pp<N>`: prefill of N random token ids (seeded, special tokens excluded), tokens/s.
- `tg<N>`: exactly N decoded tokens after a short random prompt, tokens/s. It calls mlx_vlm's
  `generate_step` directly, which has no stop check, so a real model's end-of-sequence token
  cannot cut a run short.
- `img<S>`: prefill of a chat prompt with one S×S image (seeded noise), prompt tokens/s from
  the call to the first token, vision encoder included, preprocessing not; its image tokens are
  counted from the prepared input ids.

Each model runs in its own worker process under harness.run.supervisor, like a suite run: cold
load, a warm-up per test shape, then every repetition becomes one results row (suites `speed-pp`, `speed-tg`, `speed-img`, sample ids
`pp256`, ...), written through the results store like any other run.

Rounds, as in `run`: the repetitions are dealt into `rounds` (repetition k to round k mod rounds),
and each round runs every model in a fresh worker, the models' order rotated each round. The
table's ± is the standard deviation of the round means — llama-bench's "± std" is over
repetitions of a whole test, and a round is the whole test again in a new process, so it also
carries the run-to-run variation that repetitions inside one process do not see.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.paths import cache_dir, reports_dir
from harness.core.stats import describe
from harness.core.workloads import IMAGE_QUESTION, TG_PROMPT_TOKENS, SpeedTest, SpeedWorkload
from harness.measure import bandwidth
from harness.models import checkpoint_path, resolve
from harness.results.rundir import RunDir, new_run_id, now
from harness.results.store import ResultsStore
from harness.run.protocol import Finished, Loaded
from harness.run.rows import load_columns
from harness.run.supervisor import Rules, Supervisor

SUITES = {"pp": "speed-pp", "tg": "speed-tg", "img": "speed-img"}
_SWEEP_VERSION = 1  # bump when a test's definition changes: it is part of suite_hash


@dataclass(frozen=True)
class SpeedConfig:
    prompt_lengths: tuple[int, ...] = (64, 256)
    gen_lengths: tuple[int, ...] = (32, 128)
    image_sizes: tuple[int, ...] = (224, 448)
    repeats: int = 5
    warmup: int = 1
    seed: int = 0
    rounds: int = 3

    def tests(self) -> list[tuple[str, int]]:
        return ([("pp", n) for n in self.prompt_lengths] + [("tg", n) for n in self.gen_lengths]
                + [("img", s) for s in self.image_sizes])


def test_hash(kind: str, value: int, seed: int) -> str:
    spec = json.dumps({"kind": kind, "value": value, "seed": seed, "tg_prompt": TG_PROMPT_TOKENS,
                       "question": IMAGE_QUESTION, "version": _SWEEP_VERSION}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def parse_lengths(text: str | None, what: str) -> tuple[int, ...]:
    """'64,256' -> (64, 256); '' -> (); a bad entry is a one-line error naming it."""
    if text is None or not text.strip():
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise ValueError(f"{what}: {part!r} is not a positive integer; give a comma-separated list such as 64,256")
        out.append(int(part))
    return tuple(out)


# -- measuring (inside the worker) --------------------------------------------------------------
# -- running (through the one supervisor) -----------------------------------------------------
def rounds_of(config: SpeedConfig) -> int:
    """Rounds that get at least one repetition."""
    return max(1, min(config.rounds, config.repeats))


def plan(config: SpeedConfig, round_: int | None = None) -> SpeedWorkload:
    """Every test × repetition, or only the repetitions dealt to one round."""
    rounds = rounds_of(config)
    tests = [SpeedTest(kind, value, rep) for kind, value in config.tests() for rep in range(config.repeats)
             if round_ is None or rep % rounds == round_]
    return SpeedWorkload(tuple(enumerate(tests)), warmup=config.warmup, seed=config.seed)


class _SweepRows:
    """Supervisor events -> results rows for one model's sweep."""

    def __init__(self, store: ResultsStore, base: dict[str, Any], workload: SpeedWorkload, config: SpeedConfig,
                 path: str, bw: Any, round_: int = 0, position: int = 0) -> None:
        self.store, self.base, self.config, self.path, self.bw = store, base, config, path, bw
        self.round, self.position = round_, position
        self.tests = dict(workload.tasks)
        self.load: dict[str, Any] = {}
        self.cost = None

    def _row(self, test: SpeedTest, m: dict[str, Any] | None, status: str, error: str, tb: str = "") -> dict[str, Any]:
        r = {**self.base, **self.load, "suite": SUITES[test.kind], "suite_kind": "speed",
             "suite_hash": test_hash(test.kind, test.value, self.config.seed), "sample_id": test.name,
             "category": {"pp": "prefill", "tg": "decode", "img": "image"}[test.kind], "repeat": test.repeat,
             "round": self.round, "round_position": self.position, "status": status, "error": error, "traceback": tb or None,
             "max_tokens": test.value + 1 if test.kind == "tg" else 1, "recorded_at": datetime.now(UTC)}
        if m:
            r.update(m)
            if test.kind == "tg":
                r.update(bandwidth.bound_columns(self.cost, self.bw, m["prompt_tokens"], m["generated_tokens"]))
        return r

    def loaded(self, msg: Loaded) -> None:
        self.load = load_columns(msg.stats, msg.env)
        self.cost = bandwidth.decode_cost_or_none(self.path)

    def started(self, task: int) -> None:
        pass

    def finished(self, msg: Finished) -> None:
        self.store.append([self._row(self.tests[msg.task], msg.result, msg.status, msg.error, msg.traceback)])

    def failed(self, tasks: list[int], status: str, error: str, traceback: str = "") -> None:
        self.store.append([self._row(self.tests[t], None, status, error, traceback) for t in tasks])


def run_speed(models: Sequence[str], config: SpeedConfig, out_dir: Path | None = None, *, run_id: str | None = None,
              fixtures_root: Path | None = None, timeout_s: float = 600.0, say: Any = None) -> tuple[Path, pd.DataFrame]:
    """Sweep every model; return the run directory and its rows (also on disk as parquet)."""
    say = say or (lambda msg: None)
    run = RunDir((Path(out_dir) if out_dir else reports_dir() / "runs") / (run_id or new_run_id()))
    with run.lock():
        run.write_plan({"run_id": run.run_id, "command": "speed", "models": list(models), **asdict(config),
                        "started_at": now()})
        store = ResultsStore(run.path)
        bw = bandwidth.machine_bandwidth()
        supervisor = Supervisor(Rules(task_timeout_s=timeout_s, load_timeout_s=2 * timeout_s), say=say)
        ready = []
        for name in models:
            base = {"run_id": run.run_id, "model": name}
            try:
                spec = resolve(name)
                path = checkpoint_path(spec, fixtures_root, say)
            except Exception as e:  # unknown model, unbuildable fixture: a row and a line, then the next
                store.append([{**base, "suite": "*", "suite_hash": "", "sample_id": "*", "repeat": 0,
                               "status": "error", "error": str(e), "recorded_at": datetime.now(UTC)}])
                say(f"error: {e}")
                continue
            ready.append((spec, path, {**base, "adapter": spec.adapter, "model_source": spec.source}))
        rounds = rounds_of(config)
        for r in range(rounds):
            workload = replace(plan(config, r), scratch=str(cache_dir() / "speed"))  # noise images, reused
            for position in range(len(ready)):
                spec, path, base = ready[(r + position) % len(ready)]  # rotated each round
                if rounds > 1:
                    say(f"{spec.name}: round {r + 1}/{rounds}")
                supervisor.run(spec, path, workload, _SweepRows(store, base, workload, config, path, bw, r, position))
        store.consolidate()
        run.update_plan(finished_at=now())
    return run.path, store.read()


# -- the table ------------------------------------------------------------------------------------
def _order(sample_id: str) -> tuple[int, int]:
    for i, kind in enumerate(("pp", "tg", "img")):
        if sample_id.startswith(kind) and sample_id[len(kind):].isdigit():
            return i, int(sample_id[len(kind):])
    return 9, 0


def speed_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per model × test: t/s mean ± std, n, the bound and flags.

    With several rounds, mean and std are over the round means (each round a fresh process);
    with one, over the repetitions, as llama-bench's."""
    ok = df[(df["status"] == "ok") & df["suite"].isin(SUITES.values())]
    lines = []
    for (model, test), g in ok.groupby(["model", "sample_id"], sort=False):
        rate = (g["decode_tps"] if test.startswith("tg") else g["prefill_tps"]).astype(float)
        rounds = rate.groupby(g["round"].fillna(0).astype(int)).mean() if "round" in g else rate.iloc[:0]
        s = describe(rounds.to_numpy() if len(rounds) > 1 else rate.to_numpy())
        bound = float(g["decode_bound_tps"].mean()) if test.startswith("tg") else math.nan
        flags = []
        if s.noisy:
            flags.append(f"noisy (cv {s.cv:.0%})")
        figures = {c: float(g[c].mean()) for c in ("bandwidth_gbps", "bandwidth_measured_gbps",
                                                  "bandwidth_datasheet_gbps") if c in g and g[c].notna().any()}
        if bound > 0 and bandwidth.is_impossible({"decode_tps": s.mean, "decode_bound_tps": bound, **figures}):
            flags.append("IMPOSSIBLE: above the bandwidth bound")
        lines.append({
            "model": model, "test": test, "mean": s.mean, "std": s.std, "n": len(g), "rounds": max(1, len(rounds)),
            "cv": s.cv,
            "image_tokens": float(g["image_tokens"].mean()) if test.startswith("img") else math.nan,
            "prefill_ms": float(g["ttft_s"].mean() * 1e3) if test.startswith("img") else math.nan,
            "bound": bound, "pct_bound": s.mean / bound if bound > 0 else math.nan, "flags": ", ".join(flags),
        })
    table = pd.DataFrame(lines)
    if not table.empty:
        table = table.sort_values(["model", "test"], key=lambda c: c.map(_order) if c.name == "test" else c,
                                  kind="stable").reset_index(drop=True)
    return table


def _fmt(x: float, std: float) -> str:
    if math.isnan(std):  # one repetition: no spread to show
        return f"{x:.2f} ± n/a"
    return f"{x:.2f} ± {std:.2f}"


def format_table(table: pd.DataFrame) -> str:
    """llama-bench's markdown layout, plus rounds, the bandwidth bound and the flags. The ± is the
    std over round means when there are several rounds (see the module docstring)."""
    head = ["model", "test", "t/s", "n", "rounds", "% of bound", "notes"]
    rows = []
    for r in table.itertuples(index=False):
        notes = r.flags
        if r.test.startswith("img") and not math.isnan(r.image_tokens):
            extra = f"{r.image_tokens:.0f} image tokens, prefill {r.prefill_ms:.1f} ms"
            notes = f"{extra}; {notes}" if notes else extra
        pct = f"{r.pct_bound:.1%} of {r.bound:,.0f}" if not math.isnan(r.pct_bound) else ""
        rows.append([r.model, r.test, _fmt(r.mean, r.std), str(r.n), str(getattr(r, "rounds", 1)), pct, notes])
    widths = [max(3, len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    right = {2, 3, 4, 5}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


# -- prefix reuse (vlm-harness run --reuse-prefix) ------------------------------------------------
def reuse_summary(df: pd.DataFrame) -> str:
    """Per model: time to first token with a reused prefix against without (one line each)."""
    if df.empty:
        return "prefix reuse: no measured rows"
    return "\n".join(f"{model}: {_reuse_line(g)}" for model, g in df.groupby("model", sort=False) if model != "*")


def _reuse_line(df: pd.DataFrame) -> str:
    ok = df[(df["status"] == "ok") & df["ttft_s"].notna()]
    if ok.empty or "cached_tokens" not in ok:
        return "prefix reuse: no measured rows"
    warm = ok[ok["cached_tokens"].fillna(0) > 0]
    cold = ok[ok["cached_tokens"].fillna(0) == 0]
    if warm.empty:
        return f"prefix reuse: no sample reused a prefix ({len(ok)} rows; consecutive questions on one image reuse it)"
    w, c = describe(warm["ttft_s"].to_numpy(float)), describe(cold["ttft_s"].to_numpy(float))
    speedup = c.mean / w.mean if w.mean > 0 else math.nan
    return (f"prefix reuse: {len(warm)} of {len(ok)} rows reused {warm['cached_tokens'].mean():.0f} prompt tokens "
            f"on average; time to first token {w.mean * 1e3:.1f} ± {w.std * 1e3:.1f} ms against "
            f"{c.mean * 1e3:.1f} ± {c.std * 1e3:.1f} ms without (×{speedup:.2f})")
