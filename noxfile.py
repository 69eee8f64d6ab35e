"""Sessions: bench (the offline benchmark), tests, lint."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


@nox.session
def bench(session: nox.Session) -> None:
    """Build the offline fixtures if missing, benchmark them on the default suites, write the
    parquet and the HTML report. Extra arguments go to `vlm-harness run`, e.g.
    `nox -s bench -- -m mlx-community/Qwen2.5-VL-3B-Instruct-4bit --limit 50`."""
    session.install("-e", ".")
    session.run("vlm-harness", "fixtures", "build")
    args = session.posargs or ["--limit", "20"]
    session.run("vlm-harness", "run", *args)


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
