"""Speed sweeps like llama-bench's pp/tg, apart from any suite's content.

- `pp<N>`: prefill of N random token ids (seeded, special tokens excluded), tokens/s.
- `tg<N>`: exactly N decoded tokens after a short random prompt, tokens/s. It calls mlx_vlm's
  `generate_step` directly, which has no stop check, so a real model's end-of-sequence token
  cannot cut a run short.
- `img<S>`: prefill of a chat prompt with one S×S image (seeded noise), prompt tokens/s from
  the call to the first token, vision encoder included, preprocessing not; its image tokens are
  counted from the prepared input ids.

Each model runs in its own worker process (as in VLMTester): cold load, warm-up, then every
repetition becomes one results row (suites `speed-pp`, `speed-tg`, `speed-img`, sample ids
`pp256`, ...), written through the results store like any other run.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pandas as pd

from harness import bandwidth
from harness.stats import describe

SUITES = {"pp": "speed-pp", "tg": "speed-tg", "img": "speed-img"}
TG_PROMPT_TOKENS = 16  # the short context decode starts from
IMAGE_QUESTION = "Describe this image."
_SWEEP_VERSION = 1  # bump when a test's definition changes: it is part of suite_hash


@dataclass(frozen=True)
class SpeedConfig:
    prompt_lengths: tuple[int, ...] = (64, 256)
    gen_lengths: tuple[int, ...] = (32, 128)
    image_sizes: tuple[int, ...] = (224, 448)
    repeats: int = 5
    warmup: int = 1
    seed: int = 0

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
def _excluded_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for key, value in vars(model.config).items():
        if isinstance(value, int) and ("token_id" in key or "token_index" in key):
            ids.add(value)
    return ids


def random_prompt(model: Any, processor: Any, length: int, seed: int) -> Any:
    """`length` random token ids, seeded, never a special, image or end-of-sequence token."""
    import mlx.core as mx
    import numpy as np

    tokenizer = getattr(processor, "tokenizer", processor)
    vocab = min(len(tokenizer), int(getattr(model.config, "vocab_size", None) or len(tokenizer)))
    candidates = np.setdiff1d(np.arange(vocab), np.fromiter(_excluded_ids(model, tokenizer), dtype=np.int64))
    rng = np.random.default_rng(seed)
    return mx.array(rng.choice(candidates, size=(1, length)).astype(np.int32))


def _timed_tokens(model: Any, input_ids: Any, n_tokens: int) -> list[float]:
    """Seconds from the call to each token (each `.item()` inside generate_step waits for it)."""
    import mlx.core as mx
    from mlx_vlm.generate import generate_step

    mx.synchronize()
    times: list[float] = []
    t0 = time.perf_counter()
    gen = generate_step(input_ids, model, None, None, max_tokens=n_tokens, temperature=0.0)
    for _token, _logprobs in gen:
        times.append(time.perf_counter() - t0)
    mx.synchronize()
    return times


def measure_pp(model: Any, processor: Any, length: int, seed: int) -> dict[str, Any]:
    import mlx.core as mx

    ids = random_prompt(model, processor, length, seed)
    mx.reset_peak_memory()
    times = _timed_tokens(model, ids, 1)
    return {"prompt_tokens": length, "generated_tokens": 1, "ttft_s": times[0], "prefill_tps": length / times[0],
            "wall_s": times[-1], "peak_mlx_bytes": int(mx.get_peak_memory())}


def measure_tg(model: Any, processor: Any, n: int, seed: int) -> dict[str, Any]:
    import mlx.core as mx

    ids = random_prompt(model, processor, TG_PROMPT_TOKENS, seed)
    mx.reset_peak_memory()
    times = _timed_tokens(model, ids, n + 1)  # the first token ends prefill; n are decoded
    if len(times) != n + 1:
        raise RuntimeError(f"tg{n}: generated {len(times) - 1} tokens, expected exactly {n}")
    return {"prompt_tokens": TG_PROMPT_TOKENS, "generated_tokens": n, "ttft_s": times[0],
            "decode_tps": n / (times[-1] - times[0]), "wall_s": times[-1], "peak_mlx_bytes": int(mx.get_peak_memory())}


def noise_image(size: int, seed: int, directory: Path) -> Path:
    import numpy as np
    from PIL import Image

    path = directory / f"speed-noise-{size}-{seed}.png"
    if not path.exists():
        rng = np.random.default_rng(seed)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def measure_img(model: Any, processor: Any, size: int, seed: int, directory: Path) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np
    from mlx_vlm import apply_chat_template, stream_generate

    # The same preparation stream_generate does, done here (untimed) to count image tokens.
    from mlx_vlm.generate.dispatch import _prepare_generation_inputs

    image = str(noise_image(size, seed, directory))
    prompt = apply_chat_template(processor, model.config, IMAGE_QUESTION, num_images=1)
    ids, pixels, mask, extra = _prepare_generation_inputs(model, processor, prompt, [image], None, None, {})
    marker = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
    arr = np.array(ids)
    image_tokens = int(((arr == marker) | (arr < 0)).sum())  # phi3_v marks image slots with negative ids
    mx.synchronize()
    mx.reset_peak_memory()
    last = None
    t0 = time.perf_counter()
    for r in stream_generate(model, processor, prompt, input_ids=ids, pixel_values=pixels, mask=mask,
                             max_tokens=1, temperature=0.0, **extra):
        last = r
    mx.synchronize()
    wall = time.perf_counter() - t0
    prefill_s = last.prompt_tokens / last.prompt_tps
    return {"prompt_tokens": int(ids.shape[1]), "image_tokens": image_tokens, "generated_tokens": 1,
            "ttft_s": prefill_s, "prefill_tps": ids.shape[1] / prefill_s, "wall_s": wall,
            "peak_mlx_bytes": int(mx.get_peak_memory())}


def speed_worker(conn: Connection, spec: Any, path: str, config: SpeedConfig, scratch: str) -> None:
    from harness import environment
    from harness.adapters import ADAPTERS

    try:
        adapter = ADAPTERS.get(spec.adapter)(spec, path)
        stats = adapter.load()
        env = environment.collect()
        model, processor = getattr(adapter, "model", None), getattr(adapter, "processor", None)
        if model is None:
            raise RuntimeError(f"speed sweeps need an in-process mlx_vlm model; adapter {spec.adapter!r} has none")
    except Exception as e:
        conn.send(("load_error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                   traceback.format_exc()))
        conn.close()
        return
    conn.send(("loaded", stats, env))
    measure = {"pp": lambda n: measure_pp(model, processor, n, config.seed),
               "tg": lambda n: measure_tg(model, processor, n, config.seed),
               "img": lambda n: measure_img(model, processor, n, config.seed, Path(scratch))}
    for kind, value in config.tests():
        conn.send(("start", kind, value))
        try:
            for _ in range(config.warmup):  # per test: each shape compiles its own kernels
                measure[kind](value)
            for rep in range(config.repeats):
                conn.send(("result", kind, value, rep, measure[kind](value), "ok", ""))
        except Exception as e:
            msg = str(e).strip().splitlines()
            conn.send(("result", kind, value, 0, None, "error", f"{type(e).__name__}: {msg[0] if msg else ''}"))
    conn.send(("done",))
    conn.close()


# -- running (in the parent) ----------------------------------------------------------------------
def _load_columns(stats: Any, env: dict[str, Any]) -> dict[str, Any]:
    d = asdict(stats)
    return {**env, "import_s": d["import_s"], "load_s": d["load_s"], "model_size_bytes": d["size_bytes"],
            "model_hash": d["content_hash"], "arch": d["arch"], "quantization": d["quantization"],
            "random_weights": d["random_weights"], "load_peak_mlx_bytes": d["peak_mlx_bytes"], "backend": d["backend"]}


def run_speed(models: Sequence[str], config: SpeedConfig, out_dir: Path | None = None, *, run_id: str | None = None,
              fixtures_root: Path | None = None, timeout_s: float = 600.0, say: Any = None) -> tuple[Path, pd.DataFrame]:
    """Sweep every model; return the run directory and its rows (also on disk as parquet)."""
    from harness.models import resolve
    from harness.store import ResultsStore
    from harness.tester import VLMTester

    tester = VLMTester(out_dir, run_id=run_id, fixtures_root=fixtures_root, progress=False)
    store = ResultsStore(tester.run_dir)
    tester.run_dir.mkdir(parents=True, exist_ok=True)
    (tester.run_dir / "run.json").write_text(json.dumps({"run_id": tester.run_id, "command": "speed",
                                                         "models": list(models), **asdict(config)}, indent=2) + "\n")
    bw = bandwidth.machine_bandwidth()
    say = say or (lambda msg: None)
    for name in models:
        base = {"run_id": tester.run_id, "model": name}
        try:
            spec = resolve(name)
            path = tester._checkpoint_path(spec)
        except Exception as e:  # unknown model, unbuildable fixture: a row and a line, then the next
            store.append([{**base, "suite": "*", "suite_hash": "", "sample_id": "*", "repeat": 0, "status": "error",
                           "error": str(e), "recorded_at": datetime.now(UTC)}])
            say(f"error: {e}")
            continue
        base.update(adapter=spec.adapter, model_source=spec.source)
        _sweep_one(spec, path, config, store, base, bw, timeout_s, tester.run_dir, say)
    store.consolidate()
    return tester.run_dir, store.read()


def _sweep_one(spec: Any, path: str, config: SpeedConfig, store: Any, base: dict[str, Any], bw: Any,
               timeout_s: float, run_dir: Path, say: Any) -> None:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=speed_worker, args=(child, spec, path, config, str(run_dir)), daemon=True)
    proc.start()
    child.close()
    load: dict[str, Any] = {}
    cost = None
    pending = list(config.tests())
    current: tuple[str, int] | None = None

    def row(kind: str, value: int, rep: int, m: dict[str, Any] | None, status: str, error: str) -> dict[str, Any]:
        r = {**base, **load, "suite": SUITES[kind], "suite_kind": "speed", "suite_hash": test_hash(kind, value, config.seed),
             "sample_id": f"{kind}{value}", "category": {"pp": "prefill", "tg": "decode", "img": "image"}[kind],
             "repeat": rep, "status": status, "error": error, "max_tokens": value + 1 if kind == "tg" else 1,
             "recorded_at": datetime.now(UTC)}
        if m:
            r.update(m)
            if kind == "tg":
                r.update(bandwidth.bound_columns(cost, bw, m["prompt_tokens"], m["generated_tokens"]))
        return r

    def fail_pending(error: str) -> None:
        store.append([row(k, v, 0, None, "error", error) for k, v in pending])

    last_msg = time.monotonic()
    try:
        while True:
            if parent.poll(0.2):
                try:
                    msg = parent.recv()
                except EOFError:
                    break
                last_msg = time.monotonic()
                if msg[0] == "loaded":
                    load = _load_columns(msg[1], msg[2])
                    cost = bandwidth.decode_cost_or_none(path)
                elif msg[0] == "load_error":
                    fail_pending(f"load failed: {msg[1]}")
                    say(f"error: {spec.name}: load failed: {msg[1]}")
                    return
                elif msg[0] == "start":
                    current = (msg[1], msg[2])
                elif msg[0] == "result":
                    _, kind, value, rep, m, status, error = msg
                    store.append([row(kind, value, rep, m, status, error)])
                    if status != "ok" or rep == config.repeats - 1:
                        pending.remove((kind, value))
                elif msg[0] == "done":
                    return
            elif not proc.is_alive():
                break
            elif time.monotonic() - last_msg > timeout_s:
                proc.kill()
                what = f"{current[0]}{current[1]}" if current else "loading"
                fail_pending(f"timed out after {timeout_s:.0f} s on {what}")
                return
        what = f"{current[0]}{current[1]}" if current else "loading"
        from harness.tester import signal_name

        fail_pending(f"worker process died ({signal_name(proc.exitcode)}) during {what}")
        say(f"error: {spec.name}: worker died during {what}")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        parent.close()


# -- the table ------------------------------------------------------------------------------------
def _order(sample_id: str) -> tuple[int, int]:
    for i, kind in enumerate(("pp", "tg", "img")):
        if sample_id.startswith(kind) and sample_id[len(kind):].isdigit():
            return i, int(sample_id[len(kind):])
    return 9, 0


def speed_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per model × test: t/s mean ± std over repetitions, n, the bound and flags."""
    ok = df[(df["status"] == "ok") & df["suite"].isin(SUITES.values())]
    lines = []
    for (model, test), g in ok.groupby(["model", "sample_id"], sort=False):
        rate = g["decode_tps"] if test.startswith("tg") else g["prefill_tps"]
        s = describe(rate.to_numpy(dtype=float))
        bound = float(g["decode_bound_tps"].mean()) if test.startswith("tg") else math.nan
        flags = []
        if s.noisy:
            flags.append(f"noisy (cv {s.cv:.0%})")
        if bound > 0 and bandwidth.is_impossible({"decode_tps": s.mean, "decode_bound_tps": bound}):
            flags.append("IMPOSSIBLE: above the bandwidth bound")
        lines.append({
            "model": model, "test": test, "mean": s.mean, "std": s.std, "n": s.n, "cv": s.cv,
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
    """llama-bench's markdown layout, plus the bandwidth bound and the flags."""
    head = ["model", "test", "t/s", "n", "% of bound", "notes"]
    rows = []
    for r in table.itertuples(index=False):
        notes = r.flags
        if r.test.startswith("img") and not math.isnan(r.image_tokens):
            extra = f"{r.image_tokens:.0f} image tokens, prefill {r.prefill_ms:.1f} ms"
            notes = f"{extra}; {notes}" if notes else extra
        pct = f"{r.pct_bound:.1%} of {r.bound:,.0f}" if not math.isnan(r.pct_bound) else ""
        rows.append([r.model, r.test, _fmt(r.mean, r.std), str(r.n), pct, notes])
    widths = [max(3, len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    right = {2, 3, 4}

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
