"""Serving metrics, defined as vLLM's `vllm bench serve` defines them, and per-step summaries.

Reference matched: vLLM `vllm/benchmarks/serve.py` (`calculate_metrics`) with the request
function in `vllm/benchmarks/lib/endpoint_request_func.py` (`async_request_openai_chat_completions`).

Per request (a successful one; failed requests enter no latency statistic, as in vLLM):
  TTFT   time from sending the request to the first streamed token chunk.
  ITL    every gap between consecutive token chunks; pooled over all requests of a step.
  E2EL   time from sending the request to its last token chunk.
  TPOT   (E2EL - TTFT) / (output_tokens - 1), only for requests with more than one output token;
         output_tokens is the server's `usage.completion_tokens` when it gives one.
Per step:
  duration             from the step's start to the end of its last request (its deadline at most)
  request throughput   completed requests / duration
  output throughput    sum of output tokens of completed requests / duration
  total throughput     (prompt + output tokens of completed requests) / duration
  goodput              completed requests meeting every SLO / duration; a request with a single
                       output token has TPOT 0 for this test (vLLM's rule); SLO bounds are inclusive
  mean, median, std (population, ddof 0) and percentiles (numpy linear interpolation) per metric.

Which chunk counts as a "token chunk" (`chunk_rule`):
  "content" (default)  a chunk whose delta carries non-empty text: the first token a user sees.
  "choices"            any chunk carrying a choice, even with empty content; this is vLLM's exact
                       rule, and differs from "content" only with servers that send a text-less
                       chunk first (vLLM's own server sends the role alone) or last (mlx_vlm.server
                       sends the finish_reason alone, which ends E2EL a little later).
Named differences from vLLM, all deliberate:
  - without `usage.completion_tokens`, vLLM counts output tokens with a local tokenizer (or takes 1
    without one); we count the content chunks the client received (`output_tokens_counted`).
  - a statistic over no values is NaN (vLLM prints 0).
  - under "content", an answer with no text has no first token and does not count as completed.

Names in other tools: AIPerf (and genai-perf) call vLLM's TPOT "inter token latency (ITL)":
(request latency - TTFT) / (output tokens - 1) per request. GuideLLM's `inter_token_latency_ms`
is that same per-request figure, while its `time_per_output_token_ms` includes the first token;
its E2EL is `request_latency`. vLLM's ITL (every chunk gap, pooled) has no counterpart in either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK_RULES = ("content", "choices")
DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
LATENCIES = ("ttft", "tpot", "itl", "e2el")
# A step's client is "late" when its mean scheduling lag exceeds this share of the time it had to
# keep: in an open loop, the mean gap between planned sends (the arrival process it produced is
# then not the one asked for); in a closed loop, the mean time a request holds its slot (send →
# end): the lag there is slot freed → next send, so slots then sat idle for more than about a
# tenth of the time and fewer requests were in flight than asked. (The mean gap between sends is
# no yardstick in a closed loop: with short requests and several slots it is a fraction of a
# millisecond, and the client's ordinary turnaround "exceeded" it with nothing late.)
LAG_FRACTION = 0.10
# Saturation: the load stops paying when throughput grows by less than this while p90 TTFT grows.
SATURATION_GAIN = 0.10

GROUP_KEYS = ["model", "suite", "mode", "target_concurrency", "target_rate", "arrivals"]


class SloError(ValueError):
    """A --slo value that cannot be read."""


def parse_slo(text: str) -> dict[str, float]:
    """'ttft=500ms,tpot=50ms,e2el=2s' -> {'ttft': 0.5, 'tpot': 0.05, 'e2el': 2.0} (seconds)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in ("ttft", "tpot", "e2el") or not value:
            raise SloError(f"--slo {part!r}: use ttft=, tpot= or e2el= with a time, e.g. ttft=500ms,tpot=50ms")
        v = value.strip().lower()
        scale = 1e-3 if v.endswith("ms") else 1.0
        v = v[:-2] if v.endswith("ms") else v[:-1] if v.endswith("s") else v
        try:
            seconds = float(v) * scale
        except ValueError:
            raise SloError(f"--slo {part!r}: {value!r} is not a time (500ms, 0.5s)") from None
        if not seconds > 0:
            raise SloError(f"--slo {part!r}: the bound must be positive")
        out[name] = seconds
    return out


@dataclass(frozen=True)
class RequestTimes:
    """One successful request's latencies, seconds."""

    ttft: float
    e2el: float
    itl: tuple[float, ...]
    output_tokens: int
    tpot: float | None  # None when output_tokens <= 1 (vLLM leaves it out of TPOT statistics)


