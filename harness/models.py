"""Model specs: which checkpoint, through which adapter, with which generation settings.

A model is named by a TOML file in models/, by a built-in offline fixture (`fixture-<arch>`,
`fixture-<arch>-4bit`), by a checkpoint directory, or by a hub id.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.core.paths import project_root
from harness.core.registry import Registry
from harness.core.tomlfile import read_toml
from harness.images import ImageLimits


class ModelError(ValueError):
    """A model name, file or checkpoint that cannot be used; the message says what to do."""


# The backends a model file may name. The registry lives here, below the adapters, because a
# model file is checked against it; its modules (harness/adapters/*.py) are found by name on
# first lookup and register themselves, so the adapters import this module and not the reverse.
ADAPTERS: Registry[Any] = Registry("adapter", "harness.adapters")


@dataclass(frozen=True)
class Option:
    """A setting one adapter reads from a model file (declared in the adapter's OPTIONS), so
    the model spec carries no adapter's fields by hand."""

    type: type
    default: Any
    help: str
    required: bool = False
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # a directory, a hub id, or fixture:<arch>[-4bit]
    adapter: str = "mlx_vlm"
    description: str = ""
    max_tokens: int = 0  # 0: the suite's limit
    temperature: float = 0.0
    top_p: float = 1.0
    quantization: str = ""  # as published ("4bit", "bf16"); the checkpoint's config wins when loaded
    aliases: tuple[str, ...] = ()  # short names that resolve to this model
    # For the memory check before a checkpoint is on disk (harness/measure/memory_safety.py).
    params_b: float = 0.0  # approximate parameter count, billions
    weight_bytes: int = 0  # approximate size of the weights, bytes
    # [images] table: resize and limits (harness/images.py)
    images: ImageLimits = ImageLimits()
    # Settings the adapter itself declares (its OPTIONS, e.g. the openai adapter's base_url),
    # written at the top level of a model file like any field.
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Any:
        """An adapter setting: the model's own value, else the adapter's default."""
        if name in self.options:
            return self.options[name]
        return ADAPTERS.get(self.adapter).OPTIONS[name].default

    @property
    def is_fixture(self) -> bool:
        return self.source.startswith("fixture:")


FIXTURE_PREFIX = "fixture-"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def models_dir() -> Path:
    return project_root() / "models"


def parse_model_file(path: Path) -> ModelSpec:
    data = read_toml(path, "model file", ModelError)
    if "options" in data:
        raise ModelError(f"{path}: field 'options' is not written as such: give the adapter's settings at the "
                         "top level (e.g. base_url = \"http://127.0.0.1:8080/v1\")")
    data.setdefault("name", path.stem)
    if "source" not in data:
        raise ModelError(f"{path}: missing required field 'source' (a directory, hub id or fixture:<arch>)")
    source = data["source"]
    if isinstance(source, str) and not source.startswith("fixture:") and not Path(source).is_absolute():
        # A checkpoint kept in the checkout (datasets/reference/...) resolves against the
        # project root, wherever the command runs from; a hub id stays as it is.
        local = project_root() / source
        if local.is_dir() or source.startswith("."):
            data["source"] = str(local.resolve())
    return ModelSpec(**_validated(path, data))


def _check_type(path: Path, name: str, value: object, want: type) -> object:
    ok = isinstance(value, want) and not (want in (int, float) and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ModelError(f"{path}: field {name!r} must be {want.__name__}, got {type(value).__name__} {value!r}")
    if want in (int, float) and value < 0:
        raise ModelError(f"{path}: field {name!r} must not be negative, got {value!r}")
    lo, hi = RANGES.get(name, (None, None))
    if hi is not None and not lo <= value <= hi:
        raise ModelError(f"{path}: field {name!r} is {value!r}; allowed {lo}..{hi}")
    return value


# Fields with a range beyond "not negative": what a server or mlx_vlm accepts, and sanity.
RANGES: dict[str, tuple[float, float]] = {
    "max_tokens": (0, 32768), "temperature": (0.0, 5.0), "top_p": (0.0, 1.0), "params_b": (0.0, 10_000.0),
}


def _validated(path: Path, data: dict) -> dict:
    """Type-check every field so a typo fails here, naming the file and field, not mid-run."""
    types = {"str": str, "int": int, "float": float}
    out = dict(data)
    for f in fields(ModelSpec):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "aliases":
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise ModelError(f"{path}: field 'aliases' must be a list of strings")
            out[f.name] = tuple(value)
        elif f.name == "images":
            if not isinstance(value, dict):
                raise ModelError(f"{path}: [images] must be a table")
            try:
                out[f.name] = ImageLimits.from_dict(value)
            except (TypeError, ValueError) as e:
                raise ModelError(f"{path}: [images] {e}") from None
        elif f.type in types:
            out[f.name] = _check_type(path, f.name, value, types[f.type])
    adapter = out.get("adapter", "mlx_vlm")
    if adapter not in ADAPTERS:
        raise ModelError(f"{path}: field 'adapter' is {adapter!r}; known: {', '.join(ADAPTERS.names())}")
    declared = getattr(ADAPTERS.get(adapter), "OPTIONS", {})
    options = {}
    for key in [k for k in out if k not in {f.name for f in fields(ModelSpec)}]:
        opt = declared.get(key)
        if opt is None:
            allowed = sorted({f.name for f in fields(ModelSpec)} - {"options"} | set(declared))
            raise ModelError(f"{path}: unknown field {key!r} for adapter {adapter!r}; allowed: {', '.join(allowed)}")
        value = _check_type(path, key, out.pop(key), opt.type)
        if opt.range is not None and not opt.range[0] <= value <= opt.range[1]:
            raise ModelError(f"{path}: field {key!r} is {value!r}; allowed {opt.range[0]}..{opt.range[1]}")
        options[key] = value
    for key, opt in declared.items():
        if opt.required and not options.get(key):
            raise ModelError(f"{path}: adapter {adapter!r} needs {key} ({opt.help})")
    out["options"] = options
    return out


def fixture_specs() -> dict[str, ModelSpec]:
    from harness.fixtures import FIXTURES

    out = {}
    for arch in FIXTURES.names():
        for suffix in ("", "-4bit"):
            name = f"{FIXTURE_PREFIX}{arch}{suffix}"
            out[name] = ModelSpec(
                name=name, source=f"fixture:{arch}{suffix}",
                description=f"tiny random-weight {arch} ({'4-bit' if suffix else 'full precision'}), built offline",
            )
    return out


def model_files() -> tuple[dict[str, ModelSpec], dict[str, ModelError]]:
    """Specs from models/*.toml, and the files that could not be read, each apart: one bad file
    affects only the model it describes."""
    specs: dict[str, ModelSpec] = {}
    broken: dict[str, ModelError] = {}
    if models_dir().is_dir():
        for path in sorted(models_dir().glob("*.toml")):
            try:
                spec = parse_model_file(path)
            except ModelError as e:
                broken[path.stem] = e
                continue
            specs[spec.name] = spec
            for alias in spec.aliases:
                specs.setdefault(alias, spec)
    return specs, broken


def known_models() -> dict[str, ModelSpec]:
    specs = fixture_specs()
    files, _ = model_files()
    for name, spec in files.items():
        if name == spec.name:  # a model file's own name wins over a fixture's
            specs[name] = spec
        else:  # an alias never hides another model
            specs.setdefault(name, spec)
    return specs


def resolve(name: str) -> ModelSpec:
    known = known_models()
    if name in known:
        return known[name]
    _, broken = model_files()
    stem = Path(name).stem if name.endswith(".toml") else name.rsplit("/", 1)[-1].lower()
    for key in (name, stem):
        if key in broken:
            raise broken[key]
    path = Path(name).expanduser()
    if path.suffix == ".toml" and path.is_file():
        return parse_model_file(path)
    if path.is_dir():
        return ModelSpec(name=name, source=str(path.resolve()))
    if name.startswith((".", "/", "~")) or path.parent != Path("."):
        if not _HUB_ID.match(name):
            raise ModelError(f"checkpoint directory {name} does not exist; build fixtures with "
                             "`vlm-harness fixtures build` or give an existing directory")
    if _HUB_ID.match(name):
        return ModelSpec(name=name, source=name)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelError(f"unknown model {name!r}.{hint} Give a name from `vlm-harness models`, a checkpoint "
                     "directory, or a hub id like mlx-community/Qwen2.5-VL-3B-Instruct-4bit")


def with_adapter(spec: ModelSpec, adapter: str, base_url: str = "") -> ModelSpec:
    """The same checkpoint through another adapter (`run --adapter`), named apart so both runs
    can sit side by side in one report."""
    current = spec.options.get("base_url", "")
    if adapter == spec.adapter and base_url in ("", current):
        return spec
    options = {**spec.options, **({"base_url": base_url} if base_url else {})}
    if adapter not in ADAPTERS:
        raise ModelError(f"--adapter {adapter!r} is not one of {', '.join(ADAPTERS.names())}")
    for key, opt in getattr(ADAPTERS.get(adapter), "OPTIONS", {}).items():
        if opt.required and not options.get(key):
            raise ModelError(f"--adapter {adapter} needs --{key.replace('_', '-')} ({opt.help})")
    return replace(spec, name=f"{spec.name}@{adapter}", adapter=adapter, options=options)


def default_models() -> list[str]:
    """The offline fixtures, and the trained reference model when its checkpoint is present."""
    from harness.reference import NAME

    names = sorted(fixture_specs())
    spec = known_models().get(NAME)
    if spec is not None and Path(spec.source).is_dir():
        names.append(NAME)
    return names


def checkpoint_path(spec: ModelSpec, fixtures_root: Path | None = None, say: Callable[[str], None] | None = None) -> str:
    """Where the adapter loads `spec` from: a fixture is built on first use (in `fixtures_root`,
    default ~/.cache/vlm-harness/fixtures); anything else is its source as given."""
    if not spec.is_fixture:
        return spec.source
    from harness.fixtures.build import build_arch, default_root, fixture_name

    root = fixtures_root or default_root()
    name = spec.source.split(":", 1)[1]
    arch = name.removesuffix("-4bit")
    path = root / fixture_name(arch, "4bit" if name.endswith("-4bit") else "full")
    if not path.exists() and say:
        say(f"building fixture {arch} in {root}")
    build_arch(arch, root)
    return str(path)
