"""Hugging Face transformers on CPU torch: the "standard" build beside the MLX one, so both can be
put side by side in one report. An optional extra: `pip install 'vlm-harness[transformers]'`.

Same images (harness.images), the checkpoint's own chat template, greedy decoding as in the
mlx_vlm adapter; per-token times come from a streamer that generate() calls once per token.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from harness.adapters import ADAPTERS
from harness.core import checkpoint
from harness.core.records import LoadStats, Measurement, Sample
from harness.images import load_images, record_json
from harness.measure import memory_safety
from harness.measure.memory import peak_rss_bytes, reset_peak_rss
from harness.models import ModelError, ModelSpec


class _TokenClock:
    """A transformers streamer that only notes when each new token arrives."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: object) -> None:
        now = time.perf_counter() - self.t0
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        self.times.append(now)

    def end(self) -> None:
        pass


@ADAPTERS.register("transformers")
class TransformersAdapter:
    OPTIONS: dict = {}  # nothing beyond the model spec

    def __init__(self, spec: ModelSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.model = None
        self.processor = None

    def _checkpoint_dir(self) -> Path:
        path = Path(self.path).expanduser()
        if path.is_dir():
            return path
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self.path, local_files_only=True))
        except Exception:
            raise ModelError(f"transformers checkpoint {self.path!r} is neither a directory nor in the local HF cache; "
                             f"download it first (`hf download {self.path}`)") from None

    def load(self) -> LoadStats:
        t0 = time.perf_counter()
        try:
            import torch
            import transformers
        except ImportError:
            raise ModelError("adapter 'transformers' needs torch and transformers: "
                             "pip install 'vlm-harness[transformers]'") from None
        import_s = time.perf_counter() - t0
        ckpt = self._checkpoint_dir()
        s = self.spec
        memory_safety.check_load(s.name, ckpt, declared_bytes=s.weight_bytes, params_b=s.params_b,
                                 quantization=s.quantization, max_tokens=s.max_tokens, image_size=s.images.max_size)
        config = json.loads((ckpt / "config.json").read_text())
        reset_peak_rss()
        t1 = time.perf_counter()
        # float32 on the CPU: bf16 matmuls are emulated there and far slower.
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(ckpt, dtype=torch.float32).eval()
        try:  # the PIL image processors need no torchvision
            self.processor = transformers.AutoProcessor.from_pretrained(ckpt, backend="pil")
        except TypeError:
            self.processor = transformers.AutoProcessor.from_pretrained(ckpt)
        if not getattr(self.processor, "chat_template", None):
            # Seen when mlx_vlm, imported in the same process, has re-registered the processor class.
            template = ckpt / "chat_template.jinja"
            tokenizer = getattr(self.processor, "tokenizer", None)
            self.processor.chat_template = (template.read_text() if template.exists()
                                            else getattr(tokenizer, "chat_template", None))
        load_s = time.perf_counter() - t1
        self.config = config
        self._torch = torch
        facts = checkpoint.Checkpoint(Path(ckpt), config, checkpoint.read_json(Path(ckpt) / checkpoint.MANIFEST))
        return LoadStats(
            import_s=import_s, load_s=load_s, size_bytes=facts.size_bytes, content_hash=facts.content_hash,
            arch=facts.arch, quantization="fp32", random_weights=facts.random_weights, role=facts.role,
            peak_mlx_bytes=0, rss_bytes=peak_rss_bytes(), backend="cpu",
        )

    def _messages(self, sample: Sample, outputs: list[str]) -> list[dict]:
        questions = (sample.prompt, *sample.turns)[: len(outputs) + 1]
        first = [*({"type": "image"} for _ in sample.images), {"type": "text", "text": questions[0]}]
        messages: list[dict] = [{"role": "user", "content": first}]
        for answer, question in zip(outputs, questions[1:], strict=True):
            messages += [{"role": "assistant", "content": [{"type": "text", "text": answer}]},
                         {"role": "user", "content": [{"type": "text", "text": question}]}]
        return messages

    def _run(self, prompt: str, images: list, max_tokens: int) -> tuple[str, _TokenClock, int, float]:
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        n_prompt = int(inputs["input_ids"].shape[1])
        t0 = time.perf_counter()
        clock = _TokenClock(t0)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, streamer=clock)
        wall = time.perf_counter() - t0
        text = self.processor.batch_decode(out[:, n_prompt:], skip_special_tokens=True)[0]
        return text, clock, n_prompt, wall

    def generate(self, sample: Sample, max_tokens: int) -> Measurement:
        images, records = load_images(sample.images, self.spec.images)
        memory_safety.check_request(self.spec.name, self.config, sample.prompt, [im.size for im in images], max_tokens)
        outputs: list[str] = []
        for _ in sample.turns:  # earlier turns answered first, untimed, as the mlx_vlm adapter does
            prompt = self.processor.apply_chat_template(self._messages(sample, outputs), add_generation_prompt=True,
                                                        tokenize=False)
            outputs.append(self._run(prompt, images, max_tokens)[0].strip())
        prompt = self.processor.apply_chat_template(self._messages(sample, outputs), add_generation_prompt=True,
                                                    tokenize=False)
        reset_peak_rss()
        t_start = time.perf_counter()
        text, clock, n_prompt, wall = self._run(prompt, images, max_tokens)
        # The processor's work (resize, normalise, tokenise) is inside ttft, as in mlx_vlm.
        offset = clock.t0 - t_start
        times = [t + offset for t in clock.times]
        n = len(times)
        ttft = times[0] if times else math.nan
        return Measurement(
            text=text, prompt_tokens=n_prompt, generated_tokens=n, ttft_s=ttft,
            prefill_tps=n_prompt / ttft if times and ttft > 0 else math.nan,
            decode_tps=(n - 1) / (times[-1] - times[0]) if n >= 2 and times[-1] > times[0] else math.nan,
            wall_s=wall + offset, peak_mlx_bytes=0, peak_rss_bytes=peak_rss_bytes(),
            finish_reason="length" if n >= max_tokens else "stop", token_times=tuple(times),
            preprocessing=record_json(records, self.spec.images), turn_outputs=tuple(outputs),
        )

    def close(self) -> None:
        self.model = self.processor = None
