"""Several samples generated together on a loaded MLX model, for the accuracy mode
(harness/run/batched.py plans the batches; this module touches the model).

Each sample's inputs are prepared exactly as `stream_generate` prepares them, one sample at a
time (the chat template, `prepare_inputs`, the vision tower through `get_input_embeddings`), and
the language model then prefills and decodes all of them at once through mlx-vlm's public
`BatchGenerator`, which pads, masks and keeps one KV cache per row: the way mlx_vlm.server
batches requests. `batch_generate` would also batch the processor call, but the processors of
three of the four seed architectures reject a batch (SmolVLM: "number of images in the text ...
and images ... should be the same"; Phi-3.5-Vision: one image tag per prompt; LLaVA-NeXT:
"non-uniform length"), and on the CPU a batched vision tower saves nothing (it is compute-bound
there: 8 images in one call took as long as 8 calls). The decode, where batching pays, is
batched for every architecture this way.

Text is detokenised as `batch_generate` does: every token up to, not including, a stop token.
At temperature 0 the sampler is argmax, as in `stream_generate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFILL_GROUP = 8  # prompts prefilled together


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
    along it (those BatchGenerator pads)."""
    length = int(ids.shape[1])
    return tuple((k, tuple(-1 if i == 1 and d == length else int(d) for i, d in enumerate(v.shape)))
                 for k, v in sorted(kwargs.items()) if hasattr(v, "shape"))


def generate(model: Any, processor: Any, requests: list[Request], *, temperature: float = 0.0,
             top_p: float = 1.0) -> list[Answer]:
    """The answers to `requests`, in order; raises if the model cannot take them as one batch."""
    from mlx_vlm.generate import BatchGenerator
    from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

    add_special = should_add_special_tokens(model.config.model_type, processor)
    image_token_index = getattr(model.config, "image_token_index", None)
    rows = []
    for r in requests:
        inputs = prepare_inputs(processor, images=list(r.images) or None, prompts=r.prompt,
                                image_token_index=image_token_index, add_special_tokens=add_special)
        ids = inputs.get("input_ids")
        data = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        embedded = model.get_input_embeddings(ids, inputs.get("pixel_values"), mask=inputs.get("attention_mask"),
                                              **data)
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
