"""Turning what a worker reports into results-schema columns: one place for each mapping, used
by every workload's rows (suite runs, speed sweeps)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from harness.core.records import LoadStats, Measurement


def load_columns(stats: LoadStats, env: dict[str, Any]) -> dict[str, Any]:
    """Columns every row of one model load repeats: the environment, load timings, checkpoint."""
    d = asdict(stats)
    return {
        **env,
        "import_s": d["import_s"], "load_s": d["load_s"], "model_size_bytes": d["size_bytes"],
        "model_hash": d["content_hash"], "arch": d["arch"], "quantization": d["quantization"],
        "random_weights": d["random_weights"], "model_role": d["role"],
        "load_peak_mlx_bytes": d["peak_mlx_bytes"], "backend": d["backend"], **stats.columns(),
    }


def measurement_columns(m: Measurement) -> dict[str, Any]:
    """The columns one generation fills."""
    return {
        "output": m.text, "prompt_tokens": m.prompt_tokens, "generated_tokens": m.generated_tokens,
        "ttft_s": m.ttft_s, "prefill_tps": m.prefill_tps, "decode_tps": m.decode_tps, "wall_s": m.wall_s,
        "itl_s": [b - a for a, b in zip(m.token_times, m.token_times[1:], strict=False)] or None,
        "peak_mlx_bytes": m.peak_mlx_bytes, "peak_rss_bytes": m.peak_rss_bytes, "finish_reason": m.finish_reason,
        "cached_tokens": m.cached_tokens, "preprocessing": m.preprocessing or None,
        "turn_outputs": list(m.turn_outputs) or None,
        "server_prompt_tokens": m.server_prompt_tokens, "server_completion_tokens": m.server_completion_tokens,
        "server_prefill_s": m.server_prefill_s, "server_prefill_tps": m.server_prefill_tps,
        "server_decode_tps": m.server_decode_tps, "inputs_s": m.inputs_s, **m.columns(),
    }
