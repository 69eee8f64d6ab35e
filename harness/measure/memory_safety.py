"""Refuse a model or a request that will not fit in memory, before anything is allocated.

A 7B model on a 8 GB Mac does not fail cleanly: it swaps for minutes or is killed by the OS.
So before loading, and before each request, we estimate what the step needs and compare it with
what the machine can give. The estimate is deliberately simple and errs high:

- weights: the checkpoint's *.safetensors sizes on disk (what MLX maps), else the model file's
  `weight_bytes`, else `params_b` × bits per weight;
- KV cache: 2 (keys and values) × layers × KV heads × head dim × context tokens × bytes per
  element, from config.json (the text config for VLMs); context = prompt + max_tokens;
- image activations (rough): per image, vision tokens × vision hidden size × 4 bytes × 16 (the
  layers' intermediates alive at once) plus one full attention matrix, vision tokens² × heads × 4
  bytes. Windowed attention (Qwen2.5-VL) needs less; the bound is an upper one on purpose.

Available memory: psutil's `available` RAM; on Apple Silicon also the Metal working-set limit
(`max_recommended_working_set_size`), minus what MLX already holds; on CUDA the device's free
memory as nvidia-smi reports it (what MLX holds is already counted there). A margin (default 10 %, at
least 512 MB; `VLM_HARNESS_MEMORY_MARGIN` as a fraction) is kept back for the OS and the process.
`VLM_HARNESS_MEMORY_CHECK=0` turns the check off.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import checkpoint

GB = 1e9
PATCH = 14  # pixels per vision patch side in all four seed architectures (Qwen: 14, merged 2×2 later)
DEFAULT_CONTEXT = 2048  # prompt tokens assumed at load time when nothing says more
TEXT_CHARS_PER_TOKEN = 3  # a generous tokens-per-character guess for the text part of a prompt


class WontFit(Exception):
    """The step needs more memory than the machine can give; the message says how much of each."""


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv_cache: int
    activations: int
    context_tokens: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations

    def describe(self) -> str:
        return (f"weights {self.weights / GB:.2f} GB + KV cache {self.kv_cache / GB:.2f} GB for {self.context_tokens:,} "
                f"tokens + image activations {self.activations / GB:.2f} GB = {self.total / GB:.2f} GB")


def enabled() -> bool:
    return os.environ.get("VLM_HARNESS_MEMORY_CHECK", "1").lower() not in ("0", "false", "no")


def _margin(budget: int) -> int:
    try:
        frac = float(os.environ.get("VLM_HARNESS_MEMORY_MARGIN", "0.1"))
    except ValueError:
        frac = 0.1
    return max(int(budget * frac), 512 * 1024 * 1024)


def available_bytes() -> tuple[int, str]:
    """What a new allocation can use now, and where that figure came from."""
    import psutil

    avail = int(psutil.virtual_memory().available)
    source = "available RAM"
    try:
        import mlx.core as mx

        if mx.default_device() == mx.gpu and getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
            # Weights and activations live in the GPU's memory, whatever the host has free.
            free = _cuda_free(mx)
            if free is not None:
                return free, "free CUDA device memory"
        if mx.metal.is_available():
            info = mx.metal.device_info() if hasattr(mx.metal, "device_info") else mx.device_info()
            limit = int(info.get("max_recommended_working_set_size", 0))
            if limit:
                metal = limit - int(mx.get_active_memory())
                if metal < avail:
                    avail, source = metal, "Metal working-set limit"
    except Exception:  # no MLX or no Metal: RAM is the limit
        pass
    return avail, source


# nvidia-smi takes tens of milliseconds: asked once synchronously (the first check, at load), then
# again in a background thread whenever the last answer is over this old, so no sample waits for
# it; in between, and while a refresh runs, the free figure follows MLX's own allocations (other
# processes' changes wait for the next answer).
CUDA_QUERY_EVERY_S = 5.0
_cuda_reading: tuple[float, int, int] | None = None  # (when asked, free bytes, MLX active bytes then)
_cuda_refresh: threading.Thread | None = None


def _ask_cuda_free(mx: Any) -> tuple[float, int, int] | None:
    from harness.measure.environment import nvidia_query

    when, active = time.monotonic(), int(mx.get_active_memory())
    q = nvidia_query("memory.free")
    return (when, int(float(q[0]) * 2**20), active) if q else None


def _refresh_cuda_free(mx: Any) -> None:
    global _cuda_reading
    reading = _ask_cuda_free(mx)
    if reading is not None:
        _cuda_reading = reading
    elif _cuda_reading is not None:  # no answer: keep the figure, ask again after the interval
        _cuda_reading = (time.monotonic(), *_cuda_reading[1:])


def _cuda_free(mx: Any) -> int | None:
    global _cuda_reading, _cuda_refresh
    if _cuda_reading is None:
        _cuda_reading = _ask_cuda_free(mx)
        if _cuda_reading is None:
            return None
    elif time.monotonic() - _cuda_reading[0] > CUDA_QUERY_EVERY_S and not (_cuda_refresh and _cuda_refresh.is_alive()):
        _cuda_refresh = threading.Thread(target=_refresh_cuda_free, args=(mx,), name="cuda-free", daemon=True)
        _cuda_refresh.start()
    _, free, active_then = _cuda_reading
    return free - (int(mx.get_active_memory()) - active_then)


def budget_bytes() -> tuple[int, str]:
    avail, source = available_bytes()
    return max(0, avail - _margin(avail)), source


def kv_bytes_per_token(config: dict[str, Any]) -> int:
    return checkpoint.kv_bytes_per_token(config)


def image_tokens(size: tuple[int, int]) -> int:
    w, h = size
    return math.ceil(w / PATCH) * math.ceil(h / PATCH)


def activation_bytes(config: dict[str, Any], sizes: list[tuple[int, int]]) -> int:
    vision = config.get("vision_config") or {}
    hidden = int(vision.get("hidden_size") or vision.get("embed_dim") or 1024)
    heads = int(vision.get("num_attention_heads") or vision.get("num_heads") or 16)
    worst = 0
    for size in sizes:  # images are encoded one after another: the largest one bounds the peak
        n = image_tokens(size)
        worst = max(worst, n * hidden * 4 * 16 + n * n * heads * 4)
    return worst


def weight_bytes(ckpt: Path | None, declared: int = 0, params_b: float = 0.0, quantization: str = "") -> int:
    """Weights on disk when the checkpoint is here, else the model file's own estimate."""
    facts = checkpoint.inspect(ckpt) if ckpt is not None else None
    if facts is not None and facts.weight_bytes:
        return facts.weight_bytes
    return checkpoint.declared_weight_bytes(declared, params_b, quantization)


