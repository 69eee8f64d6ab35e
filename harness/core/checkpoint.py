"""Everything the harness knows about a checkpoint on disk, in one place.

Where it is (a directory, or a hub id already in the local cache), its config and text config,
architecture, quantization, the manifest a harness-built checkpoint carries, content hash and
size, the bytes of its weights (all of them, and the language model's alone), and the KV-cache
bytes per token. The adapters, the bandwidth bound and the memory check all ask this module, so
two parts of the harness can never disagree about one checkpoint.

Reading is cheap: config and safetensors headers only, never a weight.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

MANIFEST = "fixture.json"  # written beside the weights by `fixtures build` and `train-reference`

# Bytes per element of the dtypes a config names, and of the ones a safetensors header names.
TORCH_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2,
                           "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

# Segments of a tensor name that belong to the vision side: run once per image at prefill, not
# once per decoded token.
VISION_PARTS = frozenset({
    "vision_tower", "vision_model", "visual", "multi_modal_projector", "connector", "vision_embed_tokens",
    "image_newline", "mm_projector", "img_projection", "audio_tower", "audio_model", "vision",
})

ROLES = ("fixture", "reference", "model")


def content_hash(directory: Path) -> str:
    """sha256 over every file's relative path and bytes, the manifest excluded."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def dir_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def resolve_local(path: str | Path) -> Path | None:
    """A checkpoint directory, or a hub id already in the local cache; None otherwise (never a
    download: deciding whether to fetch is the adapter's job)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    if p.is_absolute() or str(path).startswith("."):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path), local_files_only=True))
    except Exception:
        return None


def text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language model's settings: Qwen2.5-VL keeps them at the top level, most VLMs nest them
    under text_config (llm_config in some); nested keys win."""
    out = {k: v for k, v in config.items() if not isinstance(v, dict)}
    out.update(config.get("text_config") or config.get("llm_config") or {})
    return out


def quantization(config: Mapping[str, Any]) -> str:
    """'4bit' for an MLX-quantized checkpoint, else the stored dtype ('bf16', 'fp16', 'fp32')."""
    q = config.get("quantization") or config.get("quantization_config")
    if isinstance(q, dict) and q.get("bits"):
        return f"{q['bits']}bit"
    text = config.get("text_config")
    dtype = config.get("torch_dtype") or (text.get("torch_dtype") if isinstance(text, dict) else None) or "unknown"
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype), str(dtype))


def kv_bytes_per_token(config: Mapping[str, Any], dtype_bytes: int | None = None) -> int:
    """KV-cache bytes one context position holds: keys and values, every layer, every KV head.

    Quantized checkpoints compute and cache in their activation dtype: 2 bytes unless the config
    says float32.
    """
    t = text_config(config)
    layers = int(t.get("num_hidden_layers") or t.get("n_layers") or 0)
    heads = int(t.get("num_attention_heads") or 1)
    kv_heads = int(t.get("num_key_value_heads") or heads)
    head_dim = int(t.get("head_dim") or int(t.get("hidden_size") or 0) // heads)
    if dtype_bytes is None:
        dtype_bytes = TORCH_DTYPE_BYTES.get(str(t.get("torch_dtype") or config.get("torch_dtype")), 2)
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def safetensors_header(path: Path) -> dict[str, Any]:
    with Path(path).open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def is_vision_tensor(name: str) -> bool:
    return any(part in VISION_PARTS for part in name.split("."))


def language_weight_bytes(ckpt: Path) -> int:
    """Bytes of the language model's weights as stored, the ones every decoded token reads:
    vision tower and projector excluded; the embedding table only when it doubles as lm_head."""
    files = sorted(Path(ckpt).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{ckpt} has no .safetensors files: cannot size its weights")
    embed = lm = 0
    has_lm_head = False
    for f in files:
        for name, info in safetensors_header(f).items():
            if name == "__metadata__" or is_vision_tensor(name):
                continue
            start, end = info["data_offsets"]
            if "embed_tokens" in name or name.split(".")[-2:-1] == ["wte"]:
                embed += end - start
                continue
            has_lm_head |= "lm_head" in name
            lm += end - start
    return lm + (0 if has_lm_head else embed)


def language_weight_bytes_from_config(config: Mapping[str, Any]) -> int:
    """The same figure from a config alone (a dense decoder: attention + gated MLP + lm_head), for
    checking a claim about a model that is not on disk."""
    t = text_config(config)
    h = int(t["hidden_size"])
    inter = int(t["intermediate_size"])
    layers = int(t["num_hidden_layers"])
    heads = int(t["num_attention_heads"])
    kv_heads = int(t.get("num_key_value_heads") or heads)
    head_dim = int(t.get("head_dim") or h // heads)
    vocab = int(t["vocab_size"])
    per_layer = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2 + 3 * h * inter
    matrix_params = layers * per_layer + vocab * h  # lm_head, tied or not, is read per token
    norm_params = (2 * layers + 1) * h
    q = config.get("quantization") or {}
    dense = TORCH_DTYPE_BYTES.get(str(t.get("torch_dtype") or config.get("torch_dtype")), 2)
    # packed weights plus one 16-bit scale and bias per group
    per_param = q["bits"] / 8 + 2 * 2 / int(q.get("group_size", 64)) if q.get("bits") else dense
    return int(matrix_params * per_param + norm_params * dense)


def declared_weight_bytes(declared: int = 0, params_b: float = 0.0, quantization: str = "") -> int:
    """A model file's own estimate, for a checkpoint not on disk yet: `weight_bytes`, else
    `params_b` × bits per weight."""
    if declared:
        return declared
    if params_b:
        bits = 4 if "4" in quantization else 8 if "8" in quantization else 16
        return int(params_b * 1e9 * bits / 8)
    return 0


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint directory, read lazily: each fact is computed on first use."""

    path: Path
    config: dict[str, Any] = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)

    @property
    def arch(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def text_config(self) -> dict[str, Any]:
        return text_config(self.config)

    @property
    def quantization(self) -> str:
        return quantization(self.config)

    @property
    def random_weights(self) -> bool:
        return bool(self.manifest.get("random_weights", False))

    @property
    def role(self) -> str:
        """'fixture' (random weights: speed only), 'reference' (trained by the harness: a canary
        of the pipeline) or 'model' (anything else, a real model)."""
        if self.random_weights:
            return "fixture"
        return "reference" if self.manifest.get("trained") else "model"

    @cached_property
    def content_hash(self) -> str:
        return self.manifest.get("content_hash") or content_hash(self.path)

    @cached_property
    def size_bytes(self) -> int:
        return dir_size(self.path)

    @cached_property
    def weight_bytes(self) -> int:
        """Every weight file (what loading maps into memory)."""
        return sum(p.stat().st_size for p in self.path.glob("*.safetensors"))

    @cached_property
    def language_weight_bytes(self) -> int:
        return language_weight_bytes(self.path)

    @property
    def kv_bytes_per_token(self) -> int:
        return kv_bytes_per_token(self.config)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def inspect(path: str | Path) -> Checkpoint | None:
    """The checkpoint at a directory or cached hub id; None when there is none on this machine."""
    ckpt = resolve_local(path)
    if ckpt is None:
        return None
    return Checkpoint(ckpt, read_json(ckpt / "config.json"), read_json(ckpt / MANIFEST))
