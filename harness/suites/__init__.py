"""Suites: declarative TOML files in suites/ that name a sample source, a prompt and a metric.

A source is a module in this package registered under SOURCES; it turns a validated suite
definition into raw samples (image files, question, answers). The loader adds the prompt
template and the hash, which covers everything that changes the samples, so results from a
changed suite never silently compare against old ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.paths import cache_dir, suites_dir
from harness.core.records import Sample, text_items
from harness.core.registry import Registry, UnknownNameError
from harness.core.tomlfile import read_toml


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
    # Why this sample cannot run (an image path outside the dataset, a refused URL): it becomes
    # one error row saying so, and the suite's other samples run.
    problem: str = ""


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
    tags: tuple[str, ...] = ()  # "default": part of a run that names no suite
    benchmark: tuple[str, ...] = ()  # published benchmark-level figures (harness/metrics/benchmarks.py)
    # A hub benchmark's column layout ([layout] table: image, question, answers, category, id,
    # choices, split, options_in_question): other suites reuse it with params.layout = "<name>".
    layout: dict[str, Any] = field(default_factory=dict)


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
    "tags": (list,), "include": (str,), "benchmark": (list,), "layout": (dict,),
}
_REQUIRED = ("name", "kind", "source", "metric", "prompt")


# How deep `include` may chain: real suites include one base file; a chain of thousands would
# otherwise end in a RecursionError.
MAX_INCLUDE_DEPTH = 32
# A suite's name becomes a folder in the cache (and a column in every row): letters, digits and
# `.`, `_`, `-` only, starting with a letter or digit, so it can never climb out of the cache
# (`..`, `/`), nest folders or carry control characters. Every bundled suite's name fits.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _with_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's fields over those of the file it includes (`include = "other.toml"`, relative
    to this file); `[params]` tables merge key by key, as lmms-eval's task `include:` does."""
    try:
        path = path.resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise SuiteError(f"{path}: is a symlink loop; point it at a suite file") from None
    if path in seen:
        raise SuiteError(f"{seen[0]}: include cycle through {path.name}")
    if len(seen) >= MAX_INCLUDE_DEPTH:
        raise SuiteError(f"{seen[0]}: 'include' chains more than {MAX_INCLUDE_DEPTH} files deep (at {path.name}); "
                         "include the base file directly")
    data = read_toml(path, "suite file", SuiteError)
    base_name = data.pop("include", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise SuiteError(f"{path}: field 'include' must be a file name, got {base_name!r}")
    base_path = (path.parent / base_name) if base_name.endswith(".toml") else path.parent / f"{base_name}.toml"
    if not base_path.is_file():
        raise SuiteError(f"{path}: field 'include' names {base_name!r}, which is not a suite file beside it")
    base = _with_includes(base_path, (*seen, path))
    merged = {**base, **data}
    if isinstance(base.get("params"), dict) and isinstance(data.get("params"), dict):
        merged["params"] = {**base["params"], **data["params"]}
    if "tags" not in data:  # tags describe a file, not what it includes
        merged.pop("tags", None)
    return merged


def _check_prompt(path: Path, prompt: str) -> None:
    """A prompt is text with `{question}` fields and `{{ }}` for literal braces, nothing more: a
    format spec (`{question:>1000000000000}`), a conversion or an attribute would let one suite
    file ask for terabytes of padding or reach into the question object, and no suite needs one."""
    fix = "use {question} for the question and {{ }} for literal braces"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(prompt) if name is not None]
    except ValueError as e:
        raise SuiteError(f"{path}: field 'prompt' is not a valid template ({e}); {fix}") from None
    for name, spec, conv in fields:
        if name != "question" or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise SuiteError(f"{path}: field 'prompt' is not a valid template (it has {shown[:60]!r}); {fix} "
                             "(no format specs, conversions or other fields)")


