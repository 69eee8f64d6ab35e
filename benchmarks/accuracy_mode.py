"""The accuracy mode's figures: throughput against today's one-at-a-time run, identical answers,
the response cache, and concurrent requests to a real server.

    python benchmarks/accuracy_mode.py                  # CPU fixtures, every part (~15 min on 2 cores)
    python benchmarks/accuracy_mode.py --gpu-7b         # the 7B preset, bf16, on a GPU (see --help)

Parts (each printed as a table, and all of it as JSON with --json FILE):

1. **Throughput**: each model on the suites, `--mode latency` (today's run: one request at a
   time) and `--mode accuracy` (batched; on MLX's CPU backend a worker per core, each answering
   its share of the samples at once), cache off for the first, a fresh cache for the second.
   A pass is the generating part of a run, load and warm-up excluded: for the accuracy mode the
   rows' own pass clock (harness/throughput.py); for the latency mode the time from the first
   row's sample start (its recorded time less its wall_s, inputs_s and harness_s) to the last
   row's. The whole run's wall time, load and warm-up included, is shown beside it. Identical
   answers: the share of samples whose output is the same on both paths. A model's ratio is its
   latency pass's seconds over its accuracy pass's, on the same samples.
2. **Cache**: the accuracy run again with the same cache (every answer a hit: no model loaded),
   against the first accuracy run's wall time; scores compared; then the same with another
   `--max-tokens`, which must miss.
3. **Server**: a real `mlx_vlm.server` on the qwen fixture, the same samples one at a time
   (latency mode) and with 4 requests in flight (accuracy mode), answers compared.
4. `--generate-loop`: one `mlx_vlm.generate` call per question, as mlx_vlm.evals does, model
   loaded once, for the first model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from harness.judge.throughput import pass_table  # noqa: E402


def _latency_pass(df: pd.DataFrame) -> tuple[int, float]:
    """(samples, seconds) of a latency run's generating pass, from its rows."""
    rows = df[(df["sample_id"] != "*") & df["wall_s"].notna()].sort_values("recorded_at")
    if rows.empty:
        return 0, float("nan")
    first = rows.iloc[0]
    own = sum(float(first[c]) for c in ("wall_s", "inputs_s", "harness_s") if pd.notna(first.get(c)))
    span = (rows["recorded_at"].iloc[-1] - rows["recorded_at"].iloc[0]).total_seconds()
    return len(df[df["status"].isin(["ok", "unsupported"])]), span + own


def _timed_run(**kw) -> tuple[pd.DataFrame, float]:
    from harness.tester import VLMTester

    models, suites = kw.pop("models"), kw.pop("suites")
    t = time.perf_counter()
    df = VLMTester(progress=False, **kw).run(models, suites)
    return df, time.perf_counter() - t


def _same(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int, list[str]]:
    key = ["model", "suite", "sample_id", "repeat"]
    m = a[a["status"] == "ok"][key + ["output"]].merge(b[b["status"] == "ok"][key + ["output"]], on=key)
    diff = m[m["output_x"] != m["output_y"]]
    return int(len(m) - len(diff)), int(len(m)), [f"{r.model} | {r.suite} | {r.sample_id}" for r in diff.itertuples()]


