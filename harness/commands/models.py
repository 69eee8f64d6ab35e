from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import command


@command("models", "list known models and whether each is available here", lambda p: None)
def run(args: argparse.Namespace) -> int:
    from harness.fixtures.build import default_root, is_valid
    from harness.models import known_models

    for name, spec in known_models().items():
        if spec.is_fixture:
            here = "built" if is_valid(default_root() / spec.source.split(":", 1)[1]) else "built on first use"
        elif Path(spec.source).expanduser().is_dir():
            here = "on disk"
        else:
            here = "needs the hub (or a local copy)"
        print(f"{name:32} {spec.adapter:8} {here:30} {spec.description}")
    return 0
