"""Two git revisions benchmarked in the same job, their runs interleaved, as `asv continuous` does.

On a shared CI runner the load changes from minute to minute, so a baseline measured yesterday
(or an hour ago) differs from today's run by more than most regressions. Measuring both
revisions here, alternating them (A B, then B A, ...) for each model, puts the same load on
both; several rounds give the gate several runs a side, from which it estimates between-run
noise (harness/gate/compare.py). Each revision runs from its own `git worktree` checkout with
PYTHONPATH pointing at it, in this Python environment: no virtualenv per revision, so a
revision that changes dependencies needs them installed here first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class InterleaveError(RuntimeError):
    """A revision cannot be checked out or its benchmark cannot start; the message says which."""


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InterleaveError(f"git {' '.join(args)}: {' '.join(proc.stderr.split())[:300]}")
    return proc.stdout.strip()


def checkout(repo: Path, rev: str, where: Path) -> str:
    """A detached worktree of `rev` at `where`; returns the full commit id."""
    commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    if where.exists():
        _git(repo, "worktree", "remove", "--force", str(where))
    _git(repo, "worktree", "add", "--detach", str(where), commit)
    return commit


def measure_interleaved(rev_a: str, rev_b: str, *, out: Path, rounds: int = 5, models: Sequence[str] = (),
                        suites: Sequence[str] = (), limit: int | None = None, repo: Path | None = None,
                        extra: Sequence[str] = ()) -> tuple[list[Path], list[Path]]:
    """Benchmark both revisions `rounds` times per model, alternating; returns (A's runs, B's runs).

    Without models, each round runs every default model in one invocation per revision."""
    repo = Path(repo) if repo else Path.cwd()
    root = Path(_git(repo, "rev-parse", "--show-toplevel"))
    out = Path(out).resolve()
    trees = {"a": out / "checkouts" / "a", "b": out / "checkouts" / "b"}
    commits = {}
    runs: dict[str, list[Path]] = {"a": [], "b": []}
    try:
        for side, rev in (("a", rev_a), ("b", rev_b)):
            commits[side] = checkout(root, rev, trees[side])
        groups = [[m] for m in models] or [[]]
        for r in range(rounds):
            for k, group in enumerate(groups):
                # A B, then B A: a drift in load during a round falls on both revisions alike.
                for side in ("a", "b") if (r + k) % 2 == 0 else ("b", "a"):
                    run_id = f"{side}-{commits[side][:10]}-r{r}" + (f"-m{k}" if models else "")
                    cmd = [sys.executable, "-m", "harness.cli", "run", "--out", str(out / side), "--run-id", run_id,
                           "--no-progress", *(a for m in group for a in ("-m", m)),
                           *(a for s in suites for a in ("-s", s)), *(["--limit", str(limit)] if limit else []),
                           *extra]
                    env = {**os.environ, "PYTHONPATH": str(trees[side])}
                    print(f"interleave: round {r + 1}/{rounds}, revision {side.upper()} "
                          f"({commits[side][:10]}){' ' + group[0] if group else ''}", file=sys.stderr)
                    proc = subprocess.run(cmd, cwd=trees[side], env=env, stdout=subprocess.DEVNULL)
                    if proc.returncode == 2:
                        raise InterleaveError(f"the benchmark of revision {side.upper()} ({commits[side][:10]}) "
                                              f"refused its arguments: {' '.join(cmd[3:])}")
                    run_dir = out / side / run_id
                    if not (run_dir / "results.parquet").exists() and not (run_dir / "parts").exists():
                        raise InterleaveError(f"revision {side.upper()} ({commits[side][:10]}) wrote no results "
                                              f"(exit {proc.returncode})")
                    runs[side].append(run_dir)
    finally:
        for tree in trees.values():
            if tree.exists():
                subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
        shutil.rmtree(out / "checkouts", ignore_errors=True)
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True)
    return runs["a"], runs["b"]
