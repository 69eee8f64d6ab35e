"""The numbers in the report: one summary row per model, accuracy with intervals, formatting.

Pure functions of result rows; every figure can be recomputed from the parquet alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.stats import bootstrap_ci

GIB = 2**30

# Beyond this many samples the bootstrap's resamples × n index matrix gets large while the
# normal interval of a mean is already as good; the report says which one it used.
BOOTSTRAP_MAX = 2000


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    higher_is_better: bool | None  # None: not ranked
    spread: str = ""  # what the cell's spread is, shown under the unit


# The seeds' comparison table, with spread. Order is the order shown; accuracy columns, one per
# suite, and the bandwidth column (when the rows carry a bound) are added per report.
BASE_COLUMNS = [
    Column("size_mb", "Size on disk", "MB", None),
    Column("load_s", "Load", "s", False, "mean ± std"),
    Column("ttft_ms", "Time to first token", "ms", False, "mean ± std"),
    Column("prefill_tps", "Prefill", "tok/s", True, "mean ± std"),
    Column("decode_tps", "Decode", "tok/s", True, "mean ± std"),
    Column("peak_mlx_gb", "Peak MLX memory", "", False, "max"),
    Column("peak_rss_gb", "Peak process RSS", "", False, "max"),
    Column("tps_per_gib", "Decode per GiB", "tok/s per GiB of peak MLX memory", True),
]
BANDWIDTH = Column("bw_pct", "Of bandwidth bound", "% of decode_bound_tps", None, "mean ± std")


def has_bound(df: pd.DataFrame) -> bool:
    return "decode_bound_tps" in df and bool(df["decode_bound_tps"].notna().any())


def columns(df: pd.DataFrame) -> list[Column]:
    cols = list(BASE_COLUMNS)
    if has_bound(df):
        cols.insert(cols.index(next(c for c in cols if c.key == "decode_tps")) + 1, BANDWIDTH)
    for suite in suites(df):
        cols.append(Column(f"acc:{suite}", f"Accuracy, {suite}", "%", True, "95 % interval"))
    return cols


def measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["sample_id"] != "*"]


def suites(df: pd.DataFrame) -> list[str]:
    ok = measured(df)
    return sorted(ok.loc[ok["status"] == "ok", "suite"].dropna().unique())


def _stats(values: pd.Series, scale: float = 1.0) -> dict:
    v = values.dropna().astype(float) * scale
    if v.empty:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "n": int(len(v))}


def interval(per_sample: np.ndarray | pd.Series) -> tuple[float, float]:
    """95 % interval of a mean score: percentile bootstrap, normal beyond BOOTSTRAP_MAX samples."""
    v = np.asarray(per_sample, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) <= BOOTSTRAP_MAX:
        return bootstrap_ci(v)
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v.mean()) - half, float(v.mean()) + half


def accuracy(scores: pd.DataFrame) -> dict:
    """Mean score in %, its 95 % interval and the sample count. Repetitions of a sample are
    averaged first: they are not independent evidence, the samples are."""
    per_sample = scores.groupby("sample_id")["score"].mean().dropna()
    if per_sample.empty:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    lo, hi = interval(per_sample.to_numpy())
    return {"mean": 100 * float(per_sample.mean()), "lo": 100 * lo, "hi": 100 * hi, "n": int(len(per_sample))}


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model: mean, std and n of each column (std over samples and repetitions).

    Size and load are per model load, not per sample: they are taken once per run, so their
    spread is across runs when several runs are combined.
    """
    rows = []
    bound = has_bound(df)
    for model, g in measured(df).groupby("model", sort=True):
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
        peak_gib = stats["peak_mlx_gb"]["max"] * 1e9 / GIB
        tps = stats["decode_tps"]["mean"]
        stats["tps_per_gib"] = {"mean": tps / peak_gib if peak_gib > 0 else math.nan, "std": math.nan,
                                "n": stats["decode_tps"]["n"]}
        if bound:
            b = ok["decode_bound_tps"].astype(float)
            pct = (ok["decode_tps"].astype(float) / b.where(b > 0)) * 100
            stats["bw_pct"] = _stats(pct)
            stats["bw_pct"]["max"] = float(pct.max()) if pct.notna().any() else math.nan
        for suite, s in ok.groupby("suite"):
            stats[f"acc:{suite}"] = accuracy(s)
        for key, s in stats.items():
            for stat, value in s.items():
                row[f"{key}.{stat}"] = value
        row["errors"] = int((g["status"] == "error").sum())
        row["unsupported"] = int((g["status"] == "unsupported").sum())
        row["samples"] = int(len(ok))
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_by_suite(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per model × suite × category with its 95 % interval (in %) and sample count."""
    ok = measured(df)
    ok = ok[ok["status"] == "ok"]
    cols = ["model", "suite", "category", "mean", "lo", "hi", "n", "failures"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, suite, category), g in ok.groupby(["model", "suite", "category"], dropna=False):
        a = accuracy(g)
        per_sample = g.groupby("sample_id")["score"].mean()
        rows.append({"model": model, "suite": suite, "category": "" if pd.isna(category) else category, **a,
                     "failures": int((per_sample < 1).sum())})
    return pd.DataFrame(rows, columns=cols)


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def fmt_bytes(gb: float) -> str:
    if math.isnan(gb):
        return "–"
    for unit, scale in (("GB", 1.0), ("MB", 1e-3), ("kB", 1e-6)):
        if gb >= scale:
            return f"{fmt(gb / scale)} {unit}"
    return f"{fmt(gb * 1e9)} B"


def fmt_acc(mean: float, lo: float, hi: float, n: int) -> str:
    return "–" if n == 0 else f"{mean:.1f} [{lo:.1f}–{hi:.1f}] (n={n})"


def cell(row: pd.Series, key: str) -> tuple[str, str]:
    """The cell's text and a warning ('' when none) for one summary row."""
    if f"{key}.mean" not in row or (key.startswith("acc:") and pd.isna(row.get(f"{key}.n"))):
        return "–", ""
    if key.startswith("peak_"):
        return fmt_bytes(row[f"{key}.max"]), ""
    if key.startswith("acc:"):
        return fmt_acc(row[f"{key}.mean"], row[f"{key}.lo"], row[f"{key}.hi"], int(row[f"{key}.n"])), ""
    mean, std = row[f"{key}.mean"], row.get(f"{key}.std", math.nan)
    if key == "bw_pct":
        if math.isnan(mean):
            return "–", ""
        text = f"{fmt(mean)} ± {fmt(std, 2)}" if not math.isnan(std) else fmt(mean)
        top = row.get("bw_pct.max", math.nan)
        if top > 100:
            return text, (f"impossible: up to {fmt(top)} % of the memory-bandwidth bound; "
                          "the timing or the bound is wrong")
        return text, ""
    if key in ("size_mb", "tps_per_gib") or math.isnan(std):
        return fmt(mean), ""
    return f"{fmt(mean)} ± {fmt(std, 2)}", ""


def best(table: pd.DataFrame, cols: list[Column]) -> dict[str, str]:
    out = {}
    for c in cols:
        if c.higher_is_better is None or table.empty:
            continue
        key = f"{c.key}.max" if c.key.startswith("peak_") else f"{c.key}.mean"
        if key not in table:
            continue
        vals = table[key].astype(float)
        # No mark where there is nothing to choose between (one model, or all equal).
        if vals.notna().sum() < 2 or vals.max() == vals.min():
            continue
        idx = vals.idxmax() if c.higher_is_better else vals.idxmin()
        out[c.key] = table.loc[idx, "model"]
    return out


def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    cols = [c for c in df.columns if c.startswith("env_") or c in ("harness_version", "harness_git", "backend")]
    out = []
    for c in cols:
        vals = sorted({str(v) for v in df[c].dropna().unique()})
        if vals:
            out.append((c.removeprefix("env_"), ", ".join(vals)))
    return out
