"""Seeded training samples drawn from the same generator as the synthetic-shapes suite.

Images come from `harness.suites.shapes.render` at the suite's size and are preprocessed by the
checkpoint's own processor, so the model trains on exactly what a benchmark run feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from harness.suites.shapes import COLOURS, GENERATOR_VERSION, QUESTIONS, SHAPES, render

# The synthetic-shapes suite's prompt and image size; tests check they still agree.
PROMPT = "{question} Answer with one word or number."
IMAGE_SIZE = 224
MAX_COUNT = 5
# A fourth seed word keeps training streams apart from every suite's ([seed, i, version]).
TRAIN_STREAM = 7
EVAL_STREAM = 8
# Colour is learnt within a few hundred steps; shape and counting are harder and get most of
# each batch (one colour, three shape, four count samples in eight).
TASK_CYCLE = ("colour", "shape", "shape", "shape", "count", "count", "count", "count")


@dataclass(frozen=True)
class ShapeSample:
    image: Image.Image
    category: str
    question: str
    answer: str


def sample(seed: int, index: int, stream: int = TRAIN_STREAM) -> ShapeSample:
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION, stream])
    task = TASK_CYCLE[index % len(TASK_CYCLE)]
    img, category, answer = render(task, rng, IMAGE_SIZE, IMAGE_SIZE, MAX_COUNT)
    return ShapeSample(img, category, QUESTIONS[category], answer)


def answer_vocabulary() -> dict[str, tuple[str, ...]]:
    return {"colour": tuple(COLOURS), "shape": SHAPES, "count": tuple(str(n) for n in range(1, MAX_COUNT + 1))}


def description() -> str:
    return (
        f"harness.suites.shapes.render v{GENERATOR_VERSION}, {IMAGE_SIZE}x{IMAGE_SIZE} px white background, "
        f"tasks cycled {'/'.join(TASK_CYCLE)}, count 1-{MAX_COUNT}, prompt {PROMPT!r}, "
        f"rng numpy default_rng([seed, index, {GENERATOR_VERSION}, {TRAIN_STREAM}]), a fresh sample every step"
    )


class Batcher:
    """Token ids, loss masks and pixel values for a batch, through the real processor.

    Every prompt shares the same prefix up to and including the image tokens (system turn,
    user turn opening, one image), so image features sit at the same positions in every row.
    """

    def __init__(self, processor: Any, model_config: Any, eos_id: int, pad_id: int) -> None:
        from mlx_vlm import apply_chat_template

        self.processor = processor
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.image_token_id = model_config.image_token_id
        blank = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
        self.prompts: dict[str, list[int]] = {}
        for category, question in QUESTIONS.items():
            text = apply_chat_template(processor, model_config, PROMPT.format(question=question), num_images=1)
            ids = processor(text=[text], images=[blank], return_tensors="np")["input_ids"][0].tolist()
            self.prompts[category] = ids
        starts = {ids.index(self.image_token_id) for ids in self.prompts.values()}
        counts = {ids.count(self.image_token_id) for ids in self.prompts.values()}
        if len(starts) != 1 or len(counts) != 1:
            raise AssertionError("prompts differ before the image; the batched merge assumes they do not")
        self.image_start, self.image_tokens = starts.pop(), counts.pop()
        self.tokenizer = processor.tokenizer
        # One width for every batch: shapes never change, so the compiled step compiles once.
        longest = max(len(self.answer_ids(a)) for answers in answer_vocabulary().values() for a in answers)
        self.width = max(len(ids) for ids in self.prompts.values()) + longest

    def answer_ids(self, answer: str) -> list[int]:
        return self.tokenizer.encode(answer, add_special_tokens=False) + [self.eos_id]

    def batch(self, samples: list[ShapeSample]) -> dict[str, np.ndarray]:
        rows, masks = [], []
        for s in samples:
            prompt = self.prompts[s.category]
            ans = self.answer_ids(s.answer)
            rows.append(prompt + ans)
            masks.append([0] * len(prompt) + [1] * len(ans))
        width = self.width
        ids = np.full((len(rows), width), self.pad_id, np.int32)
        mask = np.zeros((len(rows), width), np.float32)
        for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
            ids[i, : len(r)] = r
            mask[i, : len(m)] = m
        pix = self.processor.image_processor(images=[s.image for s in samples], return_tensors="np")
        return {"input_ids": ids, "loss_mask": mask, "pixel_values": pix["pixel_values"], "grid_thw": pix["image_grid_thw"]}
