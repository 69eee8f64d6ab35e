"""The results schema: every column, its type and meaning, in one place, versioned.

One row is one measured generation (model × suite × sample × repetition), or one error /
unsupported / skipped record in its place. Run-level facts (environment, load time, checkpoint
hash) are repeated on every row so that any parquet file, or a concatenation of files from
many machines, is self-describing; parquet's dictionary encoding makes the repetition cheap.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 5
# v2: keywords, choices, metric_version and benchmark (scoring is a pure function of a stored row, so a
# metric fix is a rescore), traceback, model_role, inputs_s, harness_s and parent_cpu_s.
# v3: round and round_position (speed is measured in counterbalanced rounds; comparisons pair
# rounds); the accuracy mode and the response cache: mode, batch_size, batch_fallback, pass_s,
# pass_samples, pass_generated_tokens, cache_hit, answer_check, answer_check_output; shard,
# machine_id and node (results from many shards, machines and fleet nodes merge into one set).
# v4: itl_s, each generation's inter-token latencies; lockstep (a round's models measured sample by sample,
# alternating, so the verdicts can pair samples).
# v5: pass_worker (the accuracy mode answers one model's samples with several workers at once on a
# CPU; each worker's pass has its own clock); env_cpu_affinity (the cores the measuring process may
# use: taskset or a container's cpuset changes CPU figures).
# Older files are read through harness/results/migrations.py.

STATUSES = ("ok", "error", "unsupported", "skipped")

# name, type, unit / meaning
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("schema_version", pa.int32(), "version of this schema"),
    ("run_id", pa.string(), "one invocation of the harness"),
    ("recorded_at", pa.timestamp("us", tz="UTC"), "when the row was written"),
    # what was measured
    ("model", pa.string(), "model name as the user gave it"),
    ("adapter", pa.string(), "backend that ran it (mlx_vlm, ...)"),
    ("model_source", pa.string(), "path or hub id loaded"),
    ("arch", pa.string(), "checkpoint model_type"),
    ("quantization", pa.string(), "4bit, bf16, fp16, ..."),
    ("random_weights", pa.bool_(), "a random-weight fixture: speed only, never quality"),
    ("model_role", pa.string(), "fixture (random weights: speed only) | reference (the harness's trained canary) | model"),
    ("model_hash", pa.string(), "sha256 of the checkpoint's files"),
    ("model_size_bytes", pa.int64(), "checkpoint size on disk, bytes"),
    ("suite", pa.string(), "suite name"),
    ("suite_kind", pa.string(), "natural or synthetic"),
    ("suite_hash", pa.string(), "sha256 over everything that defines the suite's samples"),
    ("benchmark", pa.string(), "published benchmark-level figures the suite reports (harness/metrics/benchmarks.py), comma-separated"),
    ("sample_id", pa.string(), "sample id within the suite"),
    ("category", pa.string(), "what the question probes"),
    ("repeat", pa.int32(), "repetition index, 0-based"),
    ("round", pa.int32(), "counterbalanced round the sample was measured in, 0-based: every model runs once per "
                          "round, in its own fresh worker, in an order rotated from round to round"),
    ("round_position", pa.int32(), "the model's place in its round's order, 0-based (lockstep: in this sample's turn)"),
    ("lockstep", pa.bool_(), "measured in lockstep: the round's models held loaded together and their samples "
                             "alternated, so this sample's answers from every model were taken moments apart"),
    ("status", pa.string(), "ok | error | unsupported | skipped"),
    ("error", pa.string(), "reason when status is not ok"),
    ("traceback", pa.string(), "the worker's Python traceback, or a native crash's stack, when there is one"),
    # the exchange
    ("prompt", pa.string(), "question text sent"),
    ("images", pa.list_(pa.string()), "image files sent"),
    ("answers", pa.list_(pa.string()), "accepted answers"),
    ("output", pa.string(), "model text (multi-turn: the answer to the last turn, the one scored)"),
    ("turns", pa.list_(pa.string()), "multi-turn: follow-up questions sent after prompt, in order"),
    ("turn_outputs", pa.list_(pa.string()), "multi-turn: the model's answers to the turns before the last"),
    ("keywords", pa.list_(pa.string()), "keywords a caption is scored on (keyword_recall)"),
    ("choices", pa.list_(pa.string()), "multiple choice: option texts in letter order"),
    ("metric", pa.string(), "metric name"),
    ("metric_version", pa.int32(), "version of the metric's rule that computed score"),
    ("score", pa.float64(), "metric value for this sample, 0..1"),
    ("max_tokens", pa.int32(), "generation limit"),
    ("finish_reason", pa.string(), "stop | length"),
    # timings and memory
    ("import_s", pa.float64(), "importing the backend, seconds"),
    ("load_s", pa.float64(), "loading the model cold in a fresh process, seconds"),
    ("prompt_tokens", pa.int32(), "prompt tokens, image tokens included"),
    ("generated_tokens", pa.int32(), "tokens generated"),
    ("ttft_s", pa.float64(), "call to first token, seconds (preprocessing included)"),
    ("prefill_tps", pa.float64(), "prompt tokens per second of prefill"),
    ("decode_tps", pa.float64(), "generated tokens after the first per second"),
    ("itl_s", pa.list_(pa.float64()), "inter-token latencies, seconds: the gaps between consecutive generated "
                                      "tokens in order (vLLM's ITL); decode_tps is their count over their sum"),
    ("wall_s", pa.float64(), "whole generation, seconds"),
    ("peak_mlx_bytes", pa.int64(), "peak MLX allocation during this generation, bytes"),
    ("peak_rss_bytes", pa.int64(), "peak process resident memory during this generation, bytes"),
    ("load_peak_mlx_bytes", pa.int64(), "MLX memory held after loading, bytes"),
    ("inputs_s", pa.float64(), "preparing the inputs any caller must: decoding images, the chat template, seconds"),
    ("harness_s", pa.float64(), "the worker's own time on this sample beyond the model's calls and inputs_s "
                                "(image and memory checks, bookkeeping, hand-off), seconds"),
    ("parent_cpu_s", pa.float64(), "the supervising process's CPU time to score and store this row, seconds"),
    ("preprocessing", pa.string(), "JSON: what was done to each image (format, mode, EXIF, resize) and the limits"),
    # what a server reported about itself (adapter openai); the columns above are client-measured
    ("server_prompt_tokens", pa.int32(), "prompt tokens the server reported (usage)"),
    ("server_completion_tokens", pa.int32(), "generated tokens the server reported (usage)"),
    ("server_prefill_s", pa.float64(), "prompt processing time the server reported, seconds"),
    ("server_prefill_tps", pa.float64(), "prompt tokens per second the server reported"),
    ("server_decode_tps", pa.float64(), "generated tokens per second the server reported"),
    ("cached_tokens", pa.int32(), "prompt tokens reused from a prompt cache, not prefilled again (--reuse-prefix)"),
    ("image_tokens", pa.int32(), "image tokens in the prompt (speed-img sweep)"),
    # the physical limit (harness/measure/bandwidth.py)
    ("bandwidth_gbps", pa.float64(), "memory bandwidth of the machine, GB/s (Apple's published figure or measured)"),
    ("bytes_per_token", pa.int64(), "bytes read per decoded token: language-model weights as stored + KV cache, bytes"),
    ("decode_bound_tps", pa.float64(), "bandwidth / bytes_per_token: no decode can be faster, tokens/s"),
    # device, bound sources, timing split, load cache and machine state (harness/measure/bandwidth.py,
    # environment.py, machine_state.py, page_cache.py, adapters)
    ("bandwidth_measured_gbps", pa.float64(), "read bandwidth measured on the device (best of the probe's methods), GB/s"),
    ("bandwidth_datasheet_gbps", pa.float64(), "the vendor's datasheet bandwidth for the device's name, GB/s"),
    ("bandwidth_source", pa.string(), "which figure bandwidth_gbps is: measured | datasheet | VLM_HARNESS_BANDWIDTH_GBPS"),
    ("preprocess_s", pa.float64(), "image preprocessing and tokenisation (the processor call), seconds"),
    ("vision_s", pa.float64(), "vision tower and projector over the images, synchronised, seconds"),
    ("prefill_s", pa.float64(), "language-model prefill over the prompt's embeddings to the first token, seconds"),
    ("load_cache", pa.string(), "cold: the checkpoint's pages were dropped from the page cache before load_s; warm: not"),
    ("load_warm_s", pa.float64(), "a second load with the pages cached, seconds (when cold and warm were both asked)"),
    ("contended", pa.bool_(), "the sample ran under contention (other processes' CPU load) or throttling"),
    ("machine_state", pa.string(), "JSON: other processes' CPU %, load average, CPU/GPU clocks, power, thermal state"),
    # v3: how the answer was produced (harness/run/batched.py, harness/run/response_cache.py)
    ("mode", pa.string(), "latency (one request at a time, timed) | accuracy (batched or concurrent: "
                          "timings are the pass's throughput, never per-request latency)"),
    ("batch_size", pa.int32(), "samples generated together with this one, itself included (1: alone)"),
    ("batch_fallback", pa.string(), "accuracy mode: why this sample was generated alone"),
    ("pass_s", pa.float64(), "accuracy mode: seconds of the model's generating pass when this row's batch "
                             "finished (the pass's largest value spans the whole pass)"),
    ("pass_samples", pa.int32(), "accuracy mode: samples the pass had generated when this row's batch finished"),
    ("pass_generated_tokens", pa.int64(), "accuracy mode: tokens the pass had generated when this row's batch finished"),
    ("pass_worker", pa.int32(), "accuracy mode: which of the model's workers answering at once generated this row "
                                "(1..N, each with its own pass clock); null: one worker"),
    ("cache_hit", pa.bool_(), "the answer came from the response cache, not generated in this run"),
    ("answer_check", pa.string(), "same | differs: this answer against another path's for the same request "
                                  "(the one-at-a-time path's, or the cached one)"),
    ("answer_check_output", pa.string(), "the other path's answer, when it differs"),
    ("env_backend", pa.string(), "cpu | metal | cuda"),
    ("env_device_name", pa.string(), "the device MLX computed on, as its maker names it"),
    ("env_device_memory_bytes", pa.int64(), "the device's memory (unified memory or RAM on metal and cpu), bytes"),
    ("env_gpu_driver", pa.string(), "GPU driver version (cuda)"),
    ("env_cuda", pa.string(), "CUDA version the driver supports (cuda)"),
    # environment
    ("backend", pa.string(), "device MLX computed on: cpu, metal or cuda"),
    ("env_os", pa.string(), ""),
    ("env_machine", pa.string(), ""),
    ("env_cpu", pa.string(), ""),
    ("env_cores", pa.int32(), ""),
    ("env_ram_bytes", pa.int64(), ""),
    ("env_python", pa.string(), ""),
    ("env_mlx", pa.string(), ""),
    ("env_mlx_vlm", pa.string(), ""),
    ("env_device", pa.string(), ""),
    ("env_metal", pa.bool_(), ""),
    ("env_blas", pa.string(), "BLAS libraries mapped into the measuring process"),
    ("env_cpu_affinity", pa.string(), "the cores the measuring process may run on, e.g. 0-1 (taskset, a "
                                      "container's cpuset): CPU figures depend on them"),
    ("env_host", pa.string(), ""),
    ("machine_id", pa.string(), "stable id of the machine that measured (harness/measure/environment.py): speed is grouped by it, "
                                "never pooled across machines"),
    ("shard", pa.string(), "K/N: the part of the plan this run measured (harness/run/shards.py); null for a whole plan"),
    ("node", pa.string(), "the fleet node that measured the row (a Ray node id); null for a local run"),
    ("harness_version", pa.string(), ""),
    ("harness_git", pa.string(), ""),
]

SCHEMA = pa.schema([pa.field(n, t) for n, t, _ in COLUMNS], metadata={"vlm_harness_schema": str(SCHEMA_VERSION)})
NAMES = [n for n, _, _ in COLUMNS]
TEXT_LISTS = tuple(n for n, t, _ in COLUMNS if t == pa.list_(pa.string()))
DESCRIPTIONS = {n: d for n, _, d in COLUMNS}

# A sample is measured once per (model, suite, suite_hash, sample, repeat): the resume key.
KEY = ("model", "suite", "suite_hash", "sample_id", "repeat")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Check a row against the schema: unknown names are a bug, missing ones are null."""
    unknown = set(row) - set(NAMES)
    if unknown:
        raise KeyError(f"columns not in results schema v{SCHEMA_VERSION}: {sorted(unknown)}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    out = {n: _clean(row.get(n)) for n in NAMES}
    for n in TEXT_LISTS:  # a bare string is one item (harness.core.records.text_items): Arrow would split it
        if isinstance(out[n], str):
            out[n] = [out[n]]
    out["schema_version"] = SCHEMA_VERSION
    return out


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([normalise(r) for r in rows], schema=SCHEMA)