def read_config(ckpt: Path | None) -> dict[str, Any]:
    return checkpoint.read_json(ckpt / "config.json") if ckpt is not None else {}


def prompt_tokens(prompt: str, image_sizes: list[tuple[int, int]]) -> int:
    return len(prompt) // TEXT_CHARS_PER_TOKEN + 16 + sum(image_tokens(s) for s in image_sizes)


# Reading what is free costs a /proc parse (about 0.2 ms after a generation, 0.2 % of a fixture's
# sample), paid before every request. A request needing under a quarter of what was free less
# than a second ago cannot be refused by a fresh reading unless other processes took three
# quarters of the machine in that second, so such a request reuses the last reading; any larger
# request, and any after a second, reads afresh.
RECHECK_SHARE = 0.25
RECHECK_EVERY_S = 1.0
_last_reading: tuple[float, int, str] | None = None  # (when, available bytes, source)


def check(estimate: Estimate, what: str) -> Estimate:
    """Raise WontFit when `estimate` exceeds the budget; return it otherwise."""
    global _last_reading
    if not enabled():
        return estimate
    now = time.monotonic()
    if _last_reading is not None and now - _last_reading[0] < RECHECK_EVERY_S:
        avail = _last_reading[1]
        if estimate.total <= RECHECK_SHARE * (avail - _margin(avail)):
            return estimate
    avail, source = available_bytes()
    _last_reading = (now, avail, source)
    budget = max(0, avail - _margin(avail))
    if estimate.total > budget:
        raise WontFit(
            f"{what} will not fit in memory: needs about {estimate.describe()}, but only {budget / GB:.2f} GB "
            f"can be given ({source}, less a safety margin); use a smaller model, quantization, max_tokens or "
            "image max_size, or set VLM_HARNESS_MEMORY_CHECK=0 to try anyway"
        )
    return estimate


