"""In-process mlx-vlm: the default adapter, and the one the offline fixtures run through."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from harness.adapters import ADAPTERS, Unsupported
from harness.fixtures.common import MANIFEST, content_hash, dir_size
from harness.memory import peak_rss_bytes, reset_peak_rss
from harness.models import ModelError, ModelSpec
from harness.records import LoadStats, Measurement, Sample

# mlx_vlm raises this for architectures whose chat formatting takes one image only.
_SINGLE_IMAGE = {"llava_next"}


class ImageError(ValueError):
    pass


def check_images(paths: tuple[str, ...]) -> None:
    from PIL import Image

    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
        except FileNotFoundError:
            raise ImageError(f"image {p} does not exist") from None
        except Exception as e:  # PIL raises many types for bad files
            raise ImageError(f"image {p} cannot be read ({type(e).__name__}: {e}); replace or remove it") from None


def _quantization(config: dict) -> str:
    q = config.get("quantization") or config.get("quantization_config")
    if isinstance(q, dict) and q.get("bits"):
        return f"{q['bits']}bit"
    dtype = config.get("torch_dtype") or config.get("text_config", {}).get("torch_dtype") or "unknown"
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype), str(dtype))


@ADAPTERS.register("mlx_vlm")
class MlxVlmAdapter:
    def __init__(self, spec: ModelSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.model = None
        self.processor = None

    def _checkpoint_dir(self) -> Path:
        path = Path(self.path)
        if path.is_dir():
            return path
        if path.is_absolute() or self.path.startswith("."):
            raise ModelError(f"checkpoint directory {path} does not exist")
        from huggingface_hub import snapshot_download

        try:  # a hub id already in the local cache loads without a hub
            return Path(snapshot_download(self.path, local_files_only=True))
        except Exception:
            pass
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            raise ModelError(
                f"model {self.path!r} is not in the local cache and HF_HUB_OFFLINE is set; "
                f"download it where a hub is reachable (`hf download {self.path}`) or pass a checkpoint directory"
            )
        try:  # downloaded before the load timer starts: load_s never includes the network
            return Path(snapshot_download(self.path))
        except Exception as e:
            raise ModelError(
                f"model {self.path!r} is not on disk and could not be downloaded ({type(e).__name__}); "
                "check the id and your network, or pass a local checkpoint directory"
            ) from None

    def load(self) -> LoadStats:
        t0 = time.perf_counter()
        import mlx.core as mx
        import mlx_vlm
        from mlx_vlm.utils import get_model_and_args

        import_s = time.perf_counter() - t0
        ckpt = self._checkpoint_dir()
        config_path = ckpt / "config.json"
        if not config_path.exists():
            raise ModelError(f"{ckpt} has no config.json: not a model checkpoint")
        config = json.loads(config_path.read_text())
        try:
            get_model_and_args(dict(config), ckpt)
        except (ValueError, KeyError) as e:
            raise ModelError(
                f"{config_path}: model_type {config.get('model_type')!r} is not an architecture mlx-vlm "
                f"{mlx_vlm.__version__} has ({e}); upgrade mlx-vlm or fix model_type"
            ) from None
        mx.reset_peak_memory()
        t1 = time.perf_counter()
        self.model, self.processor = mlx_vlm.load(str(ckpt))  # lazy=False: weights are evaluated
        mx.synchronize()
        load_s = time.perf_counter() - t1
        self.config = config
        manifest_path = ckpt / MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        self.arch = config.get("model_type", "")
        return LoadStats(
            import_s=import_s,
            load_s=load_s,
            size_bytes=dir_size(ckpt),
            content_hash=manifest.get("content_hash") or content_hash(ckpt),
            arch=self.arch,
            quantization=_quantization(config),
            random_weights=bool(manifest.get("random_weights", False)),
            peak_mlx_bytes=int(mx.get_peak_memory()),
            rss_bytes=peak_rss_bytes(),
            backend="gpu" if mx.default_device() == mx.gpu else "cpu",
        )

    def generate(self, sample: Sample, max_tokens: int) -> Measurement:
        import mlx.core as mx
        from mlx_vlm import apply_chat_template, stream_generate

        if len(sample.images) > 1 and self.arch in _SINGLE_IMAGE:
            raise Unsupported(f"{self.arch} takes one image per prompt; this sample has {len(sample.images)}")
        check_images(sample.images)
        prompt = apply_chat_template(self.processor, self.model.config, sample.prompt, num_images=len(sample.images))
        mx.synchronize()
        mx.reset_peak_memory()
        reset_peak_rss()
        times: list[float] = []
        pieces: list[str] = []
        last = None
        seen = 0
        t0 = time.perf_counter()
        for r in stream_generate(
            self.model, self.processor, prompt, image=list(sample.images),
            max_tokens=max_tokens, temperature=self.spec.temperature,
        ):
            now = time.perf_counter()
            pieces.append(r.text)
            # The last result repeats the final count with the detokenizer's tail: not a token.
            if r.generation_tokens > seen:
                seen = r.generation_tokens
                times.append(now - t0)
            last = r
        mx.synchronize()
        wall = time.perf_counter() - t0
        n = last.generation_tokens if last else 0
        decode = (n - 1) / (times[-1] - times[0]) if n >= 2 and times[-1] > times[0] else math.nan
        return Measurement(
            text="".join(pieces),
            prompt_tokens=last.prompt_tokens if last else 0,
            generated_tokens=n,
            ttft_s=times[0] if times else math.nan,
            prefill_tps=last.prompt_tps if last else math.nan,
            decode_tps=decode,
            wall_s=wall,
            peak_mlx_bytes=int(mx.get_peak_memory()),
            peak_rss_bytes=peak_rss_bytes(),
            finish_reason=(last.finish_reason or "length") if last else "",
            token_times=tuple(times),
        )

    def close(self) -> None:
        self.model = self.processor = None
