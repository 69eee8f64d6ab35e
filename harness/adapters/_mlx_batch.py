"""Several samples generated together on a loaded MLX model, for the accuracy mode
(harness/run/batched.py plans the batches; this module touches the model).

Each sample's inputs are prepared exactly as `stream_generate` prepares them, one sample at a
time (the chat template, `prepare_inputs`, the vision tower through `get_input_embeddings`), and
the language model then prefills and decodes all of them at once through mlx-vlm's public
`BatchGenerator`, which pads, masks and keeps one KV cache per row: the way mlx_vlm.server
batches requests. `batch_generate` would also batch the processor call, but the processors of
three of the four seed architectures reject a batch (SmolVLM: "number of images in the text ...
and images ... should be the same"; Phi-3.5-Vision: one image tag per prompt; LLaVA-NeXT:
"non-uniform length"). The decode, where batching pays most, is batched for every architecture
this way.

The vision tower is batched where the architecture's vision entry point takes several images in
one call and its `get_input_embeddings` accepts the features back (`cached_image_features`, the
hook of mlx-vlm's vision-feature cache): samples whose processor outputs have the same shapes
(same image size) go through the tower together, and each sample's features are then merged
into its own prompt exactly as the one-at-a-time path merges them. On the CPU that saves little
(the tower is compute-bound there); on a GPU, where one small image leaves the device mostly
idle, it removes most of the per-sample time. Other architectures, and samples whose shapes
differ from every other's, run the tower one sample at a time.

Text is detokenised as `batch_generate` does: every token up to, not including, a stop token.
At temperature 0 the sampler is argmax, as in `stream_generate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFILL_GROUP = 8  # prompts prefilled together
VISION_GROUP = 16  # images through the vision tower in one call: bounds its activations


@dataclass(frozen=True)
class Request:
    prompt: str  # after the chat template
    images: tuple[Any, ...]  # PIL images, as harness.images prepared them
    max_tokens: int


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    generated_tokens: int  # tokens the model produced, a closing stop token included
    finish_reason: str  # stop | length


def _sampler(temperature: float, top_p: float) -> Any:
    if temperature == 0:
        return None  # BatchGenerator's default: argmax, as stream_generate at temperature 0
    from mlx_vlm.sample_utils import make_sampler

    return make_sampler(temp=temperature, top_p=top_p)


def _signature(ids: Any, kwargs: dict[str, Any]) -> tuple:
    """The shapes of a row's prompt tensors, the prompt's length left out where a tensor runs
    along it (those BatchGenerator pads). Embeddings longer than the ids (LLaVA-NeXT's image
    features) are padded by as much as the ids are, so there the ids' length stays in: two
    prompts whose embeddings happen to be as long but whose ids are not cannot share a prefill."""
    length = int(ids.shape[1])
    shapes = tuple((k, tuple(-1 if i == 1 and d == length else int(d) for i, d in enumerate(v.shape)))
                   for k, v in sorted(kwargs.items()) if hasattr(v, "shape"))
    embeds = kwargs.get("inputs_embeds")
    if embeds is not None and int(embeds.shape[1]) != length:
        shapes += (("input_ids", length),)
    return shapes


def _qwen_vision(model: Any, group: list[dict[str, Any]]) -> list[Any]:
    """Qwen2-VL / Qwen2.5-VL: the tower takes every image's patches concatenated, with one
    (t, h, w) grid row per image, and keeps the images apart itself (attention per image through
    its cumulative lengths); its output is the images' merged tokens, one after another."""
    import mlx.core as mx

    tower = model.vision_tower
    pixels = mx.concatenate([x["pixel_values"] for x in group], axis=0)
    grid = mx.concatenate([x["image_grid_thw"] for x in group], axis=0)
    out = tower(pixels.astype(tower.patch_embed.proj.weight.dtype), grid, output_hidden_states=False)
    mx.eval(out)
    return mx.split(out, len(group), axis=0)  # same shapes: the same number of tokens each


# model_type -> how several same-shape samples go through its vision tower in one call
VISION_BATCH = {"qwen2_vl": _qwen_vision, "qwen2_5_vl": _qwen_vision}


