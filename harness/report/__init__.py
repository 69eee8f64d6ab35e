"""The comparison report: a pure function of result rows, rendered to one self-contained,
autoescaped HTML file. Nothing here measures; every figure is recomputable from the parquet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness import __version__


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    higher_is_better: bool | None  # None: not ranked


# The seeds' comparison table, with spread. Order is the order shown.
COLUMNS = [
    Column("size_mb", "Size on disk", "MB", None),
    Column("load_s", "Load", "s", False),
    Column("ttft_ms", "Time to first token", "ms", False),
    Column("prefill_tps", "Prefill", "tok/s", True),
    Column("decode_tps", "Decode", "tok/s", True),
    Column("peak_mlx_gb", "Peak MLX memory", "", False),
    Column("peak_rss_gb", "Peak process RSS", "", False),
    Column("acc_natural", "Accuracy, natural", "%", True),
    Column("acc_synthetic", "Accuracy, synthetic", "%", True),
]


def _stats(values: pd.Series, scale: float = 1.0) -> dict:
    v = values.dropna().astype(float) * scale
    if v.empty:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "n": int(len(v))}


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: mean, std and n of each column (std over samples and repetitions).

    Size and load are per model load, not per sample: they are taken once per run, so their
    spread is across runs when several runs are combined.
    """
    rows = []
    measured = df[df["sample_id"] != "*"]
    for model, g in measured.groupby("model", sort=True):
        ok = g[g["status"] == "ok"]
        per_run = ok.drop_duplicates("run_id")
        row = {"model": model}
        first = g.iloc[0]
        row["arch"] = first.get("arch") if isinstance(first.get("arch"), str) else ""
        row["quantization"] = first.get("quantization") if isinstance(first.get("quantization"), str) else ""
        row["random_weights"] = bool(ok["random_weights"].fillna(False).any()) if not ok.empty else False
        row["backend"] = ",".join(sorted(ok["backend"].dropna().unique()))
        stats = {
            "size_mb": _stats(per_run["model_size_bytes"], 1e-6),
            "load_s": _stats(per_run["load_s"]),
            "ttft_ms": _stats(ok["ttft_s"], 1e3),
            "prefill_tps": _stats(ok["prefill_tps"]),
            "decode_tps": _stats(ok["decode_tps"]),
            "peak_mlx_gb": _stats(ok["peak_mlx_bytes"], 1e-9),
            "peak_rss_gb": _stats(ok["peak_rss_bytes"], 1e-9),
            "acc_natural": _stats(ok[ok["suite_kind"] == "natural"]["score"], 100.0),
            "acc_synthetic": _stats(ok[ok["suite_kind"] == "synthetic"]["score"], 100.0),
        }
        # Memory is reported as the peak (max), not a mean: it is what must fit.
        for key, col in (("peak_mlx_gb", "peak_mlx_bytes"), ("peak_rss_gb", "peak_rss_bytes")):
            v = ok[col].dropna()
            stats[key]["max"] = float(v.max()) * 1e-9 if not v.empty else math.nan
        for key, s in stats.items():
            for stat, value in s.items():
                row[f"{key}.{stat}"] = value
        row["errors"] = int((g["status"] == "error").sum())
        row["unsupported"] = int((g["status"] == "unsupported").sum())
        row["samples"] = int(len(ok))
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_by_suite(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[(df["status"] == "ok") & (df["sample_id"] != "*")]
    if ok.empty:
        return pd.DataFrame(columns=["model", "suite", "category", "mean", "n"])
    g = ok.groupby(["model", "suite", "category"])["score"]
    out = g.agg(["mean", "count"]).reset_index().rename(columns={"count": "n"})
    out["mean"] *= 100
    return out


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def _bytes(gb: float) -> str:
    if math.isnan(gb):
        return "–"
    for unit, scale in (("GB", 1.0), ("MB", 1e-3), ("kB", 1e-6)):
        if gb >= scale:
            return f"{_fmt(gb / scale)} {unit}"
    return f"{_fmt(gb * 1e9)} B"


def _cell(row: pd.Series, key: str) -> str:
    if key.startswith("peak_"):
        return _bytes(row[f"{key}.max"])
    mean, std = row[f"{key}.mean"], row[f"{key}.std"]
    if key.startswith("acc_"):
        n = int(row[f"{key}.n"])
        return "–" if n == 0 else f"{mean:.1f} (n={n})"
    if key in ("size_mb",) or math.isnan(std):
        return _fmt(mean)
    return f"{_fmt(mean)} ± {_fmt(std, 2)}"


def _best(table: pd.DataFrame) -> dict[str, str]:
    best = {}
    for c in COLUMNS:
        if c.higher_is_better is None or table.empty:
            continue
        key = f"{c.key}.max" if c.key.startswith("peak_") else f"{c.key}.mean"
        vals = table[key].astype(float)
        # No mark where there is nothing to choose between (one model, or all equal).
        if vals.notna().sum() < 2 or vals.max() == vals.min():
            continue
        idx = vals.idxmax() if c.higher_is_better else vals.idxmin()
        best[c.key] = table.loc[idx, "model"]
    return best


def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    cols = [c for c in df.columns if c.startswith("env_") or c in ("harness_version", "harness_git", "backend")]
    out = []
    for c in cols:
        vals = sorted({str(v) for v in df[c].dropna().unique()})
        if vals:
            out.append((c.removeprefix("env_"), ", ".join(vals)))
    return out


def render(df: pd.DataFrame, out: Path, *, title: str = "VLM benchmark", sources: list[str] | None = None) -> Path:
    table = summarise(df)
    best = _best(table)
    rows = []
    for _, r in table.iterrows():
        rows.append({
            "model": r["model"], "arch": r["arch"], "quantization": r["quantization"],
            "random": r["random_weights"], "backend": r["backend"], "errors": r["errors"],
            "unsupported": r["unsupported"], "samples": r["samples"],
            "cells": [(c.key, _cell(r, c.key), best.get(c.key) == r["model"]) for c in COLUMNS],
        })
    acc = accuracy_by_suite(df)
    errors = df[df["status"] == "error"][["model", "suite", "sample_id", "error"]]
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    html = env.get_template("report.html.j2").render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        columns=COLUMNS,
        rows=rows,
        any_random=bool(table["random_weights"].any()) if not table.empty else False,
        cpu_only=bool((df["backend"].dropna() == "cpu").any()),
        accuracy=acc.to_dict("records"),
        errors=errors.head(500).to_dict("records"),
        n_errors=len(errors),
        environment=environment(df),
        runs=sorted(df["run_id"].dropna().unique()),
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
