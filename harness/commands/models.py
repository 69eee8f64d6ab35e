from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import command


@command("models", "list known models and whether each is available here", lambda p: None)
def run(args: argparse.Namespace) -> int:
    from harness.fixtures.build import default_root, is_valid
    from harness.models import known_models, model_files

    for name, spec in known_models().items():
        if name != spec.name:
            continue  # an alias: shown with its model
        if spec.is_fixture:
            here = "built" if is_valid(default_root() / spec.source.split(":", 1)[1]) else "built on first use"
        elif spec.adapter == "openai":
            here = f"served at {spec.option('base_url')}"
        elif Path(spec.source).expanduser().is_dir():
            here = "on disk"
        elif _in_hub_cache(spec.source):
            here = "in the local HF cache"
        else:
            here = "needs the hub (or a local copy)"
        extra = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        size = f"~{spec.weight_bytes / 1e9:.1f} GB" if spec.weight_bytes else ""
        print(f"{name:42} {spec.adapter:8} {spec.quantization or '':5} {size:9} {here:32} {spec.description}{extra}")
    _, broken = model_files()
    for stem, error in broken.items():  # listed, not fatal: every other model still works
        print(f"{stem:42} error: {error}")
    return 1 if broken else 0


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id, or no huggingface_hub: not cached
        return False