def token_chunk_times(chunk_times: Sequence[float], has_content: Sequence[bool], chunk_rule: str = "content") -> list[float]:
    """The times (since send) of the chunks that count as token chunks under `chunk_rule`."""
    if chunk_rule not in CHUNK_RULES:
        raise ValueError(f"chunk_rule {chunk_rule!r}: use one of {', '.join(CHUNK_RULES)}")
    if chunk_rule == "choices":
        return [float(t) for t in chunk_times]
    return [float(t) for t, c in zip(chunk_times, has_content, strict=True) if c]


def request_times(chunk_times: Sequence[float], has_content: Sequence[bool], usage_tokens: int | None,
                  counted_tokens: int, chunk_rule: str = "content") -> RequestTimes | None:
    """Latencies of one request from its chunk arrival times; None when it produced no token chunk."""
    times = token_chunk_times(chunk_times, has_content, chunk_rule)
    if not times:
        return None
    ttft, e2el = times[0], times[-1]
    n = int(usage_tokens) if usage_tokens else int(counted_tokens)
    tpot = (e2el - ttft) / (n - 1) if n > 1 else None
    return RequestTimes(ttft, e2el, tuple(np.diff(times).tolist()), n, tpot)


def stats(values: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    """mean, median, std (ddof 0) and pNN by numpy's linear interpolation; NaN over no values."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"mean": math.nan, "median": math.nan, "std": math.nan, **{pname(p): math.nan for p in percentiles}}
    out = {"mean": float(np.mean(a)), "median": float(np.median(a)), "std": float(np.std(a))}
    for p in percentiles:
        out[pname(p)] = float(np.percentile(a, p))
    return out


def pname(p: float) -> str:
    """Column infix of a percentile: 90 -> 'p90', 99.9 -> 'p99_9'."""
    return f"p{p:g}".replace(".", "_")


def _union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by intervals: runs merged from machines that loaded the server at
    the same time share one window; runs made one after another add up."""
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarise_step(rows: pd.DataFrame, *, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                   slo: dict[str, float] | None = None, chunk_rule: str = "content") -> dict[str, object]:
    """One step's summary from its rows (one or several runs of the same step)."""
    slo = slo or {}
    windows = rows.groupby(["run_id", "step"], dropna=False)[["step_start_unix", "step_duration_s"]].first()
    duration = _union_length([(s, s + d) for s, d in windows.itertuples(index=False)])
    ttfts, e2els, itls, tpots, all_tpots = [], [], [], [], []
    completed = total_in = total_out = good = 0
    scores = []
    for r in rows.itertuples(index=False):
        t = None
        if r.status == "ok":
            t = request_times(r.chunk_times_s, r.chunk_has_content, _opt_int(r.output_tokens_usage),
                              int(r.output_tokens_counted), chunk_rule)
        if t is None:
            continue
        completed += 1
        total_in += _opt_int(r.prompt_tokens) or 0
        total_out += t.output_tokens
        ttfts.append(t.ttft)
        e2els.append(t.e2el)
        itls.extend(t.itl)
        if t.tpot is not None:
            tpots.append(t.tpot)
        all_tpots.append(t.tpot if t.tpot is not None else 0.0)
        measured = {"ttft": t.ttft, "tpot": all_tpots[-1], "e2el": t.e2el}
        if slo and all(measured[k] <= bound for k, bound in slo.items()):
            good += 1
        if r.score is not None and not (isinstance(r.score, float) and math.isnan(r.score)):
            scores.append(float(r.score))
    sent = len(rows)
    lag = (rows["sent_s"] - rows["planned_s"]).to_numpy(dtype=float)
    planned = np.sort(rows["planned_s"].to_numpy(dtype=float))
    mode = rows["mode"].iloc[0]
    rate = rows["target_rate"].iloc[0]
    if mode == "rate" and rate and not pd.isna(rate):
        gap = 1.0 / float(rate)
        late_base = gap
    else:  # closed loop: the mean gap between sends that the loop produced, for the table
        gap = duration / sent if sent else math.nan
        held = (rows["end_s"] - rows["sent_s"]).to_numpy(dtype=float) if "end_s" in rows else np.array([])
        held = held[np.isfinite(held)]
        late_base = float(np.mean(held)) if held.size else math.nan
    statuses = rows["status"].value_counts().to_dict()
    ignored = _ignored_max_tokens(rows)
    out: dict[str, object] = {
        "runs": int(rows["run_id"].nunique()),
        "sent": sent,
        "completed": completed,
        "failed": sent - completed,
        "errors": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()) if k != "ok"),
        "duration_s": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": completed / duration if duration > 0 else math.nan,
        "output_throughput": total_out / duration if duration > 0 else math.nan,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else math.nan,
        "request_goodput": good / duration if slo and duration > 0 else math.nan,
        "mean_inflight": float(np.sum(e2els)) / duration if duration > 0 else math.nan,  # Little's law
        "accuracy": float(np.mean(scores)) if scores else math.nan,
        "scored": len(scores),
        "lag_mean_ms": float(np.mean(lag)) * 1e3 if sent else math.nan,
        "lag_p50_ms": float(np.percentile(lag, 50)) * 1e3 if sent else math.nan,
        "lag_p99_ms": float(np.percentile(lag, 99)) * 1e3 if sent else math.nan,
        "lag_max_ms": float(np.max(lag)) * 1e3 if sent else math.nan,
        "mean_gap_ms": gap * 1e3,
        "span_s": float(planned[-1] - planned[0]) if sent else math.nan,
        "late_base_ms": late_base * 1e3,
        "max_tokens_ignored": ignored[0],
        "max_tokens_note": ignored[1],
    }
    out["client_late"] = bool(sent and out["lag_mean_ms"] > LAG_FRACTION * out["late_base_ms"])
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        for k, v in stats(values, percentiles).items():
            out[f"{name}_{k}_ms"] = v * 1e3
    return out


