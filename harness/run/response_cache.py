"""The response cache: an answer kept under everything that determines it, so that a run which
would generate the same answer again at temperature 0 reuses it for accuracy.

The key is the sha256 of a canonical JSON of:

- **the model**: the checkpoint's content hash (harness/checkpoint.py: the manifest's, else a
  sha256 over its files, remembered here by path, size and modification time so a large
  checkpoint is read once); a served model adds the server's base URL and its name there;
- **the adapter and its version**: its name, the sha256 of the harness code that turns a sample
  into a request (the adapter's module, the batched path, harness/images.py), and for in-process
  adapters the versions of mlx, mlx-vlm and transformers and the device (backend and name), whose
  numerics can change an answer;
- **the request**: prompt, turns, the sha256 of each image's bytes, the image limits;
- **the generation settings**: max_tokens, temperature, top_p, and the seed (the harness sets
  none: only temperature-0 answers are kept, where no seed matters).

Only temperature-0 answers are read or written. A changed input changes the key, so no answer is
ever served for a request it was not generated for; nothing expires otherwise. An image given as
a URL is not cached (its bytes are not known before the request). The cache lives in
`<cache dir>/responses.sqlite` (`VLM_HARNESS_CACHE`, default `~/.cache/vlm-harness`); deleting the
file empties it, and `--no-cache` leaves it unread and unwritten for one run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sqlite3
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from harness.core.records import Sample
from harness.models import ModelSpec

FORMAT = 1  # the entry's layout; part of every key
FILE = "responses.sqlite"
# Harness code every adapter's request goes through, beside the adapter's own module.
_SHARED_CODE = ("images.py", "adapters/_mlx_batch.py")
_IN_PROCESS_LIBRARIES = ("mlx", "mlx-vlm", "transformers")


def default_path() -> Path:
    from harness.core.paths import cache_dir

    return cache_dir() / FILE


class ResponseCache:
    """Answers by key in one SQLite file; the first answer stored for a key stays."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS model_hashes (stamp TEXT PRIMARY KEY, hash TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT entry FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO answers (key, entry) VALUES (?, ?)",
                             (key, json.dumps(entry, sort_keys=True)))

    def model_hash(self, directory: Path) -> str:
        """The checkpoint's content hash, read once per state of its files."""
        from harness.core import checkpoint

        facts = checkpoint.inspect(directory)
        if facts is None:
            return ""
        if facts.manifest.get("content_hash"):
            return str(facts.manifest["content_hash"])
        files = sorted(p for p in facts.path.rglob("*") if p.is_file())
        stamp = hashlib.sha256(json.dumps([str(facts.path)] + [
            [p.relative_to(facts.path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()
        ).hexdigest()
        row = self._db.execute("SELECT hash FROM model_hashes WHERE stamp = ?", (stamp,)).fetchone()
        if row:
            return str(row[0])
        value = facts.content_hash
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO model_hashes (stamp, hash) VALUES (?, ?)", (stamp, value))
        return value

    def close(self) -> None:
        self._db.close()


@cache
def _code_hash(adapter_module: str) -> str:
    root = Path(__file__).resolve().parent.parent  # the harness package
    h = hashlib.sha256()
    for path in (Path(sys.modules[adapter_module].__file__), *(root / p for p in _SHARED_CODE)):
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def identity(cache: ResponseCache, spec: ModelSpec, path: str) -> dict[str, Any] | None:
    """What of the model and its adapter determines an answer; None when it cannot be known
    before loading (a checkpoint not on this machine yet)."""
    from harness.adapters import ADAPTERS

    cls = ADAPTERS.get(spec.adapter)
    out: dict[str, Any] = {"format": FORMAT, "adapter": spec.adapter, "code": _code_hash(cls.__module__)}
    local = Path(path).expanduser()
    if getattr(cls, "CONCURRENT", False):  # a server: its address and its name for the model
        out.update(base_url=spec.option("base_url"), api_model=spec.option("api_model") or path,
                   model_hash=cache.model_hash(local) if local.is_dir() else "")
        return out
    from harness.core import checkpoint
    from harness.measure.environment import device

    resolved = checkpoint.resolve_local(path)
    if resolved is None:
        return None
    dev = device()
    out.update(model_hash=cache.model_hash(resolved), backend=dev.backend, device=dev.name,
               libraries={d: _version(d) for d in _IN_PROCESS_LIBRARIES})
    return out


def _image_digest(image: str) -> str | None:
    if image.startswith(("http://", "https://")):
        return None  # bytes unknown until fetched: never cached
    if image.startswith("data:"):
        return hashlib.sha256(image.encode()).hexdigest()
    try:
        return hashlib.sha256(Path(image).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None  # the run reports the unreadable image; nothing to key


def request_key(model: dict[str, Any], spec: ModelSpec, sample: Sample) -> str | None:
    """The key of one answer; None when it must not be cached (not temperature 0, an image
    whose bytes are not known)."""
    if spec.temperature != 0:
        return None
    digests = [_image_digest(i) for i in sample.images]
    if any(d is None for d in digests):
        return None
    request = {"model": model, "prompt": sample.prompt, "turns": list(sample.turns), "images": digests,
               "image_limits": asdict(spec.images), "max_tokens": sample.max_tokens,
               "temperature": spec.temperature, "top_p": spec.top_p, "seed": None}
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def entry(row: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a generated row: the answer, its counts, and where it came from."""
    keep = ("output", "turn_outputs", "prompt_tokens", "generated_tokens", "finish_reason", "mode", "batch_size",
            "run_id")
    out = {k: row.get(k) for k in keep}
    out["turn_outputs"] = list(out["turn_outputs"] or [])
    out["stored_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def hit_columns(found: dict[str, Any]) -> dict[str, Any]:
    """A row's columns from a cached answer: no timing, since nothing was generated."""
    return {"output": found["output"], "turn_outputs": found.get("turn_outputs") or None,
            "prompt_tokens": found.get("prompt_tokens"), "generated_tokens": found.get("generated_tokens"),
            "finish_reason": found.get("finish_reason"), "cache_hit": True}


def compare(answer: str, other: str | None) -> dict[str, Any]:
    """answer_check columns: this answer against another path's for the same request."""
    if other is None:
        return {}
    if answer == other:
        return {"answer_check": "same"}
    return {"answer_check": "differs", "answer_check_output": other}
