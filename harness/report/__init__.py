"""The comparison report: a pure function of result rows, rendered to one self-contained,
autoescaped HTML file. Nothing here measures; every figure is recomputable from the parquet.

tables: the numbers; charts: matplotlib figures as data URIs; gallery: the per-sample rows the
page pages through; history: run against run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness import __version__
from harness.report import charts, gallery, history
from harness.report.tables import (
    accuracy_by_suite,
    best,
    cell,
    columns,
    environment,
    fmt,
    summarise,
)

_fmt = fmt  # the name tests and older callers use

# The columns the tables, charts and comparisons read. Everything else (model text, image
# lists, hashes) is carried only into the gallery: with Arrow-backed strings every groupby and
# filter copies each column, so a 100,000-row run renders several times faster on this subset.
_CORE = ("schema_version", "run_id", "recorded_at", "model", "arch", "quantization", "random_weights", "backend",
         "model_size_bytes", "load_s", "suite", "suite_kind", "suite_hash", "sample_id", "category", "repeat",
         "status", "error", "score", "ttft_s", "prefill_tps", "decode_tps", "peak_mlx_bytes", "peak_rss_bytes",
         "decode_bound_tps", "env_host", "env_machine", "env_cpu", "env_cores", "env_mlx", "env_mlx_vlm",
         "env_python", "env_os", "harness_git")


def _core(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in _CORE if c in df.columns]].reset_index(drop=True)


def _finding_rows(result) -> list[dict]:
    out = []
    for f in result.findings:
        if f.metric == "score":
            base, cur = f"{100 * f.baseline:.1f} %", f"{100 * f.current:.1f} %"
            change = "–" if math.isnan(f.change) else f"{100 * f.change:+.1f} pp"
        elif f.metric == "peak_mlx_bytes":
            base, cur = f"{fmt(f.baseline / 2**20)} MiB", f"{fmt(f.current / 2**20)} MiB"
            change = "–" if math.isnan(f.change) else f"{100 * f.change:+.1f} %"
        elif f.metric == "errors":
            base, cur, change = f"{f.baseline:.0f}", f"{f.current:.0f}", f"{-f.change:+.0f}"
        else:
            base, cur = f"{fmt(f.baseline)} {f.unit}", f"{fmt(f.current)} {f.unit}"
            change = "–" if math.isnan(f.change) else f"{100 * f.change:+.1f} %"
        out.append({"model": f.model, "suite": f.suite, "metric": f.metric, "baseline": base, "current": cur,
                    "change": change, "p": "–" if math.isnan(f.p_value) else f"{f.p_value:.3g}",
                    "verdict": f.verdict, "note": f.note})
    return out


def render(df: pd.DataFrame, out: Path, *, title: str = "VLM benchmark", sources: list[str] | None = None) -> Path:
    full, df = df, _core(df)
    table = summarise(df)
    cols = columns(df)
    marks = best(table, cols)
    rows = []
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            text, warning = cell(r, c.key)
            cells.append({"key": c.key, "text": text, "best": marks.get(c.key) == r["model"], "warning": warning})
        rows.append({
            "model": r["model"], "arch": r["arch"], "quantization": r["quantization"],
            "random": r["random_weights"], "backend": r["backend"], "errors": r["errors"],
            "unsupported": r["unsupported"], "samples": r["samples"], "cells": cells,
        })
    errors = full[full["status"] == "error"][["model", "suite", "sample_id", "error"]]
    hist = history.history(df)
    comparison = history.latest_vs_previous(df)
    history_chart = charts.history(hist)
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = fmt
    html = env.get_template("report.html.j2").render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        columns=cols,
        rows=rows,
        any_random=bool(table["random_weights"].any()) if not table.empty else False,
        cpu_only=bool((df["backend"].dropna() == "cpu").any()),
        accuracy=accuracy_by_suite(df).to_dict("records"),
        charts=charts.all_charts(df),
        gallery=gallery.gallery(full),
        errors=errors.head(500).to_dict("records"),
        n_errors=len(errors),
        environment=environment(full),
        runs=history.run_order(df),
        history=hist.to_dict("records") if len(history.run_order(df)) > 1 else [],
        history_chart=history_chart,
        comparison=None if comparison is None else {
            "previous": comparison[0], "latest": comparison[1], "problems": list(comparison[2].problems),
            "warnings": comparison[3], "notes": list(comparison[2].notes), "rows": _finding_rows(comparison[2]),
            "regressions": len(comparison[2].regressions),
        },
        n_rows=len(df),
        sources=sources or [],
        status_counts=df["status"].value_counts().to_dict(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html)
    tmp.replace(out)
    return out


__all__ = ["render", "summarise", "accuracy_by_suite"]