def summarise(rows: pd.DataFrame, *, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
              slo: dict[str, float] | None = None, chunk_rule: str = "content") -> pd.DataFrame:
    """Per-step summaries from per-request rows (one run, or several concatenated).

    Rows of the same model, suite, mode and target pool into one step: percentiles are computed
    over the pooled requests, never averaged. Warm-up rows (step < 0) are left out. Adds the
    saturation point per model, suite and mode (see `saturation`).
    """
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows["step"] >= 0]
    # p50 and p90 always: the table shows them and the saturation point is defined on p90 TTFT
    percentiles = sorted({float(p) for p in percentiles} | {50.0, 90.0})
    out = []
    for key, g in rows.groupby(GROUP_KEYS, dropna=False, sort=False):
        d = dict(zip(GROUP_KEYS, key, strict=True))
        d["step"] = int(g["step"].min())
        d.update(summarise_step(g, percentiles=percentiles, slo=slo, chunk_rule=chunk_rule))
        out.append(d)
    df = pd.DataFrame(out)
    df["load"] = np.where(df["mode"] == "rate", df["target_rate"], df["target_concurrency"]).astype(float)
    df = df.sort_values(["model", "suite", "mode", "load"], kind="stable").reset_index(drop=True)
    df["saturated"] = False
    for _, g in df.groupby(["model", "suite", "mode"], sort=False):
        i = saturation(g["request_throughput"].tolist(), g["ttft_p90_ms"].tolist())
        if i is not None:
            df.loc[g.index[i], "saturated"] = True
    return df


def saturation(throughput: Sequence[float], ttft_p90: Sequence[float], gain: float = SATURATION_GAIN) -> int | None:
    """Index of the saturation point in steps ordered by load: the first step after which request
    throughput grows by less than `gain` (10 %) while p90 TTFT grows; None if none does."""
    for i in range(len(throughput) - 1):
        t0, t1, l0, l1 = throughput[i], throughput[i + 1], ttft_p90[i], ttft_p90[i + 1]
        if any(pd.isna(x) for x in (t0, t1, l0, l1)):
            continue
        if t1 < t0 * (1 + gain) and l1 > l0:
            return i
    return None


def _ignored_max_tokens(rows: pd.DataFrame) -> tuple[int, str]:
    """(rows whose answer exceeded max_tokens, "server ignored max_tokens: 64 > 8" for the worst).

    From the server's usage count or, without one, the text chunks received; rows written before
    the `note` column (schema v1) are judged the same way, so old runs are flagged too."""
    if rows.empty or not {"max_tokens", "output_tokens_usage", "output_tokens_counted"} <= set(rows.columns):
        return 0, ""
    usage = pd.to_numeric(rows["output_tokens_usage"], errors="coerce").fillna(0)
    counted = pd.to_numeric(rows["output_tokens_counted"], errors="coerce").fillna(0)
    got = np.maximum(usage.to_numpy(float), counted.to_numpy(float))
    limit = pd.to_numeric(rows["max_tokens"], errors="coerce").to_numpy(float)
    over = np.isfinite(limit) & (got > limit)
    if not over.any():
        return 0, ""
    k = int(np.argmax(np.where(over, got - limit, -np.inf)))
    return int(over.sum()), f"server ignored max_tokens: {int(got[k])} > {int(limit[k])}"


def _opt_int(v: object) -> int | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    return int(v)