def throughput(models: list[str], suites: list[str], limit: int, out: Path, cache: Path, max_tokens: int | None,
               batch_size: int | None, workers: int | None = None) -> tuple[list[dict], dict, pd.DataFrame, float]:
    common = {"out_dir": out, "limit": limit, "max_tokens": max_tokens}
    results = []
    acc_all, lat_all, acc_wall_total = [], [], 0.0
    for model in models:
        lat, lat_wall = _timed_run(models=[model], suites=suites, cache=False, **common)
        acc, acc_wall = _timed_run(models=[model], suites=suites, mode="accuracy", cache_path=cache,
                                   batch_size=batch_size, workers=workers, **common)
        n_lat, s_lat = _latency_pass(lat)
        p = pass_table(acc)
        p = p.iloc[0] if not p.empty else None
        same, compared, differ = _same(lat, acc)
        fallbacks = acc["batch_fallback"].dropna().value_counts().to_dict()
        results.append({
            "model": model, "samples": n_lat, "latency_pass_s": s_lat,
            "latency_samples_per_s": n_lat / s_lat if s_lat else float("nan"),
            "accuracy_pass_s": float(p.pass_s) if p is not None else float("nan"),
            "accuracy_samples_per_s": float(p.samples_per_s) if p is not None else float("nan"),
            "accuracy_tokens_per_s": float(p.tokens_per_s) if p is not None else float("nan"),
            # The same samples' seconds, not the samples/s figures: a row the model cannot take
            # (LLaVA-NeXT's multi-image samples, `unsupported` at once on both paths) counts
            # in the latency run's samples but not in the accuracy pass's.
            "speedup": s_lat / float(p.pass_s) if p is not None and p.pass_s else float("nan"),
            "latency_run_s": lat_wall, "accuracy_run_s": acc_wall,
            "identical": same, "compared": compared, "differ": differ,
            "workers": int(p.workers) if p is not None else 1,
            "batch_sizes": p.batch_sizes if p is not None else "", "fallbacks": fallbacks,
        })
        lat_all.append(lat)
        acc_all.append(acc)
        acc_wall_total += acc_wall
        print(f"  {model}: latency {n_lat / s_lat:.2f} samples/s, accuracy "
              f"{results[-1]['accuracy_samples_per_s']:.2f} samples/s (×{results[-1]['speedup']:.2f}), "
              f"identical {same}/{compared}", flush=True)
    total_lat = sum(r["latency_pass_s"] for r in results)
    total_acc = sum(r["accuracy_pass_s"] for r in results)
    n = sum(r["samples"] for r in results)
    overall = {"samples": n, "latency_pass_s": total_lat, "accuracy_pass_s": total_acc,
               "speedup": total_lat / total_acc if total_acc else float("nan"),
               "latency_run_s": sum(r["latency_run_s"] for r in results),
               "accuracy_run_s": acc_wall_total,
               "identical": sum(r["identical"] for r in results), "compared": sum(r["compared"] for r in results)}
    return results, overall, pd.concat(acc_all, ignore_index=True), acc_wall_total


def cache_figures(models: list[str], suites: list[str], limit: int, out: Path, cache: Path, first: pd.DataFrame,
                  first_wall: float, max_tokens: int | None) -> dict:
    common = {"out_dir": out, "limit": limit, "mode": "accuracy", "cache_path": cache}
    again, wall = _timed_run(models=models, suites=suites, max_tokens=max_tokens, **common)
    key = ["model", "suite", "sample_id", "repeat"]
    a = first[first["status"] == "ok"].set_index(key).sort_index()
    b = again[again["status"] == "ok"].set_index(key).sort_index()
    scores_same = bool(a["score"].fillna(-1).equals(b["score"].reindex(a.index).fillna(-1)))
    changed, _ = _timed_run(models=models[:1], suites=suites, max_tokens=(max_tokens or 8) + 1, **common)
    return {"first_run_s": first_wall, "second_run_s": wall, "share": wall / first_wall,
            "second_hits": int(again["cache_hit"].fillna(False).sum()), "second_rows": int(len(again)),
            "scores_identical": scores_same,
            "changed_setting_hits": int(changed["cache_hit"].fillna(False).sum()),
            "changed_setting_rows": int(len(changed))}


def server_figures(suites: list[str], limit: int, out: Path, in_flight: int, max_tokens: int | None,
                   log_dir: Path | None = None) -> dict:
    from harness.fixtures.build import build_arch, default_root

    sys.path.insert(0, str(REPO / "tests"))
    from servers import mlx_vlm_server

    root = default_root()
    build_arch("qwen2_5_vl", root)
    qwen = root / "qwen2_5_vl"
    with tempfile.TemporaryDirectory() as logs, mlx_vlm_server(qwen, log_dir or Path(logs)) as url:
        toml = out / "served-qwen.toml"
        toml.parent.mkdir(parents=True, exist_ok=True)
        toml.write_text(f'name = "served-qwen"\nsource = "{qwen}"\nadapter = "openai"\nbase_url = "{url}"\n'
                        "timeout_s = 120\n")
        common = {"out_dir": out, "limit": limit, "max_tokens": max_tokens, "cache": False, "warmup": 1}
        one, _ = _timed_run(models=[str(toml)], suites=suites, **common)
        many, _ = _timed_run(models=[str(toml)], suites=suites, mode="accuracy", concurrency=in_flight, **common)
    n, s_one = _latency_pass(one)
    p = pass_table(many).iloc[0]
    same, compared, differ = _same(one, many)
    return {"samples": n, "one_at_a_time_samples_per_s": n / s_one, "in_flight": in_flight,
            "concurrent_samples_per_s": float(p.samples_per_s),
            "speedup": float(p.samples_per_s) / (n / s_one), "identical": same, "compared": compared,
            "differ": differ, "errors": int((many["status"] == "error").sum() + (one["status"] == "error").sum())}


