"""Suites: declarative TOML files in suites/ that name a sample source, a prompt and a metric.

A source is a module in this package registered under SOURCES; it turns a validated suite
definition into raw samples (image files, question, answers). The loader adds the prompt
template and the hash, which covers everything that changes the samples, so results from a
changed suite never silently compare against old ones.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.paths import cache_dir, suites_dir
from harness.records import Sample
from harness.registry import Registry, UnknownNameError


class SuiteError(ValueError):
    """A suite file or its data is wrong; the message names the file, field and fix."""


class SuiteUnavailable(SuiteError):
    """A valid suite whose data this machine cannot reach (a hub dataset, offline, not cached)."""


@dataclass(frozen=True)
class RawSample:
    id: str
    images: tuple[Path, ...]
    question: str
    answers: tuple[str, ...]
    category: str
    metric: str | None = None  # overrides the suite's metric for this sample
    keywords: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # multiple-choice option texts, A first
    turns: tuple[str, ...] = ()  # follow-up questions after `question`; answers score the last


@dataclass(frozen=True)
class SuiteDef:
    name: str
    kind: str
    source: str
    metric: str
    prompt: str
    max_tokens: int
    samples: int
    seed: int
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def canonical(self) -> str:
        d = {k: getattr(self, k) for k in ("name", "kind", "source", "metric", "prompt", "max_tokens", "samples", "seed", "params")}
        return json.dumps(d, sort_keys=True)


@dataclass(frozen=True)
class Suite:
    definition: SuiteDef
    hash: str
    samples: tuple[Sample, ...]

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> str:
        return self.definition.kind


Source = Callable[[SuiteDef, Path], list[RawSample]]
SOURCES: Registry[Source] = Registry("suite source", "harness.suites")

KINDS = ("natural", "synthetic")
_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "kind": (str,), "source": (str,), "metric": (str,), "prompt": (str,),
    "max_tokens": (int,), "samples": (int,), "seed": (int,), "description": (str,), "params": (dict,),
}
_REQUIRED = ("name", "kind", "source", "metric", "prompt")


def parse_suite(path: Path) -> SuiteDef:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: not valid TOML: {e}") from None
    for key, value in data.items():
        if key not in _FIELDS:
            raise SuiteError(f"{path}: unknown field {key!r}; allowed: {', '.join(_FIELDS)}")
        if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
            want = "/".join(t.__name__ for t in _FIELDS[key])
            raise SuiteError(f"{path}: field {key!r} must be {want}, got {value!r}")
    for key in _REQUIRED:
        if key not in data:
            raise SuiteError(f"{path}: missing required field {key!r}")
    if data["kind"] not in KINDS:
        raise SuiteError(f"{path}: field 'kind' is {data['kind']!r}; allowed: {', '.join(KINDS)}")
    if "{question}" not in data["prompt"]:
        raise SuiteError(f"{path}: field 'prompt' must contain {{question}}")
    from harness.metrics import METRICS

    for key, registry in (("source", SOURCES), ("metric", METRICS)):
        try:
            registry.get(data[key])
        except UnknownNameError as e:
            raise SuiteError(f"{path}: field {key!r}: {e}") from None
    for key, lo, hi in (("max_tokens", 1, 4096), ("samples", 1, 100_000)):
        if key in data and not lo <= data[key] <= hi:
            raise SuiteError(f"{path}: field {key!r} is {data[key]}; allowed {lo}..{hi}")
    return SuiteDef(
        name=data["name"], kind=data["kind"], source=data["source"], metric=data["metric"],
        prompt=data["prompt"], max_tokens=data.get("max_tokens", 16), samples=data.get("samples", 20),
        seed=data.get("seed", 0), description=data.get("description", ""), params=data.get("params", {}),
        path=path,
    )


def suite_files() -> dict[str, Path]:
    files = {}
    for path in sorted(suites_dir().glob("*.toml")):
        files[path.stem] = path
    return files


def find_suite(name_or_path: str) -> SuiteDef:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return parse_suite(path)
    files = suite_files()
    if name_or_path not in files:
        import difflib

        close = difflib.get_close_matches(name_or_path, files, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SuiteError(
            f"unknown suite {name_or_path!r}.{hint} Known: {', '.join(files) or 'none'} "
            f"(in {suites_dir()}); or give a path to a .toml suite file"
        )
    return parse_suite(files[name_or_path])


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_key(defn: SuiteDef) -> str:
    """The definition and the generators' code: images cached by an older generator are never
    reused for a newer one (the suite hash would differ from a fresh build's)."""
    h = hashlib.sha256(defn.canonical().encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def materialise(defn: SuiteDef, workdir: Path | None = None) -> Suite:
    """Generate or read the samples, check them, and hash the result."""
    source = SOURCES.get(defn.source)
    workdir = workdir or cache_dir() / "suites" / f"{defn.name}-{_cache_key(defn)}"
    workdir.mkdir(parents=True, exist_ok=True)
    raw = source(defn, workdir)
    h = hashlib.sha256(defn.canonical().encode())
    samples = []
    seen: set[str] = set()
    for r in raw:
        if r.id in seen:
            raise SuiteError(f"{defn.path}: duplicate sample id {r.id!r}")
        seen.add(r.id)
        if not r.answers:
            raise SuiteError(f"{defn.path}: sample {r.id!r} has no answer")
        digests = [_file_digest(p) if p.exists() else "missing" for p in r.images]
        # Choices and turns join the hash only when present, so suites without them keep their hashes.
        h.update(json.dumps([r.id, r.question, list(r.answers), r.category, r.metric, list(r.keywords), digests]
                            + ([list(r.choices)] if r.choices else [])
                            + ([["turns", *r.turns]] if r.turns else [])).encode())
        samples.append(
            Sample(
                suite=defn.name, id=r.id, images=tuple(str(p) for p in r.images),
                prompt=defn.prompt.format(question=r.question), answers=r.answers,
                category=r.category, metric=r.metric or defn.metric, max_tokens=defn.max_tokens,
                keywords=r.keywords, choices=r.choices,
                turns=tuple(defn.prompt.format(question=t) for t in r.turns),
            )
        )
    return Suite(definition=defn, hash=h.hexdigest(), samples=tuple(samples))


def load_suite(name_or_path: str) -> Suite:
    return materialise(find_suite(name_or_path))


def check_params(defn: SuiteDef, spec: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Validate a source's params against {name: (default, allowed)}; allowed is a range
    (lo, hi) for numbers or a tuple of choices for strings and lists of strings."""
    out = {}
    for key in defn.params:
        if key not in spec:
            raise SuiteError(f"{defn.path}: unknown param {key!r} for source {defn.source!r}; allowed: {', '.join(spec)}")
    for key, (default, allowed) in spec.items():
        value = defn.params.get(key, default)
        if isinstance(default, bool) or isinstance(default, str):
            ok = value in allowed
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and allowed[0] <= value <= allowed[1]
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, list) and len(value) > 0 and all(v in allowed for v in value)
        else:
            ok = True
        if not ok:
            raise SuiteError(f"{defn.path}: param {key!r} is {value!r}; allowed: {allowed}")
        out[key] = value
    return out
