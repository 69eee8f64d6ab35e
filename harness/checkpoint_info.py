"""What a checkpoint's config.json says about it, shared by every adapter that reads one."""

from __future__ import annotations

from typing import Any


def quantization(config: dict[str, Any]) -> str:
    """"4bit", "bf16", "fp16", "fp32" ... from a Hugging Face / MLX config.json."""
    q = config.get("quantization") or config.get("quantization_config")
    if isinstance(q, dict) and q.get("bits"):
        return f"{q['bits']}bit"
    text = config.get("text_config")
    dtype = config.get("torch_dtype") or (text.get("torch_dtype") if isinstance(text, dict) else None) or "unknown"
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype), str(dtype))