def generate_loop(model: str, suites: list[str], limit: int, max_tokens: int | None) -> dict:
    """One mlx_vlm.generate per question, model loaded once (the mlx_vlm.evals scripts' loop)."""
    import mlx_vlm
    from mlx_vlm import apply_chat_template

    from harness.models import checkpoint_path, resolve
    from harness.suites import load_suite

    spec = resolve(model)
    path = checkpoint_path(spec)
    loaded, processor = mlx_vlm.load(path)
    samples = [s for name in suites for s in load_suite(name, limit).samples[:limit]
               if len(s.images) == 1 and not s.turns]
    first = samples[0]
    mlx_vlm.generate(loaded, processor, apply_chat_template(processor, loaded.config, first.prompt, num_images=1),
                     image=list(first.images), max_tokens=max_tokens or first.max_tokens, temperature=0.0)
    t = time.perf_counter()
    for s in samples:
        prompt = apply_chat_template(processor, loaded.config, s.prompt, num_images=1)
        mlx_vlm.generate(loaded, processor, prompt, image=list(s.images), max_tokens=max_tokens or s.max_tokens,
                         temperature=0.0)
    seconds = time.perf_counter() - t
    return {"model": model, "samples": len(samples), "seconds": seconds, "samples_per_s": len(samples) / seconds}


