"""The bundled natural photographs (datasets/natural): authored questions, checked hashes."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from harness.core.paths import datasets_dir
from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, check_params, user_files

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


def _manifest(path: Path) -> dict[str, dict]:
    """The manifest's images by file name; a damaged manifest is one line naming it."""
    from harness.core.files import NotReadable, read_regular

    try:
        data = json.loads(read_regular(path, 50_000_000))
    except NotReadable as e:
        raise SuiteError(f"cannot read dataset manifest: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: not valid JSON ({e}); restore the file from the repository") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(
            isinstance(m, dict) and isinstance(m.get("file"), str) and isinstance(m.get("sha256"), str) for m in images):
        raise SuiteError(f"{path}: must be an object whose 'images' is a list of {{\"file\": ..., \"sha256\": ...}}; "
                         "restore the file from the repository")
    return {m["file"]: m for m in images}


@SOURCES.register("natural")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = _dataset_params(defn)
    root = datasets_dir() / p["dataset"]
    manifest_path, questions_path = root / "manifest.json", root / "questions.jsonl"
    for f in (manifest_path, questions_path):
        if not f.exists():
            raise SuiteError(f"{defn.path}: dataset file {f} is missing")
    manifest = _manifest(manifest_path)
    out: list[RawSample] = []
    for lineno, line in enumerate(questions_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{questions_path}:{lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            raise SuiteError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(q, dict) or not isinstance(q.get("image", ""), str):
            raise SuiteError(f"{where}: each line must be a JSON object with id, image (a file name), question, answers")
        if q.get("kind") not in p["kinds"]:
            continue
        for key in ("id", "image", "question", "answers"):
            if not q.get(key):
                raise SuiteError(f"{where}: row {q.get('id', '?')!r} has no {key!r}")
        meta = manifest.get(q["image"])
        if meta is None:
            raise SuiteError(f"{where}: image {q['image']!r} is not in {manifest_path}")
        # The manifest names files in images/; a name leading out of it (an absolute path, `..`,
        # a symlink) is never read: that sample is an error row saying so, the others run.
        image = root / "images" / q["image"]
        why = "" if user_files.inside(image, root / "images") else (
            f"{where}: image {q['image']!r} (in {manifest_path.name}) leads outside {root / 'images'}; "
            "name a file in that folder")
        # A bad download or an edited photo would change every score silently; the hash
        # check makes it an error instead. An unreadable image still runs, as an error row.
        if not why and image.is_file() and hashlib.sha256(image.read_bytes()).hexdigest() != meta["sha256"]:
            raise SuiteError(f"{image}: sha256 differs from {manifest_path}; restore the file from the repository")
        if why:
            print(f"warning: {why}; the sample will be an error row", file=sys.stderr)
        out.append(
            RawSample(
                id=q["id"], images=(image,), question=q["question"], answers=q["answers"],
                category=q["kind"], metric=q.get("metric"), keywords=q.get("keywords", ()), problem=why,
            )
        )
    # Round-robin over images (each image's first question, then each image's second, ...) so
    # that a suite cut to N samples still covers as many photographs as it can.
    by_image: dict[tuple[Path, ...], list[RawSample]] = {}
    for r in out:
        by_image.setdefault(r.images, []).append(r)
    ordered = [qs[i] for i in range(max(map(len, by_image.values()), default=0)) for qs in by_image.values() if i < len(qs)]
    return ordered[: defn.samples]
