"""In-process mlx-vlm: the default adapter, and the one the offline fixtures run through."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from harness.adapters import ADAPTERS, Unsupported
from harness.adapters._planted import Ballast
from harness.core import checkpoint
from harness.core.records import LoadStats, Measurement, Sample
from harness.images import ImageError, load_images, record_json  # noqa: F401  (ImageError: re-exported)
from harness.measure import memory_safety
from harness.measure.machine_state import SampleMonitor
from harness.measure.memory import peak_rss_bytes, reset_peak_rss
from harness.models import ModelError, ModelSpec, Option

# mlx_vlm raises this for architectures whose chat formatting takes one image only.
_SINGLE_IMAGE = {"llava_next"}
_IMAGE_AFTER_TEXT = {"llava_next"}
CPU_BATCH_CAP = 16  # the accuracy mode's largest batch on MLX's CPU backend (batch_capacity)


class _TtftSplit:
    """Splits the measured time to first token into preprocessing, vision tower and prefill.

    Inside the timed generation, not in a second pass: the three parts then partition the very
    TTFT the row reports (a second pass would time a different run, and on a busy machine two
    runs differ by more than the 2 % the parts must add up to). mlx_vlm's generation calls the
    processor (preprocessing and tokenisation), then `model.get_input_embeddings` (the vision
    tower, projector and merge into the text embeddings), then the language model over those
    embeddings (prefill) up to the first token. For the call's duration the model's
    `get_input_embeddings` is wrapped: the wrapper notes the time it is entered, evaluates the
    embeddings and synchronises, and notes the time again. So preprocess = entry - call,
    vision = the wrapped call, prefill = first token - its end. The one change to what is timed
    is that synchronisation between the vision tower and the prefill, which MLX would otherwise
    schedule as one lazy graph: one extra host-device round trip, well under a millisecond.
    """

    def __init__(self, model: object) -> None:
        self.model = model
        self.entered: float | None = None
        self.left: float | None = None
        self.image_tokens: int | None = None

    def __enter__(self) -> _TtftSplit:
        inner = getattr(self.model, "get_input_embeddings", None)
        if inner is None:
            return self

        def timed(input_ids, pixel_values=None, *args, **kwargs):  # noqa: ANN001, ANN202
            if self.entered is not None:  # only the prompt's embedding is the vision step
                return inner(input_ids, pixel_values, *args, **kwargs)
            import mlx.core as mx
            import numpy as np

            self.entered = time.perf_counter()
            out = inner(input_ids, pixel_values, *args, **kwargs)
            embeds = getattr(out, "inputs_embeds", out)
            mx.eval(embeds)
            mx.synchronize()
            self.left = time.perf_counter()
            self.image_tokens = _image_tokens(self.model, np.array(input_ids), embeds.shape[1], pixel_values)
            return out

        object.__setattr__(self.model, "get_input_embeddings", timed)  # shadows the method, this instance only
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.__dict__.pop("get_input_embeddings", None)

    def parts(self, t0: float, ttft: float) -> dict[str, float | int | None]:
        if self.entered is None or self.left is None or math.isnan(ttft):
            return {}
        return {"preprocess_s": self.entered - t0, "vision_s": self.left - self.entered,
                "prefill_s": ttft - (self.left - t0), "image_tokens": self.image_tokens}


def _image_tokens(model: object, ids: object, embedded: int, pixel_values: object) -> int:
    """Image positions in the prompt's embeddings: marked ids (the image token, or negative ids
    as phi3_v writes) plus any the model expanded from one marker itself (llava_next)."""
    import numpy as np

    if pixel_values is None:
        return 0
    ids = np.asarray(ids).ravel()
    cfg = getattr(model, "config", None)
    marker = getattr(cfg, "image_token_index", None)
    if marker is None:
        marker = getattr(cfg, "image_token_id", None)
    marked = int((ids < 0).sum()) + (int((ids == marker).sum()) if marker is not None else 0)
    return marked + max(0, int(embedded) - int(ids.size))


def _backend() -> str:
    from harness.measure.environment import device

    return device().backend


def _mark_planted(record: str, slowdown: float) -> str:
    if not slowdown:
        return record
    data = json.loads(record) if record else {}
    if not isinstance(data, dict):
        data = {"images": data}
    return json.dumps({**data, "planted_slowdown": slowdown})


@ADAPTERS.register("mlx_vlm")
class MlxVlmAdapter:
    # MLX's CPU backend computes on one thread: the accuracy mode answers with a worker per core
    # there (harness/run/data_parallel.py).
    ONE_THREAD_ON_CPU = True
    # A test-only setting, off by default: each decoded token also queues this fraction of a decode
    # step's work (harness/adapters/_planted.py), so decode takes (1 + planted_slowdown) times as
    # long. It plants an honest, known slowdown for checking that comparisons find real
    # differences; rows say it was on.
    OPTIONS: dict = {
        "planted_slowdown": Option(float, 0.0, "test only: make decode this fraction slower (0.25: each token takes "
                                               "25 % longer); recorded in the row's preprocessing record",
                                   range=(0.0, 10.0)),
    }

    def __init__(self, spec: ModelSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.model = None
        self.processor = None
        self.reuse_prefix = False  # off by default: clean per-sample numbers
        self._prefix_state = None
        self._prefix_images: tuple[str, ...] | None = None

    def enable_prefix_reuse(self) -> None:
        """Reuse the KV prefix (image included) across consecutive samples on the same images.

        Not for llava_next, whose template puts the image after the text: nothing to share.
        """
        self.reuse_prefix = self.arch not in _IMAGE_AFTER_TEXT
        self._prefix_state = None
        self._prefix_images = None

    def _prompt_cache_state(self, images: tuple[str, ...]) -> object | None:
        if not self.reuse_prefix:
            return None
        from mlx_vlm.generate import PromptCacheState

        if self._prefix_state is None or images != self._prefix_images:
            self._prefix_state, self._prefix_images = PromptCacheState(), images
        return self._prefix_state

    def _checkpoint_dir(self) -> Path:
        local = checkpoint.resolve_local(self.path)  # a directory, or a hub id already cached
        if local is not None:
            return local
        path = Path(self.path)
        if path.is_absolute() or self.path.startswith("."):
            raise ModelError(f"checkpoint directory {path} does not exist")
        from huggingface_hub import snapshot_download

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

    def load(self, cache: str | None = None) -> LoadStats:
        """Load the checkpoint; `cache` is "cold" (default: pages dropped first where the OS
        allows, else the load is recorded as warm), "warm" (as found) or "both" (cold, then a
        second, warm load recorded as load_warm_s). VLM_HARNESS_LOAD_CACHE sets the default."""
        from harness.measure.environment import import_seconds

        import_s = import_seconds()  # before anything else imports mlx in this process
        import mlx.core as mx
        import mlx_vlm
        from mlx_vlm.utils import get_model_and_args

        cache = cache or os.environ.get("VLM_HARNESS_LOAD_CACHE", "cold")
        if cache not in ("cold", "warm", "both"):
            raise ModelError(f"load cache {cache!r} is not one of cold, warm, both")
        local = Path(self.path) if Path(self.path).is_dir() else None
        # Before the checkpoint is resolved: a model that cannot fit is never downloaded either.
        self._check_load(local)
        ckpt = self._checkpoint_dir()
        if local is None:
            self._check_load(ckpt)
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
        from harness.measure.page_cache import drop_page_cache

        dropped = cache != "warm" and drop_page_cache(ckpt)
        mx.reset_peak_memory()
        t1 = time.perf_counter()
        self.model, self.processor = mlx_vlm.load(str(ckpt))  # lazy=False: weights are evaluated
        mx.synchronize()
        load_s = time.perf_counter() - t1
        load_warm_s = None
        if cache == "both":  # the pages the first load read are cached now
            self.model = self.processor = None
            mx.clear_cache()
            t1 = time.perf_counter()
            self.model, self.processor = mlx_vlm.load(str(ckpt))
            mx.synchronize()
            load_warm_s = time.perf_counter() - t1
        self.config = config
        facts = checkpoint.Checkpoint(ckpt, config, checkpoint.read_json(ckpt / checkpoint.MANIFEST))
        self.arch = facts.arch
        return LoadStats(
            import_s=import_s,
            load_s=load_s,
            size_bytes=facts.size_bytes,
            content_hash=facts.content_hash,
            arch=facts.arch,
            quantization=facts.quantization,
            random_weights=facts.random_weights,
            role=facts.role,
            peak_mlx_bytes=int(mx.get_peak_memory()),
            rss_bytes=peak_rss_bytes(),
            backend=_backend(),
            load_cache="cold" if dropped else "warm",
            load_warm_s=load_warm_s,
        )

    def _ballast(self, slow: float) -> Ballast | None:
        if not slow:
            return None
        if getattr(self, "_planted", None) is None:
            self._planted = Ballast(slow)
        return self._planted

    def generate(self, sample: Sample, max_tokens: int) -> Measurement:
        import mlx.core as mx
        from mlx_vlm import apply_chat_template, stream_generate

        if len(sample.images) > 1 and self.arch in _SINGLE_IMAGE:
            raise Unsupported(f"{self.arch} takes one image per prompt; this sample has {len(sample.images)}")
        # Decoding the images and applying the chat template are work any script feeding the
        # model does (a bare mlx_vlm loop does both inside its call): timed as inputs_s, apart
        # from the harness's own checks, so harness_s is what the harness alone adds.
        t_in = time.perf_counter()
        images, records = load_images(sample.images, self.spec.images)
        inputs_s = time.perf_counter() - t_in
        memory_safety.check_request(self.spec.name, self.config, sample.prompt, [im.size for im in images], max_tokens)
        # Multi-turn: each earlier turn is answered first, untimed, and the model's own answer
        # goes back as the assistant turn, as in a chat; the figures measure the last turn,
        # whose prompt carries the whole history (no cache reuse between turns).
        turn_outputs: list[str] = []
        earlier_s = 0.0  # the untimed earlier turns: model time all the same, not the harness's
        for _ in sample.turns:
            t = time.perf_counter()
            prompt = self._chat_prompt(sample, turn_outputs)
            inputs_s += time.perf_counter() - t
            t = time.perf_counter()
            turn_outputs.append("".join(r.text for r in stream_generate(
                self.model, self.processor, prompt, image=images,
                max_tokens=max_tokens, temperature=self.spec.temperature,
            )).strip())
            earlier_s += time.perf_counter() - t
        t = time.perf_counter()
        if sample.turns:
            prompt = self._chat_prompt(sample, turn_outputs)
        else:
            prompt = apply_chat_template(self.processor, self.model.config, sample.prompt, num_images=len(sample.images))
        inputs_s += time.perf_counter() - t
        self.last_prompt = prompt
        # Earlier turns may leave MLX work in flight; otherwise nothing has run on MLX since the
        # last sample's closing synchronize, and a synchronize here would only wake MLX's worker
        # thread, a wait of up to milliseconds on a busy machine that a bare loop pays inside its
        # first token, as this sample now does too.
        if sample.turns:
            mx.synchronize()
        mx.reset_peak_memory()
        reset_peak_rss()
        times: list[float] = []
        pieces: list[str] = []
        last = None
        seen = 0
        monitor = SampleMonitor(gpu=_backend() == "cuda")
        slow = float(self.spec.option("planted_slowdown") or 0.0)
        ballast = self._ballast(slow)
        monitor.start()
        t0 = time.perf_counter()
        with _TtftSplit(self.model) as split:
            for r in stream_generate(
                self.model, self.processor, prompt, image=images,
                max_tokens=max_tokens, temperature=self.spec.temperature,
                prompt_cache_state=self._prompt_cache_state(sample.images),
            ):
                now = time.perf_counter()
                pieces.append(r.text)
                # The last result repeats the final count with the detokenizer's tail: not a token.
                if r.generation_tokens > seen:
                    seen = r.generation_tokens
                    if ballast is not None:
                        ballast.after_token(seen)
                    times.append(now - t0)
                last = r
        mx.synchronize()
        wall = time.perf_counter() - t0
        if ballast is not None and not ballast.calibrated:  # sized on the first generation: the warm-up
            ballast.calibrate(lambda: self.generate(sample, max(max_tokens, 32)).token_times,
                              lambda: self.generate(sample, max_tokens))
        contended, state = monitor.stop()
        parts = split.parts(t0, times[0] if times else math.nan)
        n = last.generation_tokens if last else 0
        decode = (n - 1) / (times[-1] - times[0]) if n >= 2 and times[-1] > times[0] else math.nan
        cached = int(last.cached_tokens or 0) if last else 0
        # mlx_vlm divides all prompt tokens, reused ones too, by the prefill time: count only new ones.
        prefill = math.nan
        if last and last.prompt_tps:
            prefill = (last.prompt_tokens - cached) * last.prompt_tps / last.prompt_tokens
        return Measurement(
            text="".join(pieces),
            prompt_tokens=last.prompt_tokens if last else 0,
            generated_tokens=n,
            ttft_s=times[0] if times else math.nan,
            prefill_tps=prefill,
            decode_tps=decode,
            wall_s=wall,
            peak_mlx_bytes=int(mx.get_peak_memory()),
            peak_rss_bytes=peak_rss_bytes(),
            finish_reason=(last.finish_reason or "length") if last else "",
            token_times=tuple(times),
            preprocessing=_mark_planted(record_json(records, self.spec.images), slow),
            cached_tokens=cached,
            turn_outputs=tuple(turn_outputs),
            model_s=earlier_s + wall,
            inputs_s=inputs_s,
            **parts,
            contended=contended,
            machine_state=SampleMonitor.encode(state),
        )

    # -- accuracy mode (harness/run/batched.py) -----------------------------------------------------
    def batchable(self, sample: Sample) -> str:
        """Why `sample` must be generated alone ('' when it can join a batch). Several images and
        several turns batch too (a turn's round waits for the one before, sample by sample);
        only an architecture that takes one image per prompt keeps such samples alone, where the
        one-at-a-time path says so."""
        if len(sample.images) > 1 and self.arch in _SINGLE_IMAGE:
            return f"several images: {self.arch} takes one image per prompt"
        return ""

    def batch_capacity(self, samples: list[Sample], share: float = 1.0) -> tuple[int, str]:
        """The batch size the free memory (or `share` of it) allows for these samples, and why
        (the largest context any of them can take: the image at the model's size limit, the
        prompt, max_tokens)."""
        side = self.spec.images.max_size or 0
        size = (side, side) if side else None
        # A multi-turn sample's last round holds every turn and every earlier answer.
        context = max((memory_safety.prompt_tokens(" ".join((s.prompt, *s.turns)), [size] * len(s.images) if size else [])
                       + s.max_tokens * (1 + len(s.turns)) for s in samples), default=1)
        # On a CPU the decode is compute-bound already at a few rows: larger batches only add
        # padding (72 fixture samples: 3.7-3.9 s of CPU in batches of 8 or 16, 3.9-4.3 s in 64s).
        cap = CPU_BATCH_CAP if _backend() == "cpu" else memory_safety.MAX_BATCH
        return memory_safety.batch_size(self.config, context, size, cap, share)

    def generate_batch(self, samples: list[Sample], in_flight: int = 0) -> list[Measurement]:
        """The answers to `samples` generated as one batch (harness/adapters/_mlx_batch.py);
        raises when the model cannot take them together. No per-request timings: the pass's
        throughput stands in for them.

        A multi-turn sample is answered turn by turn as `generate` answers it (its own earlier
        answers, stripped, back as the assistant turns, the same max_tokens each turn): round k
        of the batch generates every sample's turn k together, so the samples of a batch with
        fewer turns are done after the first round."""
        import mlx.core as mx
        from mlx_vlm import apply_chat_template

        from harness.adapters import _mlx_batch

        loaded, records = [], []
        for s in samples:
            images, recs = load_images(s.images, self.spec.images)
            loaded.append(images)
            records.append(record_json(recs, self.spec.images))
        memory_safety.check_batch(self.spec.name, self.config,
                                  [(" ".join((s.prompt, *s.turns)), [im.size for im in images],
                                    s.max_tokens * (1 + len(s.turns)))
                                   for s, images in zip(samples, loaded, strict=True)])
        mx.reset_peak_memory()
        reset_peak_rss()
        earlier: list[list[str]] = [[] for _ in samples]
        final: dict[int, _mlx_batch.Answer] = {}
        for turn in range(1 + max(len(s.turns) for s in samples)):
            rows = [i for i, s in enumerate(samples) if len(s.turns) >= turn]
            requests = [_mlx_batch.Request(
                self._chat_prompt(samples[i], earlier[i]) if samples[i].turns else
                apply_chat_template(self.processor, self.model.config, samples[i].prompt,
                                    num_images=len(samples[i].images)),
                tuple(loaded[i]), samples[i].max_tokens) for i in rows]
            answers = _mlx_batch.generate(self.model, self.processor, requests, temperature=self.spec.temperature,
                                          top_p=self.spec.top_p)
            for i, a in zip(rows, answers, strict=True):
                if turn < len(samples[i].turns):
                    earlier[i].append(a.text.strip())
                else:
                    final[i] = a
        mx.synchronize()
        peak, rss = int(mx.get_peak_memory()), peak_rss_bytes()
        return [Measurement(text=a.text, prompt_tokens=a.prompt_tokens, generated_tokens=a.generated_tokens,
                            ttft_s=math.nan, prefill_tps=math.nan, decode_tps=math.nan, wall_s=math.nan,
                            peak_mlx_bytes=peak, peak_rss_bytes=rss, finish_reason=a.finish_reason,
                            preprocessing=rec, batch_size=len(samples), turn_outputs=tuple(done))
                for a, rec, done in zip((final[i] for i in range(len(samples))), records, earlier, strict=True)]

    def speed_test(self, kind: str, value: int, seed: int, directory: Path) -> dict[str, Any]:
        """One llama-bench-style measurement (`pp`, `tg` or `img`; harness/adapters/_mlx_sweeps.py)
        on the loaded model: the result columns of one repetition."""
        from harness.adapters import _mlx_sweeps

        return _mlx_sweeps.measure(self.model, self.processor, kind, value, seed, directory)

    def _chat_prompt(self, sample: Sample, outputs: list[str]) -> str:
        """The conversation up to the next unanswered turn: images in the first user message."""
        from mlx_vlm import apply_chat_template

        questions = (sample.prompt, *sample.turns)[: len(outputs) + 1]
        first = [*({"type": "image"} for _ in sample.images), {"type": "text", "text": questions[0]}]
        messages: list[dict] = [{"role": "user", "content": first}]
        for answer, question in zip(outputs, questions[1:], strict=True):
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        return apply_chat_template(self.processor, self.model.config, messages, num_images=len(sample.images))

    def _check_load(self, ckpt: Path | None) -> None:
        s = self.spec
        memory_safety.check_load(s.name, ckpt, declared_bytes=s.weight_bytes, params_b=s.params_b,
                                 quantization=s.quantization, max_tokens=s.max_tokens, image_size=s.images.max_size)

    def close(self) -> None:
        self.model = self.processor = None
