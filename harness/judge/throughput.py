"""The accuracy mode's speed: each model's generating pass as throughput (samples/s, generated
tokens/s), recomputed from the rows alone, and the answers batching changed.

Rows of an accuracy-mode pass carry the pass's seconds, samples and tokens when their batch
finished (harness/run/batched.py); a pass is one worker's, so a pass cut by a crash, or resumed,
is two, and so are two workers answering at once (harness/run/data_parallel.py). A model's pass
seconds are the clock time its passes cover: one after another they add up, side by side they
count once. Cached answers took no generation: they are counted
apart, never in the pass's rate. Latency verdicts never read these rows (`latency_rows`).
"""

from __future__ import annotations

import pandas as pd


def latency_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose timings are one request's latency: every row but the accuracy mode's."""
    if "mode" not in df:
        return df
    return df[df["mode"].fillna("latency") != "accuracy"]


def accuracy_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "mode" not in df:
        return df.iloc[:0]
    return df[df["mode"] == "accuracy"]


def pass_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run and model: samples generated, pass seconds, samples/s, tokens/s, workers, batch sizes,
    samples generated alone, cache hits, answers checked and how many differ."""
    acc = accuracy_rows(df)
    cols = ["run_id", "model", "samples", "pass_s", "samples_per_s", "tokens_per_s", "workers", "batch_sizes", "alone",
            "cache_hits", "checked", "differs"]
    if acc.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (run, model), g in acc.groupby(["run_id", "model"], sort=True):
        gen = g[g["pass_s"].notna()]
        ends = _pass_ends(gen)
        samples = sum(int(e.pass_samples) for e in ends)
        seconds = _covered([(e.recorded_at.timestamp() - float(e.pass_s), e.recorded_at.timestamp()) for e in ends])
        tokens = sum(int(e.pass_generated_tokens) for e in ends)
        sizes = sorted({int(b) for b in gen["batch_size"].dropna()})
        checks = g["answer_check"].dropna() if "answer_check" in g else pd.Series([], dtype=str)
        out.append({"run_id": run, "model": model, "samples": samples, "pass_s": seconds,
                    "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
                    "tokens_per_s": tokens / seconds if seconds > 0 else float("nan"),
                    "workers": int(gen["pass_worker"].nunique()) if "pass_worker" in gen and gen["pass_worker"].notna().any()
                    else 1,
                    "batch_sizes": ",".join(map(str, sizes)), "alone": int(gen["batch_fallback"].notna().sum()),
                    "cache_hits": int(g["cache_hit"].fillna(False).astype(bool).sum()),
                    "checked": int(len(checks)), "differs": int((checks == "differs").sum())})
    return pd.DataFrame(out, columns=cols)


def _pass_ends(gen: pd.DataFrame) -> list:
    """The last row of each pass: one per worker's run. A worker's counters only grow, so its
    pass restarts (after a crash, or on --resume) where pass_samples falls; workers answering at
    once are told apart by pass_worker."""
    ends = []
    workers = gen["pass_worker"].fillna(0) if "pass_worker" in gen else pd.Series(0, index=gen.index)
    for _, rows in gen.groupby(workers, sort=True):
        last = None
        for r in rows.sort_values("recorded_at").itertuples(index=False):
            if last is not None and (r.pass_samples < last.pass_samples or r.pass_s < last.pass_s):
                ends.append(last)
            last = r
        if last is not None:
            ends.append(last)
    return ends


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds of the clock that the (start, end) spans cover together: passes one after another
    add up, passes at the same time count once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def differing(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose answer differs from another path's for the same request."""
    if "answer_check" not in df:
        return df.iloc[:0]
    return df[df["answer_check"] == "differs"]


def summary_lines(df: pd.DataFrame) -> list[str]:
    """What `vlm-harness run --mode accuracy` prints after the run."""
    lines = []
    for r in pass_table(df).itertuples(index=False):
        rate = (f"{r.samples} samples in {r.pass_s:.2f} s: {r.samples_per_s:.2f} samples/s, "
                f"{r.tokens_per_s:.1f} generated tokens/s" if r.samples else "nothing generated")
        extra = [f"{r.workers} workers at once" if r.workers > 1 else ""]
        extra += [f"batches of {r.batch_sizes}" if r.batch_sizes else ""]
        extra += [f"{r.alone} alone" if r.alone else "", f"{r.cache_hits} cached" if r.cache_hits else ""]
        if r.checked:
            extra.append(f"{r.checked} checked against the one-at-a-time path: {r.differs} differ")
        lines.append(f"{r.model}: {rate}" + "".join(f"; {e}" for e in extra if e))
    for r in differing(df).itertuples(index=False):
        lines.append(f"  differs: {r.model} | {r.suite} | {r.sample_id}: {r.output!r} vs {r.answer_check_output!r}")
    return lines