def parse_suite(path: Path) -> SuiteDef:
    data = _with_includes(path)
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
    if not NAME_PATTERN.fullmatch(data["name"]):
        raise SuiteError(f"{path}: field 'name' is {data['name']!r}; use 1 to 100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit, e.g. name = \"my-suite\"")
    if "{question}" not in data["prompt"]:
        raise SuiteError(f"{path}: field 'prompt' must contain {{question}}")
    if not isinstance(data.get("tags", []), list) or not all(isinstance(t, str) for t in data.get("tags", [])):
        raise SuiteError(f"{path}: field 'tags' must be a list of strings, e.g. tags = [\"default\"]")
    from harness.metrics.benchmarks import BENCHMARKS

    for name in data.get("benchmark", []):
        if name not in BENCHMARKS:
            raise SuiteError(f"{path}: field 'benchmark' names {name!r}; known: {', '.join(BENCHMARKS.names())}")
    from harness.metrics import METRICS

    for key, registry in (("source", SOURCES), ("metric", METRICS)):
        try:
            registry.get(data[key])
        except UnknownNameError as e:
            raise SuiteError(f"{path}: field {key!r}: {e}") from None
    _check_prompt(path, data["prompt"])
    for key, lo, hi in (("max_tokens", 1, 4096), ("samples", 1, 100_000), ("seed", 0, 2**32 - 1)):
        if key in data and not lo <= data[key] <= hi:
            raise SuiteError(f"{path}: field {key!r} is {data[key]}; allowed {lo}..{hi}")
    return SuiteDef(
        name=data["name"], kind=data["kind"], source=data["source"], metric=data["metric"],
        prompt=data["prompt"], max_tokens=data.get("max_tokens", 16), samples=data.get("samples", 20),
        seed=data.get("seed", 0), description=data.get("description", ""), params=data.get("params", {}),
        path=path, tags=tuple(data.get("tags", ())), benchmark=tuple(data.get("benchmark", ())),
        layout=data.get("layout", {}),
    )


def suite_files() -> dict[str, Path]:
    files = {}
    for path in sorted(suites_dir().glob("*.toml")):
        files[path.stem] = path
    return files


def default_suites() -> list[str]:
    """Suites tagged "default" (every suite that runs offline): what a run naming no suite runs."""
    names = []
    for name, path in suite_files().items():
        try:
            if "default" in parse_suite(path).tags:
                names.append(name)
        except SuiteError:
            continue  # a broken file is reported when it is named, not when it merely sits there
    return names


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
    """sha256 of an image file; a file the run cannot read (a FIFO, a device, over the image byte
    limit) is hashed by what it is, and its sample's row says why when it runs."""
    from harness.core.files import NotReadable, read_regular
    from harness.images import BOUNDS

    try:
        return hashlib.sha256(read_regular(path, int(BOUNDS["max_bytes"]))).hexdigest()
    except NotReadable:
        return "unreadable"


def generator_files(source: str) -> list[Path]:
    """A source module and the sibling modules it imports from (`from harness.suites.X import`),
    transitively: the code that draws a suite's images."""
    here = Path(__file__).parent
    found: list[Path] = []
    todo = [source]
    while todo:
        path = here / f"{todo.pop()}.py"
        if path in found or not path.exists():
            continue
        found.append(path)
        todo += re.findall(r"^from harness\.suites\.(\w+) import", path.read_text(), flags=re.M)
    return sorted(found)


def _cache_key(defn: SuiteDef) -> str:
    """The definition and its generator's own code: images cached by an older generator are
    never reused for a newer one, and a new generator beside it invalidates nothing."""
    h = hashlib.sha256(defn.canonical().encode())
    for path in generator_files(defn.source):
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
        try:  # the Sample's rule (a bare string is one answer, None refused), before the hash reads them
            r = replace(r, answers=text_items(r.answers, "answers"), keywords=text_items(r.keywords, "keywords"),
                        choices=text_items(r.choices, "choices"), turns=text_items(r.turns, "turns"))
        except ValueError as e:
            raise SuiteError(f"{defn.path}: sample {r.id!r}: {e}") from None
        if not r.answers:
            raise SuiteError(f"{defn.path}: sample {r.id!r} has no answer")
        digests = (["refused"] if r.problem else
                   [_file_digest(p) if p.exists() else "missing" for p in r.images])
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
                turns=tuple(defn.prompt.format(question=t) for t in r.turns), problem=r.problem,
            )
        )
    return Suite(definition=defn, hash=h.hexdigest(), samples=tuple(samples))


def load_suite(name_or_path: str, limit: int | None = None) -> Suite:
    """The suite's samples; with `limit`, only the first `limit` are generated (never all of
    them first), and the hash covers exactly the samples measured."""
    defn = find_suite(name_or_path)
    if limit is not None and limit < 1:
        raise SuiteError(f"--limit must be at least 1, got {limit}")
    if limit is not None and limit < defn.samples:
        defn = replace(defn, samples=limit)
    return materialise(defn)


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
