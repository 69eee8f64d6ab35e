"""Suite samples -> chat-completions request bodies, built once before any step is timed.

Images go as PNG data URIs after harness.images (the pixels an in-process model sees), as the
`openai` adapter sends them, or by reference (`url`): an http(s) URL as it is, a local file as
its absolute path, which servers on the same machine such as mlx_vlm.server read themselves.
Encoding is done here, ahead of the load, so the client's send loop only writes bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.records import Sample
from harness.images import ImageError, load_images, to_data_uri
from harness.suites import load_suite

IMAGE_MODES = ("data-uri", "url")


@dataclass(frozen=True)
class LoadRequest:
    sample: Sample
    suite_hash: str
    max_tokens: int
    body: bytes  # the JSON body, ready to send


def image_ref(src: str, images_as: str) -> str:
    """What goes in an image_url part for one image source."""
    if images_as == "url":
        if src.startswith(("http://", "https://", "data:")):
            return src
        return str(Path(src).resolve())
    images, _ = load_images((src,))
    return to_data_uri(images[0])


def chat_body(sample: Sample, model: str, max_tokens: int, images_as: str = "data-uri") -> dict[str, Any]:
    """One streamed chat-completions request for a sample: its prompt and every one of its images."""
    if images_as not in IMAGE_MODES:
        raise ValueError(f"images_as {images_as!r}: use one of {', '.join(IMAGE_MODES)}")
    content: list[dict[str, Any]] = [{"type": "text", "text": sample.prompt}]
    content += [{"type": "image_url", "image_url": {"url": image_ref(s, images_as)}} for s in sample.images]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def build_requests(suites: list[str], model: str, *, max_tokens: int | None = None, images_as: str = "data-uri",
                   limit: int | None = None) -> tuple[list[LoadRequest], list[str]]:
    """Request bodies for every single-turn sample of the suites, and notes on what was left out
    (a sample whose image cannot be read is one of them).

    Multi-turn samples are left out: their later turns need the model's own earlier answers,
    which would make one request wait on another inside the load.
    """
    out: list[LoadRequest] = []
    notes: list[str] = []
    for name in suites:
        suite = load_suite(name)
        samples = [s for s in suite.samples if not s.turns]
        if len(samples) < len(suite.samples):
            notes.append(f"suite {suite.name}: {len(suite.samples) - len(samples)} multi-turn sample(s) left out")
        if limit is not None:
            samples = samples[:limit]
        for s in samples:
            mt = max_tokens or s.max_tokens
            try:
                body = json.dumps(chat_body(s, model, mt, images_as)).encode()
            except ImageError as e:  # one bad image costs its sample, not the run
                notes.append(f"suite {suite.name}, sample {s.id}: left out, {e}")
                continue
            out.append(LoadRequest(s, suite.hash, mt, body))
    return out, notes
