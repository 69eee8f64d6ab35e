"""The bundled natural photographs (datasets/natural): authored questions, checked hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.core.paths import datasets_dir
from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params

KINDS = ("object", "colour", "count", "yes_no", "text", "caption")
PARAMS = {"kinds": (["object", "colour", "count", "yes_no", "text"], KINDS), "dataset": ("natural", None)}


def _dataset_params(defn: SuiteDef) -> dict:
    params = dict(defn.params)
    dataset = params.pop("dataset", "natural")
    if not isinstance(dataset, str) or "/" in dataset or dataset.startswith("."):
        raise SuiteError(f"{defn.path}: param 'dataset' must be a folder name under datasets/, got {dataset!r}")
    checked = check_params(SuiteDef(**{**defn.__dict__, "params": params}), {"kinds": PARAMS["kinds"]})
    checked["dataset"] = dataset
    return checked


@SOURCES.register("natural")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = _dataset_params(defn)
    root = datasets_dir() / p["dataset"]
    manifest_path, questions_path = root / "manifest.json", root / "questions.jsonl"
    for f in (manifest_path, questions_path):
        if not f.exists():
            raise SuiteError(f"{defn.path}: dataset file {f} is missing")
    manifest = {img["file"]: img for img in json.loads(manifest_path.read_text())["images"]}
    out: list[RawSample] = []
    for lineno, line in enumerate(questions_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{questions_path}:{lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise SuiteError(f"{where}: not valid JSON ({e})") from None
        if q.get("kind") not in p["kinds"]:
            continue
        for key in ("id", "image", "question", "answers"):
            if not q.get(key):
                raise SuiteError(f"{where}: row {q.get('id', '?')!r} has no {key!r}")
        meta = manifest.get(q["image"])
        if meta is None:
            raise SuiteError(f"{where}: image {q['image']!r} is not in {manifest_path}")
        image = root / "images" / q["image"]
        # A bad download or an edited photo would change every score silently; the hash
        # check makes it an error instead. An unreadable image still runs, as an error row.
        if image.exists() and hashlib.sha256(image.read_bytes()).hexdigest() != meta["sha256"]:
            raise SuiteError(f"{image}: sha256 differs from {manifest_path}; restore the file from the repository")
        out.append(
            RawSample(
                id=q["id"], images=(image,), question=q["question"], answers=q["answers"],
                category=q["kind"], metric=q.get("metric"), keywords=q.get("keywords", ()),
            )
        )
    # Round-robin over images (each image's first question, then each image's second, ...) so
    # that a suite cut to N samples still covers as many photographs as it can.
    by_image: dict[tuple[Path, ...], list[RawSample]] = {}
    for r in out:
        by_image.setdefault(r.images, []).append(r)
    ordered = [qs[i] for i in range(max(map(len, by_image.values()), default=0)) for qs in by_image.values() if i < len(qs)]
    return ordered[: defn.samples]
