"""Sessions: bench (the offline benchmark, or one shard of it), gate (the latest run against the
baseline, or two revisions measured interleaved), merge (runs, shards and machines into one
report), summary (gate Markdown into a CI job summary), tests, tests_transformers (the optional
transformers adapter, with CPU torch), tests_ray (the Ray fleet engine), perf, lint."""

from __future__ import annotations

import os
import sys

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


@nox.session
def bench(session: nox.Session) -> None:
    """Build the offline fixtures if missing, benchmark them on the default suites, write the
    parquet and the HTML report. Extra arguments go to `vlm-harness run`, e.g.
    `nox -s bench -- -m mlx-community/Qwen2.5-VL-3B-Instruct-4bit --limit 50`; on a CI matrix,
    `nox -s bench -- --limit 8 --shard 2/3` measures one part of the plan (then `nox -s merge`)."""
    session.install("-e", ".")
    session.run("vlm-harness", "fixtures", "build")
    args = session.posargs or ["--limit", "8"]
    session.run("vlm-harness", "run", *args)


@nox.session
def gate(session: nox.Session) -> None:
    """Compare the latest run in reports/runs against reports/baseline; fails on a significant
    regression, writes reports/gate.md (for a pull-request comment) and reports/gate.json.
    Extra arguments go to `vlm-harness gate`, e.g. `nox -s gate -- --factor 1.2`; `-- --promote`
    makes the latest run the baseline when it passes (or when there is none yet).

    On a shared CI runner, measure both revisions here instead, interleaved per model:
    `nox -s gate -- --interleave origin/main HEAD` (5 rounds each, compared round by round; add -m/-s/--limit to choose
    what runs). Each revision runs from its own git worktree with PYTHONPATH on it."""
    from pathlib import Path

    interleave = "--interleave" in session.posargs
    missing = not (Path("reports/baseline") / "results.parquet").exists()
    if missing and not interleave and not {"--baseline", "--promote"} & set(session.posargs):
        session.skip("no baseline at reports/baseline: promote a run with "
                     "`vlm-harness baseline update reports/runs/<run>` (or pass -- --baseline PATH, "
                     "or measure both revisions with -- --interleave REV_A REV_B)")
    session.install("-e", ".")
    if interleave:
        session.run("vlm-harness", "fixtures", "build")
    session.run("vlm-harness", "gate", "--markdown", "reports/gate.md", "--json", "reports/gate.json", *session.posargs)


@nox.session
def merge(session: nox.Session) -> None:
    """Merge runs, shards and CI artifacts into one results set and report: arguments go to
    `vlm-harness merge`, e.g. `nox -s merge -- artifacts -o reports/merged`."""
    if not session.posargs:
        session.error("give the runs or folders to merge and -o DIR, e.g. `nox -s merge -- artifacts -o reports/merged`")
    session.install("-e", ".")
    session.run("vlm-harness", "merge", *session.posargs)


@nox.session(python=False)
def summary(session: nox.Session) -> None:
    """Every gate's Markdown (gate.md under the folders given, default reports/) and the merged
    report's summary, appended to $GITHUB_STEP_SUMMARY on GitHub Actions, else printed."""
    from pathlib import Path

    roots = [Path(p) for p in session.posargs] or [Path("reports")]
    parts = []
    for root in roots:
        for gate_md in sorted(root.rglob("gate.md")):
            parts.append(f"## Gate: {gate_md.parent.name}\n\n{gate_md.read_text()}")
    merged = Path("reports/merged/report.md")
    if merged.exists():
        parts.append(merged.read_text())
    if not parts:
        session.log(f"no gate.md under {', '.join(map(str, roots))} and no {merged}: nothing to summarise")
        return
    text = "\n\n".join(parts) + "\n"
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
        session.log(f"{len(parts)} summary part(s) written to the job summary")
    else:
        print(text)


@nox.session
def perf(session: nox.Session) -> None:
    """The harness's own cost: the same samples through the harness, a bare mlx_vlm loop and one
    `python -m mlx_vlm.generate` per sample; prints overhead and speed-up with spread (~1 min).
    Then the accuracy mode's figures (benchmarks/accuracy_mode.py: throughput against the
    one-at-a-time run, identical answers, the response cache, a server at 4 in flight; ~15 min
    on 2 cores; `-- -k overhead` leaves them out)."""
    session.install("-e", ".[test]")
    session.run("pytest", "benchmarks", "--benchmark-only", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def tests_transformers(session: nox.Session) -> None:
    """The transformers adapter beside the MLX one, in an environment of its own: with torch
    installed, transformers hands mlx-vlm torch-based processors, which the main tests avoid."""
    if sys.platform == "linux" and os.environ.get("CI"):
        # The CPU build, as a local wheel on CI machines; plain `torch` would be a multi-GB CUDA one.
        session.install("torch==2.13.0")
    session.install("-e", ".[test,transformers]")
    session.run("pytest", "tests/test_transformers_adapter.py", *session.posargs)


@nox.session
def tests_ray(session: nox.Session) -> None:
    """The Ray fleet engine on a local two-node cluster (tests/test_fleet.py), with the ray extra."""
    session.install("-e", ".[test,ray]")
    session.run("pytest", "tests/test_fleet.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the code; zizmor over the CI workflows (pinned actions, no persisted credentials,
    least privilege, no template injection), offline."""
    session.install("ruff>=0.6", "zizmor>=1.5")
    session.run("ruff", "check", ".")
    session.run("zizmor", "--offline", ".github/workflows/")
