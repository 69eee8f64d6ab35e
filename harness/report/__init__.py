"""The comparison report: a pure function of result rows, rendered to one self-contained,
autoescaped HTML file and a Markdown twin (report.md). Nothing here measures; every figure is
recomputable from the parquet, and every accuracy figure comes from `harness.judge.accuracy.accuracy_table`.

page: the page model, every figure computed once (build_page); the HTML template and
markdown (report.md) are views of it. tables: speed rows, accuracy cells, roles, units; kinds:
natural / synthetic / overall accuracy; verdict: the summary's answers; charts: inline SVG;
gallery: the per-sample rows; runcard: the run's facts; history: run against run; serving: the
load sweeps' summary.

May import: everything below it (core, results, measure, judge, gate, serving and the plug-ins).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness.report.markdown import render_md
from harness.report.page import Page, accuracy_section, build_page
from harness.report.tables import MODEL, ROLE_LABEL, fmt

_fmt = fmt  # the name tests and older callers use


def render(df: pd.DataFrame, out: Path, *, title: str = "VLM benchmark", sources: list[str] | None = None,
           run_dir: Path | str | None = None, markdown: bool = True, load_runs: Sequence[Path] = (),
           unsealed: Sequence[str] = ()) -> Path:
    """Write the HTML report to `out` and, beside it, report.md (`markdown=False`: HTML only).

    `run_dir` (or, when not given, the directories of `sources`) is where run.json and the raw
    files are looked for: the run card reads the settings from there and links the files.
    `load_runs`: load run directories, or folders of them, summarised and linked in a section.
    `unsealed`: source files read without a content digest (pandas, DuckDB, polars copies), named
    as such on the page and in report.md."""
    out = Path(out)
    page = build_page(df, out, title=title, sources=sources, run_dir=run_dir, markdown=markdown,
                      load_runs=load_runs, unsealed=unsealed)
    _write(out, render_html(page))
    if markdown:
        _write(markdown_path(out), render_md(page))
    return out


def render_html(page: Page) -> str:
    """The HTML view of the page model."""
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = fmt
    env.filters["role"] = lambda m: (f" ({ROLE_LABEL[page.roles[m]]})"
                                     if ROLE_LABEL.get(page.roles.get(m, MODEL)) else "")
    return env.get_template("report.html.j2").render(**page.context())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def markdown_path(out: Path) -> Path:
    """Where render() writes the Markdown twin of the HTML report at `out`."""
    out = Path(out)
    return out.with_name("report.md") if out.name == "report.html" else out.with_suffix(".md")


__all__ = ["render", "render_html", "build_page", "markdown_path", "accuracy_section"]
