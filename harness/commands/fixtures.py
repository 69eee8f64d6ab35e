from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import command


def configure(f: argparse.ArgumentParser) -> None:
    f.add_argument("action", choices=["build", "list", "train-reference"],
                   help="build/list the random-weight checkpoints; train-reference: train the reference model")
    f.add_argument("dir", nargs="?", help="where they live (default: ~/.cache/vlm-harness/fixtures; "
                   "train-reference: datasets/reference/shapes)")
    f.add_argument("--arch", action="append", help="only this architecture (repeatable)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--preset", action="append", help="build: a random-weight checkpoint with a published model's "
                   "dimensions, bf16 and 4-bit, as DIR/preset-NAME[-4bit] (repeatable): qwen2.5-vl-7b (7b), "
                   "qwen2.5-vl-3b (3b), llava-1.6-mistral-7b, phi-3.5-vision, smolvlm2-2.2b; DIR goes before --preset")
    f.add_argument("--out", help="train-reference: checkpoint directory (same as DIR)")
    f.add_argument("--steps", type=int, help="train-reference: training steps (default: as the committed checkpoint)")
    f.add_argument("--heldout", type=int, help="train-reference: held-out samples scored through the harness after "
                   "training (default 150; 0 skips)")
    f.add_argument("--no-openblas", action="store_true", help="train-reference: do not preload opencv-python's OpenBLAS")
    f.add_argument("--no-progress", action="store_true", help="train-reference: no progress bar")
    f.add_argument("--force", action="store_true", help="rebuild even when valid")


@command("fixtures", "build or list the offline random-weight checkpoints; train the reference model", configure)
def run(args: argparse.Namespace) -> int:
    if args.action == "train-reference":
        from harness.run import reference_build as build

        args.out = args.out or args.dir
        args.steps = build.DEFAULT_STEPS if args.steps is None else args.steps
        args.heldout = build.DEFAULT_HELDOUT if args.heldout is None else args.heldout
        return build.run(args)
    from harness.fixtures import FIXTURES
    from harness.fixtures.build import build_all, default_root, is_valid, read_manifest

    root = Path(args.dir) if args.dir else default_root()
    if args.action == "build" and args.preset:
        from harness.fixtures.presets import build_preset, resolve

        try:
            chosen = [resolve(name) for name in args.preset]
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
        for preset in chosen:
            for path in build_preset(preset, root, seed=args.seed, force=args.force):
                m = read_manifest(path) or {}
                print(f"{path}  {m.get('size_bytes', 0) / 1e9:.2f} GB  {m.get('parameters', 0) / 1e9:.2f} B params  "
                      f"sha256 {m.get('content_hash', '')[:16]}")
        return 0
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
