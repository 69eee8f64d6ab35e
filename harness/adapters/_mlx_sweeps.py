"""The measurements behind `vlm-harness speed`, run inside the MLX adapter (harness/run/speed.py
plans the tests and builds the table; this module touches the model).

- `pp<N>`: prefill of N random token ids (seeded, special tokens excluded), tokens/s.
- `tg<N>`: exactly N decoded tokens after a short random prompt, tokens/s, through mlx_vlm's
  public `generate_step`, which has no stop check, so an end-of-sequence token cannot cut a
  run short.
- `img<S>`: prefill of a chat prompt with one S×S image (seeded noise), from the call to the
  first token, vision encoder included, preprocessing not; its image tokens are counted from the
  prepared input ids.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.core.workloads import IMAGE_QUESTION, TG_PROMPT_TOKENS


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


def timed_tokens(model: Any, input_ids: Any, n_tokens: int) -> list[float]:
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
    times = timed_tokens(model, ids, 1)
    return {"prompt_tokens": length, "generated_tokens": 1, "ttft_s": times[0], "prefill_tps": length / times[0],
            "wall_s": times[-1], "peak_mlx_bytes": int(mx.get_peak_memory())}


def measure_tg(model: Any, processor: Any, n: int, seed: int) -> dict[str, Any]:
    import mlx.core as mx

    ids = random_prompt(model, processor, TG_PROMPT_TOKENS, seed)
    mx.reset_peak_memory()
    times = timed_tokens(model, ids, n + 1)  # the first token ends prefill; n are decoded
    if len(times) != n + 1:
        raise RuntimeError(f"tg{n}: generated {len(times) - 1} tokens, expected exactly {n}")
    return {"prompt_tokens": TG_PROMPT_TOKENS, "generated_tokens": n, "ttft_s": times[0],
            "decode_tps": n / (times[-1] - times[0]), "wall_s": times[-1], "peak_mlx_bytes": int(mx.get_peak_memory())}


def noise_image(size: int, seed: int, directory: Path) -> Path:
    import numpy as np
    from PIL import Image

    path = directory / f"speed-noise-{size}-{seed}.png"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # shared by every run: whole files only
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    return path


def measure_img(model: Any, processor: Any, size: int, seed: int, directory: Path) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np
    from mlx_vlm import apply_chat_template, stream_generate
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    # The preparation stream_generate would do, done here (untimed, through mlx_vlm's public
    # prepare_inputs) so the image tokens can be counted and the timed call starts at the model.
    image = str(noise_image(size, seed, directory))
    prompt = apply_chat_template(processor, model.config, IMAGE_QUESTION, num_images=1)
    inputs = prepare_inputs(processor, images=[image], prompts=prompt,
                            image_token_index=getattr(model.config, "image_token_index", None),
                            add_special_tokens=should_add_special_tokens(model.config.model_type, processor))
    ids, pixels, mask = inputs.get("input_ids"), inputs.get("pixel_values"), inputs.get("attention_mask")
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
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


def measure(model: Any, processor: Any, kind: str, value: int, seed: int, directory: Path) -> dict[str, Any]:
    if kind == "pp":
        return measure_pp(model, processor, value, seed)
    if kind == "tg":
        return measure_tg(model, processor, value, seed)
    if kind == "img":
        return measure_img(model, processor, value, seed, directory)
    raise ValueError(f"unknown speed test {kind!r}: pp, tg or img")