def _gpu_suite(out: Path, samples: int) -> str:
    # 504 px: 224 and 448 px images crash MLX-CUDA 0.32.4 in Qwen2.5-VL's vision tower (empty
    # attention windows; reports/evidence/h200-mlx-cuda/).
    path = out / "synthetic-shapes-gpu.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = REPO / "suites" / "synthetic-shapes.toml"
    path.write_text(f'name = "synthetic-shapes-504-{samples}"\ninclude = "{base}"\nsamples = {samples}\n'
                    "[params]\nsize = 504\n")
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", "-m", action="append", help="models (default: every offline fixture and the reference)")
    p.add_argument("--suites", "-s", action="append", help="suites (default: every default suite)")
    p.add_argument("--limit", type=int, default=8, help="samples per suite (default 8, as nox -s bench)")
    p.add_argument("--max-tokens", type=int, help="override every suite's limit")
    p.add_argument("--batch-size", type=int, help="accuracy mode's batch (default: from the free memory)")
    p.add_argument("--workers", type=int, help="accuracy mode's workers per model (default: one per core on MLX's "
                                                "CPU backend, one on a GPU)")
    p.add_argument("--in-flight", type=int, default=4, help="server part: requests in flight (default 4)")
    p.add_argument("--server-max-tokens", type=int, default=32, help="server part: tokens per answer (default 32)")
    p.add_argument("--server-log", help="server part: keep mlx_vlm.server's log in this directory")
    p.add_argument("--skip", action="append", default=[], choices=("throughput", "cache", "server"))
    p.add_argument("--generate-loop", action="store_true", help="also time one mlx_vlm.generate per question")
    p.add_argument("--gpu-7b", action="store_true",
                   help="the GPU figure: builds the 7B preset (bf16) in --fixtures, runs it on a synthetic suite "
                        "of --gpu-samples samples at --max-tokens (default 64), with --generate-loop; no server")
    p.add_argument("--gpu-samples", type=int, default=64)
    p.add_argument("--fixtures", help="where the 7B preset is built (default: the fixtures directory)")
    p.add_argument("--out", help="directory for the runs (default: a temporary one)")
    p.add_argument("--json", help="write every figure here")
    args = p.parse_args(argv)
    from harness.models import default_models
    from harness.suites import default_suites

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="accuracy-mode-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    models, suites, limit, max_tokens = args.models or default_models(), args.suites or default_suites(), args.limit, \
        args.max_tokens
    if args.gpu_7b:
        root = Path(args.fixtures) if args.fixtures else out / "fixtures"
        preset = root / "preset-qwen2.5-vl-7b"
        if not preset.exists():
            import subprocess

            subprocess.run([sys.executable, "-m", "harness", "fixtures", "build", str(root), "--preset", "7b"],
                           check=True, cwd=REPO)
        models, suites, limit = [str(preset)], [_gpu_suite(out, args.gpu_samples)], args.gpu_samples
        max_tokens = max_tokens or 64
        args.skip = sorted(set(args.skip) | {"server"})
        args.generate_loop = True
    report: dict = {"models": models, "suites": suites, "limit": limit, "max_tokens": max_tokens}
    cache = out / "responses.sqlite"
    cache.unlink(missing_ok=True)
    acc_first, acc_wall = None, 0.0
    if "throughput" not in args.skip:
        print(f"throughput: {len(models)} model(s) × {len(suites)} suite(s), {limit} samples each", flush=True)
        per_model, overall, acc_first, acc_wall = throughput(models, suites, limit, out / "runs", cache, max_tokens,
                                                             args.batch_size, args.workers)
        report["throughput"] = {"per_model": per_model, "overall": overall}
        table = pd.DataFrame(per_model)[["model", "samples", "latency_samples_per_s", "accuracy_samples_per_s",
                                         "speedup", "accuracy_tokens_per_s", "latency_run_s", "accuracy_run_s",
                                         "identical", "compared", "workers", "batch_sizes"]]
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        for r in per_model:
            if r["fallbacks"]:
                print(f"  {r['model']} one at a time: " + "; ".join(f"{n} × {w}" for w, n in r["fallbacks"].items()))
            for d in r["differ"]:
                print(f"  differs: {d}")
        o = overall
        print(f"overall: {o['samples']} samples, latency pass {o['latency_pass_s']:.1f} s, accuracy pass "
              f"{o['accuracy_pass_s']:.1f} s: ×{o['speedup']:.2f} samples/s; whole runs {o['latency_run_s']:.1f} s "
              f"vs {o['accuracy_run_s']:.1f} s; identical answers {o['identical']}/{o['compared']} "
              f"({100 * o['identical'] / max(1, o['compared']):.1f} %)", flush=True)
    if "cache" not in args.skip and acc_first is not None:
        c = cache_figures(models, suites, limit, out / "runs", cache, acc_first, acc_wall, max_tokens)
        report["cache"] = c
        print(f"cache: first accuracy run {c['first_run_s']:.1f} s, second {c['second_run_s']:.2f} s "
              f"({100 * c['share']:.1f} %), {c['second_hits']}/{c['second_rows']} hits, scores identical: "
              f"{c['scores_identical']}; another max_tokens: {c['changed_setting_hits']}/{c['changed_setting_rows']} "
              "hits", flush=True)
    if "server" not in args.skip:
        s = server_figures(args.suites or ["synthetic-shapes"], limit, out / "runs", args.in_flight,
                           args.server_max_tokens, Path(args.server_log) if args.server_log else None)
        report["server"] = s
        print(f"server: mlx_vlm.server on the qwen fixture, {s['samples']} samples: one at a time "
              f"{s['one_at_a_time_samples_per_s']:.2f} samples/s, {s['in_flight']} in flight "
              f"{s['concurrent_samples_per_s']:.2f} samples/s (×{s['speedup']:.2f}); identical "
              f"{s['identical']}/{s['compared']}, errors {s['errors']}", flush=True)
    if args.generate_loop:
        g = generate_loop(models[0], suites, limit, max_tokens)
        report["generate_loop"] = g
        print(f"generate per question ({g['model']}): {g['samples']} samples, {g['samples_per_s']:.2f} samples/s",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
