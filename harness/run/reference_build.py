"""`vlm-harness fixtures train-reference`: train, evaluate through the harness, write the manifest.

MLX's CPU wheel links a slow reference BLAS. When the OpenBLAS that ships inside the
opencv-python wheel is present, training re-runs itself in a child process with that library
preloaded (LD_PRELOAD affects only that child), roughly 30x faster float32 GEMM; the manifest
records which BLAS trained the weights, since bitwise reproducibility holds per BLAS.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.reference import default_dir
from harness.reference.train import TrainConfig

_CHILD_MARK = "VLM_HARNESS_REFERENCE_BLAS"
DEFAULT_STEPS = TrainConfig.steps
DEFAULT_HELDOUT = 150


def openblas_path() -> Path | None:
    """The OpenBLAS library bundled with opencv-python, found without importing cv2."""
    if not sys.platform.startswith("linux"):
        return None
    spec = importlib.util.find_spec("cv2")
    if spec is None or not spec.origin:
        return None
    libs = Path(spec.origin).resolve().parent.parent / "opencv_python.libs"
    found = sorted(libs.glob("libopenblas*.so*")) if libs.is_dir() else []
    return found[0] if found else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="checkpoint directory (default: datasets/reference/shapes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    p.add_argument("--heldout", type=int, default=DEFAULT_HELDOUT,
                   help=f"held-out samples scored through the harness afterwards (default {DEFAULT_HELDOUT}; 0: skip)")
    p.add_argument("--no-openblas", action="store_true", help="train with MLX's bundled BLAS (slow, but no preload)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build(out: Path, cfg: TrainConfig, *, heldout: int = DEFAULT_HELDOUT, progress: bool = True) -> dict[str, Any]:
    """Train into a temporary directory beside `out`, evaluate, write the manifest, then swap it
    in: an interrupted run never leaves a half-written checkpoint where bench would load it."""
    from harness.reference.train import write_manifest
    from harness.run.reference_eval import HELDOUT_SUITE, evaluate, format_table

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        work = Path(tmp) / out.name
        manifest = train_into(work, cfg, progress=progress)
        preload = os.environ.get(_CHILD_MARK, "")
        manifest["blas"] = {"preloaded": Path(preload).name if preload else None, "mapped": manifest.pop("blas")}
        if heldout:
            print(f"scoring {heldout} held-out samples ({HELDOUT_SUITE}) through the harness", file=sys.stderr)
            table = evaluate(work, HELDOUT_SUITE, limit=heldout)
            manifest["heldout"] = {"suite": HELDOUT_SUITE, "metric": "exact_match", "ci": "bootstrap 95 %", **table}
            print(format_table(table), file=sys.stderr)
        manifest["total_time_s"] = round(time.perf_counter() - t0, 1)
        manifest = write_manifest(work, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    return manifest


def train_into(work: Path, cfg: TrainConfig, *, progress: bool) -> dict[str, Any]:
    from harness.reference.train import train

    return train(work, cfg, progress=progress)


def run(args: argparse.Namespace) -> int:
    """Entry point of the command: re-exec under OpenBLAS when possible, else train here."""
    for name, value, low in (("--steps", args.steps, 1), ("--heldout", args.heldout, 0)):
        if value < low:
            print(f"vlm-harness fixtures train-reference: {name} must be at least {low}, got {value}", file=sys.stderr)
            return 2
    out = Path(args.out).expanduser() if args.out else default_dir()
    lib = None if args.no_openblas or os.environ.get(_CHILD_MARK) is not None else openblas_path()
    if lib is not None:
        env = {**os.environ, _CHILD_MARK: str(lib), "LD_PRELOAD": f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip(),
               # A fixed thread count keeps OpenBLAS's work split, hence its results, the same.
               "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "2")}
        cmd = [sys.executable, "-m", "harness.run.reference_build", "--out", str(out), "--seed", str(args.seed),
               "--steps", str(args.steps), "--heldout", str(args.heldout)] + (["--no-progress"] if args.no_progress else [])
        return subprocess.call(cmd, env=env)
    manifest = build(out, TrainConfig(seed=args.seed, steps=args.steps), heldout=args.heldout, progress=not args.no_progress)
    blas = manifest["blas"]["preloaded"] or "MLX bundled BLAS"
    print(f"{out}  {manifest['size_bytes'] / 1e6:.2f} MB  sha256 {manifest['content_hash'][:16]}  "
          f"trained {manifest['train_time_s']:.0f} s on {blas}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.run.reference_build", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