def check_load(name: str, checkpoint: Path | None, *, declared_bytes: int = 0, params_b: float = 0.0,
               quantization: str = "", max_tokens: int = 0, image_size: int = 0) -> Estimate:
    """Before loading: weights, plus the cache and activations of one typical full request."""
    config = read_config(checkpoint)
    context = DEFAULT_CONTEXT + max_tokens
    sizes = [(image_size, image_size)] if image_size else []
    est = Estimate(
        weights=weight_bytes(checkpoint, declared_bytes, params_b, quantization),
        kv_cache=kv_bytes_per_token(config) * context,
        activations=activation_bytes(config, sizes) if config else 0,
        context_tokens=context,
    )
    return check(est, f"model {name}")


def check_request(name: str, config: dict[str, Any], prompt: str, image_sizes: list[tuple[int, int]],
                  max_tokens: int) -> Estimate:
    """Before one request, with the weights already loaded (so already out of `available`)."""
    context = prompt_tokens(prompt, image_sizes) + max_tokens
    est = Estimate(
        weights=0,
        kv_cache=kv_bytes_per_token(config) * context,
        activations=activation_bytes(config, image_sizes),
        context_tokens=context,
    )
    return check(est, f"this request to {name}")


# The accuracy mode's batch (harness/run/batched.py): decoded together, each sample keeps its own KV
# cache, so a batch needs the sum of its samples' caches; the vision tower still encodes one
# sample's images at a time, so activations are the largest single one. Beyond this many samples a
# batch gains little even on a GPU (the decode step becomes compute-bound) and a failure costs more.
MAX_BATCH = 64


def batch_estimate(config: dict[str, Any], requests: list[tuple[str, list[tuple[int, int]], int]]) -> Estimate:
    """What a batch of (prompt, image sizes, max_tokens) requests needs beyond the loaded weights."""
    context = sum(prompt_tokens(p, sizes) + m for p, sizes, m in requests)
    return Estimate(weights=0, kv_cache=kv_bytes_per_token(config) * context,
                    activations=max((activation_bytes(config, sizes) for _, sizes, _ in requests), default=0),
                    context_tokens=context)


def check_batch(name: str, config: dict[str, Any], requests: list[tuple[str, list[tuple[int, int]], int]]) -> Estimate:
    return check(batch_estimate(config, requests), f"a batch of {len(requests)} requests to {name}")


def batch_size(config: dict[str, Any], context_tokens: int, image_size: tuple[int, int] | None,
               cap: int = MAX_BATCH, share: float = 1.0) -> tuple[int, str]:
    """The largest batch the memory now free can hold, at most `cap`, when every sample may
    need `context_tokens` of KV cache (prompt, image tokens and max_tokens: take the largest
    sample's); with why, for the run's log. `share`: the part of the free memory this process
    may take (several workers of one model answering at once each take 1/N)."""
    if not enabled():
        return cap, f"the memory check is off: the cap of {cap}"
    budget, source = budget_bytes()
    if share < 1.0:
        budget, source = budget * share, f"{source}, a {share:.0%} share"
    per_sample = max(1, kv_bytes_per_token(config) * context_tokens)
    room = budget - activation_bytes(config, [image_size] if image_size else [])
    fits = max(1, int(room // per_sample))
    if fits >= cap:
        return cap, f"the cap of {cap} ({fits:,} would fit in {budget / GB:.1f} GB, {source})"
    return fits, (f"{fits} × {per_sample / 1e6:,.1f} MB of KV cache ({context_tokens:,} tokens each) fits in "
                  f"{budget / GB:.1f} GB ({source}, less a margin)")
