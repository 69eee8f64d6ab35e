"""Records that cross module (and process) boundaries. Frozen, so a stage cannot edit what an
earlier stage measured; plain fields, so they pickle to a worker process and back."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

# The fields of a Sample that are lists of text; `text_items` reads each of them.
TEXT_LISTS = ("images", "answers", "keywords", "choices", "turns")


def text_items(value: Any, name: str = "answers") -> tuple[str, ...]:
    """A list-of-text field (answers, keywords, choices, turns, images) by one rule.

    Missing (None or NaN) is no items; a bare string is ONE item (never its characters: tuple("yes")
    would be three answers, "y", "e" and "s"); a list, tuple or array gives its items, each a
    string, or a number or path converted to its text. An item that is None or NaN (or of another
    type) is refused with a ValueError naming `name` and the index: str(None) would be the answer
    "None", which VQA normalisation turns into "0"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays, as parquet reads lists
        value = value.tolist()
    if isinstance(value, (str, int, float, os.PathLike)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} is a {type(value).__name__}; give a list of strings (a bare string is one item)")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, str):
            out.append(v)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValueError(f"{name}[{i}] is {'None' if v is None else 'NaN'}; every item must be text: "
                             "leave a missing one out of the list")
        elif isinstance(v, (int, float, os.PathLike)) and not isinstance(v, bool):
            out.append(os.fspath(v) if isinstance(v, os.PathLike) else str(v))
        else:
            raise ValueError(f"{name}[{i}] is a {type(v).__name__} ({v!r}); every item must be text")
    return tuple(out)


@dataclass(frozen=True)
class Sample:
    """One question about one or more images, with the answers that score it.

    images, answers, keywords, choices and turns are read by `text_items` when the Sample is
    built, whoever builds it (a suite source, a user's code, a stored row being scored): a bare
    string is one item, a None or NaN item is a ValueError naming the sample and the field."""

    suite: str
    id: str
    images: tuple[str, ...]  # file paths; the adapter reads them as a user's code would
    prompt: str
    answers: tuple[str, ...]
    category: str  # what the question probes: colour, shape, count, object, ...
    metric: str
    max_tokens: int
    keywords: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # multiple choice: option texts in letter order (A, B, ...)
    # Follow-up user messages after `prompt`, each sent with the model's own earlier answers
    # as the history; `answers` score the last turn.
    turns: tuple[str, ...] = ()
    # Why the sample cannot run, found when its suite was built (an image path leading outside
    # the dataset, a URL the image checks refused); "" when it can. It fails alone, as an error row.
    problem: str = ""

    def __post_init__(self) -> None:
        for name in TEXT_LISTS:
            value = getattr(self, name)
            if type(value) is tuple and all(type(v) is str for v in value):
                continue  # already the rule's result: the common case costs one pass
            try:
                items = text_items(value, name)
            except ValueError as e:
                raise ValueError(f"sample {self.id!r}: {e}") from None
            object.__setattr__(self, name, items)


@dataclass(frozen=True)
class LoadStats:
    import_s: float  # importing the backend, apart from loading this model
    load_s: float  # reading and materialising the weights, processor and tokenizer
    size_bytes: int  # checkpoint on disk
    content_hash: str
    arch: str  # the checkpoint's model_type
    quantization: str  # "4bit", "bf16", ...
    random_weights: bool
    peak_mlx_bytes: int
    rss_bytes: int
    backend: str  # the device MLX computes on: "cpu", "metal" or "cuda"
    role: str = "model"  # harness.core.checkpoint.ROLES: fixture (random weights), reference (canary) or model
    load_cache: str | None = None  # "cold": pages dropped before loading; "warm": they may have been cached
    load_warm_s: float | None = None  # a second, warm load, when cold and warm were both asked

    def columns(self) -> dict[str, object]:
        """The schema columns these fields fill beyond the ones every LoadStats fills."""
        return {"load_cache": self.load_cache, "load_warm_s": self.load_warm_s}


@dataclass(frozen=True)
class Measurement:
    """What one generation produced and how long each phase took (seconds, tokens/s, bytes)."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float  # call to first token: processor preprocessing, vision encoder, prefill
    prefill_tps: float  # prompt tokens / (prefill time), as mlx_vlm counts it
    decode_tps: float  # tokens after the first / time after the first; nan when < 2 tokens
    wall_s: float
    peak_mlx_bytes: int
    peak_rss_bytes: int
    finish_reason: str
    token_times: tuple[float, ...] = field(default=(), repr=False)  # seconds since the call
    preprocessing: str = ""  # JSON: what harness.images did to each image, and the limits
    # Figures a server reported about itself (adapter openai), kept apart from what the client measured.
    server_prompt_tokens: int | None = None
    server_completion_tokens: int | None = None
    server_prefill_s: float | None = None
    server_prefill_tps: float | None = None
    server_decode_tps: float | None = None
    cached_tokens: int = 0  # prompt tokens reused from a prompt cache, not prefilled again
    turn_outputs: tuple[str, ...] = ()  # multi-turn: the model's answers to the turns before the last
    # Seconds inside the model's generation calls (earlier turns included): the rest of the
    # worker's time on a sample is the harness's own cost. None when an adapter cannot tell.
    model_s: float | None = None
    # Seconds preparing inputs any script feeding the model needs: decoding the images and
    # applying the chat template (a bare mlx_vlm loop does both inside its call).
    inputs_s: float | None = None
    # ttft_s split (adapter mlx_vlm): processor call, vision tower, language-model prefill; seconds
    preprocess_s: float | None = None
    vision_s: float | None = None
    prefill_s: float | None = None
    image_tokens: int | None = None
    contended: bool | None = None  # other processes' load or throttling during the sample
    machine_state: str | None = None  # JSON (harness.measure.machine_state)
    # Accuracy mode (harness/run/batched.py): the batch this answer was generated in, why it ran alone
    # when it did, and the pass's progress when its batch finished (seconds, samples, tokens).
    batch_size: int | None = None
    batch_fallback: str | None = None
    pass_s: float | None = None
    pass_samples: int | None = None
    pass_generated_tokens: int | None = None
    pass_worker: int | None = None  # which of the model's workers at once (1..N); None: the only one
    # The one-at-a-time path's answer to the same request, when the pass checked it (--verify).
    solo_text: str | None = None

    def columns(self) -> dict[str, object]:
        """The schema columns these fields fill beyond the ones every Measurement fills."""
        return {"preprocess_s": self.preprocess_s, "vision_s": self.vision_s, "prefill_s": self.prefill_s,
                "image_tokens": self.image_tokens, "contended": self.contended, "machine_state": self.machine_state,
                "batch_size": self.batch_size, "batch_fallback": self.batch_fallback, "pass_s": self.pass_s,
                "pass_samples": self.pass_samples, "pass_generated_tokens": self.pass_generated_tokens,
                "pass_worker": self.pass_worker}
