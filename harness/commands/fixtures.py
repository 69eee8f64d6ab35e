from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import command


def configure(f: argparse.ArgumentParser) -> None:
    f.add_argument("action", choices=["build", "list"])
    f.add_argument("dir", nargs="?", help="where they live (default: ~/.cache/vlm-harness/fixtures)")
    f.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--force", action="store_true", help="rebuild even when valid")


@command("fixtures", "build or list the offline random-weight checkpoints", configure)
def run(args: argparse.Namespace) -> int:
    from harness.fixtures import FIXTURES
    from harness.fixtures.build import build_all, default_root, is_valid, read_manifest

    root = Path(args.dir) if args.dir else default_root()
    if args.action == "build":
        for path in build_all(root, args.arch or None, seed=args.seed, force=args.force):
            m = read_manifest(path) or {}
            print(f"{path}  {m.get('size_bytes', 0) / 1e6:.2f} MB  sha256 {m.get('content_hash', '')[:16]}")
        return 0
    for arch in FIXTURES.names():
        for suffix in ("", "-4bit"):
            path = root / f"{arch}{suffix}"
            state = "ok" if is_valid(path) else ("stale" if path.exists() else "not built")
            print(f"fixture-{arch}{suffix:6}  {state:9}  {path}")
    return 0
