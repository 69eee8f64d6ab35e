"""Model specs: which checkpoint, through which adapter, with which generation settings.

A model is named by a TOML file in models/, by a built-in offline fixture (`fixture-<arch>`,
`fixture-<arch>-4bit`), by a checkpoint directory, or by a hub id.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

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
    return ModelSpec(**data)


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


def default_models() -> list[str]:
    return sorted(fixture_specs())
