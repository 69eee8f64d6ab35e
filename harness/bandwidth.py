"""The physical limit on decode speed: memory bandwidth over the bytes read per decoded token.

Decoding one token reads every language-model weight once (at its stored precision: a 4-bit
checkpoint reads its packed weights, scales and biases) plus the KV cache so far. No kernel can
go faster than `bandwidth / bytes_per_token`; a figure above that bound is a measurement error.

The vision tower and projector run once per image, at prefill, so they are not counted; the
embedding table is read one row per token (negligible), except when it doubles as lm_head.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import checkpoint
from harness.paths import cache_dir

GB = 1e9  # bandwidth is quoted in decimal GB/s, as Apple and every datasheet do
GIB = 2**30

# Apple's published unified-memory bandwidth, GB/s. A binned Max (fewer GPU cores) has less:
# M3 Max 300, M4 Max 410; the table takes the full part, so the bound stays an upper limit.
APPLE_BANDWIDTH_GBPS: dict[str, float] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
    "M5": 153,
}

# -- bandwidth of this machine ----------------------------------------------------------------
def apple_chip(brand: str) -> str | None:
    """'Apple M4 Pro' -> 'M4 Pro'; None when the brand string names no known chip."""
    m = re.search(r"\bM(\d+)(?:\s+(Pro|Max|Ultra))?\b", brand)
    if not m or "Apple" not in brand:
        return None
    chip = f"M{m.group(1)}" + (f" {m.group(2)}" if m.group(2) else "")
    return chip if chip in APPLE_BANDWIDTH_GBPS else None


def _brand_string() -> str:
    if platform.system() != "Darwin":
        return ""
    try:
        return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def measure_bandwidth_gbps(size_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Best of several large copies (read + write counted), numpy and MLX, in GB/s.

    Best, not mean: interference from other processes only ever slows a copy down, and the bound
    must be an upper limit. Arrays far larger than any cache measure main memory.
    """
    import numpy as np

    n = size_bytes // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    rates = [2 * src.nbytes / best / GB]
    del src, dst
    try:
        import mlx.core as mx

        a = mx.ones((n,), dtype=mx.float32)
        mx.eval(a)
        best = math.inf
        for _ in range(repeats + 1):  # the first compiles the kernel
            t0 = time.perf_counter()
            b = a + 1
            mx.eval(b)
            mx.synchronize()
            best = min(best, time.perf_counter() - t0)
            del b
        rates.append(2 * n * 4 / best / GB)
    except Exception:  # MLX missing or out of memory: numpy's figure stands
        pass
    return max(rates)


@dataclass(frozen=True)
class Bandwidth:
    gbps: float
    source: str  # "apple M4 Pro (published)" or "measured"


def machine_bandwidth(*, refresh: bool = False) -> Bandwidth:
    """This machine's memory bandwidth: VLM_HARNESS_BANDWIDTH_GBPS if set, Apple's figure for a
    known chip, else measured once and cached per host (measuring takes a few seconds and is
    noisy on a busy machine; `refresh` measures again)."""
    override = os.environ.get("VLM_HARNESS_BANDWIDTH_GBPS")
    if override:
        return Bandwidth(float(override), "VLM_HARNESS_BANDWIDTH_GBPS")
    chip = apple_chip(_brand_string())
    if chip:
        return Bandwidth(APPLE_BANDWIDTH_GBPS[chip], f"apple {chip} (published)")
    path = cache_dir() / f"bandwidth-{platform.node() or 'host'}.json"
    if not refresh and path.exists():
        try:
            data = json.loads(path.read_text())
            return Bandwidth(float(data["gbps"]), "measured")
        except (ValueError, KeyError, OSError):
            pass
    gbps = measure_bandwidth_gbps()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"gbps": gbps, "measured_at": time.time()}) + "\n")
    return Bandwidth(gbps, "measured")


# -- bytes read per decoded token ----------------------------------------------------------------
@dataclass(frozen=True)
class DecodeCost:
    weight_bytes: int  # language-model weights read per token, lm_head included
    kv_bytes_per_position: int  # KV cache bytes per context position (all layers, keys and values)

    def bytes_per_token(self, context: float) -> float:
        return self.weight_bytes + self.kv_bytes_per_position * max(context, 0.0)


def decode_cost(ckpt: Path | str) -> DecodeCost:
    facts = checkpoint.inspect(ckpt)
    if facts is None:
        raise FileNotFoundError(f"no checkpoint at {ckpt}")
    return DecodeCost(facts.language_weight_bytes, facts.kv_bytes_per_token)


def decode_cost_from_config(config: Mapping[str, Any]) -> DecodeCost:
    return DecodeCost(checkpoint.language_weight_bytes_from_config(config), checkpoint.kv_bytes_per_token(config))


def decode_cost_or_none(path: str) -> DecodeCost | None:
    """The bound is a check on the figures, never a reason to lose them: unknown layouts give none."""
    try:
        return decode_cost(path) if checkpoint.resolve_local(path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the bound and what is judged against it --------------------------------------------------
def decode_bound_tps(bandwidth_gbps: float, bytes_per_token: float) -> float:
    if not bytes_per_token or bytes_per_token <= 0 or not bandwidth_gbps:
        return math.nan
    return bandwidth_gbps * GB / bytes_per_token


def decode_context(prompt_tokens: int | None, generated_tokens: int | None) -> float:
    """Mean KV length over the decoded tokens: the prompt plus half of what was generated."""
    return float(prompt_tokens or 0) + float(generated_tokens or 0) / 2


def bound_columns(cost: DecodeCost | None, bandwidth: Bandwidth | None, prompt_tokens: int | None,
                  generated_tokens: int | None) -> dict[str, Any]:
    """The schema columns bandwidth_gbps, bytes_per_token and decode_bound_tps for one row."""
    if cost is None or bandwidth is None:
        return {}
    bpt = cost.bytes_per_token(decode_context(prompt_tokens, generated_tokens))
    return {"bandwidth_gbps": bandwidth.gbps, "bytes_per_token": int(bpt),
            "decode_bound_tps": decode_bound_tps(bandwidth.gbps, bpt)}


def _num(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def bound_fraction(row: Mapping[str, Any]) -> float:
    """decode_tps as a fraction of the bandwidth bound (1.0 = at the physical limit)."""
    bound = _num(row, "decode_bound_tps")
    tps = _num(row, "decode_tps")
    return tps / bound if bound > 0 and not math.isnan(tps) else math.nan


def is_impossible(row: Mapping[str, Any]) -> bool:
    """A decode rate above what memory bandwidth allows: the figure is wrong, not the model fast."""
    return bound_fraction(row) > 1.0


def tps_per_gib(row: Mapping[str, Any]) -> float:
    """Decode tokens/s per GiB of peak memory (MLX's peak, else the process's)."""
    tps = _num(row, "decode_tps")
    peak = _num(row, "peak_mlx_bytes")
    if not peak > 0:
        peak = _num(row, "peak_rss_bytes")
    return tps / (peak / GIB) if peak > 0 and not math.isnan(tps) else math.nan