def _vision_signature(inputs: dict[str, Any]) -> tuple | None:
    """The shapes that decide a sample's vision features (its prompt's tensors left out); None
    for a sample without an image."""
    if inputs.get("pixel_values") is None:
        return None
    return tuple((k, tuple(int(d) for d in v.shape)) for k, v in sorted(inputs.items())
                 if hasattr(v, "shape") and k not in ("input_ids", "attention_mask"))


def _vision_features(model: Any, prepared: list[dict[str, Any]]) -> dict[int, Any]:
    """Row index -> its vision features, for the rows whose tower ran batched with others of the
    same shapes. Rows left out (no batched entry point for this architecture, a shape no other
    row shares, no image) run the tower inside `get_input_embeddings`, one at a time."""
    batch = VISION_BATCH.get(getattr(model.config, "model_type", ""))
    if batch is None:
        return {}
    groups: dict[tuple, list[int]] = {}
    for i, inputs in enumerate(prepared):
        sig = _vision_signature(inputs)
        if sig is not None:
            groups.setdefault(sig, []).append(i)
    features: dict[int, Any] = {}
    for rows in groups.values():
        for start in range(0, len(rows), VISION_GROUP):
            chunk = rows[start:start + VISION_GROUP]
            if len(chunk) > 1:
                features.update(zip(chunk, batch(model, [prepared[i] for i in chunk]), strict=True))
    return features


def generate(model: Any, processor: Any, requests: list[Request], *, temperature: float = 0.0,
             top_p: float = 1.0) -> list[Answer]:
    """The answers to `requests`, in order; raises if the model cannot take them as one batch."""
    from mlx_vlm.generate import BatchGenerator
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    add_special = should_add_special_tokens(model.config.model_type, processor)
    image_token_index = getattr(model.config, "image_token_index", None)
    prepared = [prepare_inputs(processor, images=list(r.images) or None, prompts=r.prompt,
                               image_token_index=image_token_index, add_special_tokens=add_special)
                for r in requests]
    features = _vision_features(model, prepared)
    rows = []
    for i, inputs in enumerate(prepared):
        ids = inputs.get("input_ids")
        data = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        cached = {"cached_image_features": features[i]} if i in features else {}
        embedded = model.get_input_embeddings(ids, inputs.get("pixel_values"), mask=inputs.get("attention_mask"),
                                              **data, **cached)
        rows.append((ids, {**data, **{k: v for k, v in embedded.to_dict().items() if v is not None}}))
    n = len(requests)
    # Prompts are prefilled in groups of similar length (BatchGenerator sorts them by length), so
    # a short question is not padded to a large image's thousands of tokens; all of them then
    # decode together. A group's per-row tensors are concatenated, so rows whose tensors differ in
    # more than the prompt's length (SmolVLM's image tiles; LLaVA-NeXT's embeddings, longer than
    # its input ids) are prefilled one by one, and still decode together.
    signatures = {_signature(ids, kwargs) for ids, kwargs in rows}
    group = min(n, PREFILL_GROUP) if len(signatures) == 1 else 1
    gen = BatchGenerator(model.language_model, processor, prefill_batch_size=group, completion_batch_size=n,
                         compute_logprobs=False, sampler=_sampler(temperature, top_p))
    try:
        uids, prompt_tokens = [], []
        for (ids, kwargs), r in zip(rows, requests, strict=True):
            (uid,) = gen.insert([ids.squeeze(0).tolist()], max_tokens=r.max_tokens, prompt_kwargs=[kwargs])
            uids.append(uid)
            prompt_tokens.append(int(ids.shape[1]))
        tokens: dict[int, list[int]] = {u: [] for u in uids}
        finish: dict[int, str] = {}
        while gen.has_work:
            _, responses = gen.next()
            for resp in responses:
                if resp.finish_reason != "stop":
                    tokens[resp.uid].append(resp.token)
                if resp.finish_reason:
                    finish[resp.uid] = resp.finish_reason
    finally:
        gen.close()
    detokenizer = processor.detokenizer
    answers = []
    for uid, n_prompt in zip(uids, prompt_tokens, strict=True):
        detokenizer.reset()
        for t in tokens[uid]:
            detokenizer.add_token(t)
        detokenizer.finalize()
        reason = finish.get(uid, "length")
        answers.append(Answer(detokenizer.text, n_prompt, len(tokens[uid]) + (reason == "stop"), reason))
    return answers
