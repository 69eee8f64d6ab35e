"""Model specs: which checkpoint, through which adapter, with which generation settings.

A model is named by a TOML file in models/, by a built-in offline fixture (`fixture-<arch>`,
`fixture-<arch>-4bit`), by a checkpoint directory, or by a hub id.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from harness.images import ImageLimits
from harness.paths import project_root


class ModelError(ValueError):
    """A model name, file or checkpoint that cannot be used; the message says what to do."""


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
    # For the memory check before a checkpoint is on disk (harness/memory_safety.py).
    params_b: float = 0.0  # approximate parameter count, billions
    weight_bytes: int = 0  # approximate size of the weights, bytes
    # [images] table: resize and limits (harness/images.py)
    images: ImageLimits = ImageLimits()
    # adapter = "openai": the server, and how long one request may take
    base_url: str = ""
    api_model: str = ""  # the name the server knows the model by (default: source)
    api_key_env: str = ""  # environment variable holding a bearer token, if the server wants one
    timeout_s: float = 120.0

    @property
    def is_fixture(self) -> bool:
        return self.source.startswith("fixture:")


FIXTURE_PREFIX = "fixture-"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def models_dir() -> Path:
    return project_root() / "models"


def parse_model_file(path: Path) -> ModelSpec:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{path}: not valid TOML: {e}") from None
    allowed = {f.name for f in fields(ModelSpec)}
    for key in data:
        if key not in allowed:
            raise ModelError(f"{path}: unknown field {key!r}; allowed: {', '.join(sorted(allowed))}")
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
    return value


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
    if "adapter" in out:
        from harness.adapters import ADAPTERS

        if out["adapter"] not in ADAPTERS:
            raise ModelError(f"{path}: field 'adapter' is {out['adapter']!r}; known: {', '.join(ADAPTERS.names())}")
    if out.get("adapter") == "openai" and not out.get("base_url"):
        raise ModelError(f"{path}: adapter 'openai' needs base_url (e.g. \"http://127.0.0.1:8080/v1\")")
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


def known_models() -> dict[str, ModelSpec]:
    specs = fixture_specs()
    if models_dir().is_dir():
        for path in sorted(models_dir().glob("*.toml")):
            spec = parse_model_file(path)
            specs[spec.name] = spec
            for alias in spec.aliases:
                specs.setdefault(alias, spec)
    return specs


def resolve(name: str) -> ModelSpec:
    known = known_models()
    if name in known:
        return known[name]
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
    if adapter == spec.adapter and base_url in ("", spec.base_url):
        return spec
    if adapter == "openai" and not (base_url or spec.base_url):
        raise ModelError("--adapter openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
    return replace(spec, name=f"{spec.name}@{adapter}", adapter=adapter, base_url=base_url or spec.base_url)


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
