"""The numbers in the report's tables: one speed row per model (and machine), accuracy cells from
`harness.judge.accuracy.accuracy_table`, model roles, units and formatting.

Pure functions of result rows; every figure can be recomputed from the parquet alone. Each cell
is a `Cell` whose `text` is what both the HTML page and report.md print, so the two never differ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.core.stats import NOISY_CV, describe

GB = 1e9  # one unit family across the page: decimal bytes (kB, MB, GB), as bandwidth is quoted

FIXTURE, REFERENCE, MODEL = "fixture", "reference", "model"
ROLE_LABEL = {FIXTURE: "random weights", REFERENCE: "reference canary", MODEL: ""}
ROLE_NOTE = {
    FIXTURE: "random-weight fixture: measures speed and memory, never quality",
    REFERENCE: "the harness's own reference model: its accuracy checks the pipeline, it is not a contender",
    MODEL: "",
}


@dataclass(frozen=True)
class Cell:
    text: str  # the whole figure as printed in report.md and as the HTML cell's text
    sort: float | str | None = None  # what the column sorts on
    main: str = ""  # HTML: the headline part of text ...
    sub: str = ""  # ... and the rest, set smaller under it (main + sub == text)
    title: str = ""  # tooltip
    cls: str = ""  # css class: noisy, impossible, muted

    @staticmethod
    def of(main: str, sub: str = "", sort: float | str | None = None, title: str = "", cls: str = "") -> Cell:
        return Cell(main + sub, sort, main, sub, title, cls)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    help: str = ""


@dataclass(frozen=True)
class ModelRow:
    model: str
    role: str
    arch: str
    quantization: str
    backend: str
    cells: dict[str, Cell] = field(default_factory=dict)
    machine: str = ""  # merged results of several machines: speed rows are per model and machine


def measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["sample_id"] != "*"] if "sample_id" in df else df


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    m = measured(df)
    return m[m["status"] == "ok"]


# --- roles -----------------------------------------------------------------------------------

def roles(df: pd.DataFrame) -> dict[str, str]:
    """model -> fixture | reference | model.

    A fixture is a row with random weights (or `model_role == "fixture"`); the reference canary is
    `model_role == "reference"`, or, in results written before that column existed, a model named
    `reference-*`."""
    out: dict[str, str] = {}
    if df.empty or "model" not in df:
        return out
    cols = [c for c in ("model", "random_weights", "model_role") if c in df]
    d = df[cols].drop_duplicates()
    for model, g in d.groupby("model", sort=True):
        rw = "random_weights" in g and bool(g["random_weights"].fillna(False).astype(bool).any())
        role_col = set(g["model_role"].dropna().astype(str)) if "model_role" in g else set()
        if rw or FIXTURE in role_col:
            out[model] = FIXTURE
        elif REFERENCE in role_col or (not role_col and str(model).startswith("reference-")):
            out[model] = REFERENCE
        else:
            out[model] = MODEL
    return out


def label(model: str, role: str) -> str:
    """A model's name as charts and Markdown show it: the role spelled out beside it."""
    return f"{model} ({ROLE_LABEL[role]})" if ROLE_LABEL.get(role) else model


# --- formatting --------------------------------------------------------------------------------

def fmt(x: float | None, digits: int = 3) -> str:
    """`digits` significant figures, thousands separated; '–' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def mem_unit(max_bytes: float) -> tuple[str, float]:
    """The one memory unit of a report: GB, or MB when nothing reaches a gigabyte (decimal both)."""
    return ("GB", GB) if not math.isnan(max_bytes) and max_bytes >= GB else ("MB", 1e6)


def pct(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def natural_key(text: object) -> tuple:
    """Sort key that orders embedded numbers by value: size-16 before size-64 before size-1024."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p != "")


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def repeat_cv(g: pd.DataFrame, col: str) -> float:
    """Measurement noise: the median, over samples measured more than once, of the coefficient of
    variation across their repetitions. NaN without repetitions: the spread across different
    samples (other prompts, other images) is the workload's, not noise."""
    if col not in g or "repeat" not in g:
        return math.nan
    keys = [k for k in ("run_id", "suite", "suite_hash", "sample_id") if k in g]
    if not (g["repeat"] > 0).any():
        return math.nan
    stats = g[g[col].notna()].groupby(keys, sort=False)[col].agg(["std", "mean", "count"])
    stats = stats[(stats["count"] > 1) & (stats["mean"] != 0)]
    return float((stats["std"] / stats["mean"]).median()) if not stats.empty else math.nan


def _ci_cell(values: pd.Series | np.ndarray, unit: str, scale: float = 1.0,
             noise: float = math.nan) -> tuple[Cell, object]:
    s = describe(np.asarray(values, dtype=float) * scale)
    if s.n == 0:
        return Cell("–"), s
    if s.n == 1 or math.isnan(s.ci_low):
        return Cell.of(fmt(s.mean), "", s.mean, f"{fmt(s.mean)} {unit}, one value"), s
    half = (s.ci_high - s.ci_low) / 2
    noisy = noise > NOISY_CV
    said = (f"; repetitions of a sample vary by {100 * noise:.0f} % (median cv)" + ("; noisy: above 10 %" if noisy else "")
            if not math.isnan(noise) else "; spread is across different samples (--repeats measures noise)")
    title = (f"mean {fmt(s.mean)} {unit}, 95 % interval of the mean {fmt(s.ci_low)}–{fmt(s.ci_high)}, "
             f"std {fmt(s.std)}, n={s.n}" + said)
    return Cell.of(fmt(s.mean), f" ± {fmt(half, 2)}", s.mean, title, "noisy" if noisy else ""), s


def _blocks(g: pd.DataFrame) -> pd.Series:
    """Each row's round as one label: run_id/round (rows from before rounds: one round a run)."""
    run = g["run_id"].fillna("").astype(str) if "run_id" in g else pd.Series("", index=g.index)
    rnd = g["round"].fillna(0).astype(int).astype(str) if "round" in g else pd.Series("0", index=g.index)
    return run + "/" + rnd


def round_figures(g: pd.DataFrame, col: str, how: str = "mean") -> pd.Series:
    """One figure per round of one model: its requests' mean (or max, for peaks) in that round.

    A round is (run_id, round): rows written before rounds existed count as one round per run.
    These, not the requests, are the replicates of speed: requests inside one round share
    whatever load the machine had then."""
    if col not in g:
        return pd.Series([], dtype=float)
    v = pd.Series(pd.to_numeric(g[col], errors="coerce").to_numpy(dtype=float), index=_block_labels(g))
    v = v.dropna()
    return v.groupby(level=0, sort=True).agg(how) if not v.empty else pd.Series([], dtype=float)


def _block_labels(g: pd.DataFrame) -> np.ndarray:
    """_blocks as a plain array: grouping a float array by it is cheap, a frame is not."""
    return _blocks(g).to_numpy(dtype=object)


def sample_figures(g: pd.DataFrame, col: str, scale: float = 1.0) -> pd.Series:
    """One model's per-request values indexed by (round, suite, sample, repeat): what
    harness.core.stats.compare_rounds pairs sample by sample within each round."""
    if col not in g:
        return pd.Series([], dtype=float)
    idx = pd.MultiIndex.from_arrays([_block_labels(g), g["suite"].astype(str) if "suite" in g else "",
                                     g["sample_id"].astype(str), g["repeat"].fillna(0).astype(int)
                                     if "repeat" in g else 0], names=["round", "suite", "sample_id", "repeat"])
    v = pd.Series(pd.to_numeric(g[col], errors="coerce").astype(float).to_numpy() * scale, index=idx)
    return v[v.notna() & ~v.index.duplicated(keep="last")]


def rounds_disagree(g: pd.DataFrame, col: str) -> float:
    """p-value (one-way ANOVA over rounds) that the rounds' means differ by no more than their
    requests' spread implies; nan with fewer than two rounds of two requests."""
    from scipy.stats import f_oneway

    if col not in g:
        return math.nan
    v = pd.Series(pd.to_numeric(g[col], errors="coerce").to_numpy(dtype=float), index=_block_labels(g))
    groups = [x.dropna().to_numpy() for _, x in v.groupby(level=0)]
    groups = [x for x in groups if len(x) >= 2]
    if len(groups) < 2 or all(np.all(x == x[0]) for x in groups):
        return math.nan
    return float(f_oneway(*groups).pvalue)


# Rounds whose means differ this surely (ANOVA p) are flagged: the machine drifted between them
# by more than one request varies, so one round alone would have misled.
DRIFT_P = 0.01


def _round_cell(g: pd.DataFrame, col: str, unit: str, scale: float = 1.0) -> tuple[Cell, object]:
    """A speed figure from its round means: mean ± half-width of the 95 % interval over rounds;
    with one round, the request-level interval, said to be within one run."""
    rounds = round_figures(g, col) * scale
    requests = describe(pd.to_numeric(g[col], errors="coerce").astype(float).to_numpy() * scale) if col in g \
        else describe([])
    if len(rounds) < 2:
        cell, s = _ci_cell(_col(g, col), unit, scale, repeat_cv(g, col))
        if s.n > 1 and not math.isnan(s.ci_low):
            cell = Cell.of(cell.main, cell.sub, cell.sort, cell.title + "; one round: a within-run interval over "
                           "requests, blind to run-to-run variation", "within")
        return cell, s
    s = describe(rounds.to_numpy())
    half = (s.ci_high - s.ci_low) / 2
    noisy = not math.isnan(s.cv) and s.cv > NOISY_CV
    title = (f"mean of {s.n} round means {fmt(s.mean)} {unit}, 95 % interval over rounds {fmt(s.ci_low)}–"
             f"{fmt(s.ci_high)}; rounds span {fmt(rounds.min())}–{fmt(rounds.max())} "
             f"({fmt(rounds.max() / rounds.min() if rounds.min() > 0 else math.nan)}×); requests: std {fmt(requests.std)}"
             f" over n={requests.n} (how much one request varies, not how sure the ranking is)"
             + ("; noisy: round means vary by more than 10 %" if noisy else ""))
    return Cell.of(fmt(s.mean), f" ± {fmt(half, 2)}", s.mean, title, "noisy" if noisy else ""), s


def _drift_cell(g: pd.DataFrame) -> Cell:
    """How far the same model's decode moved between rounds, flagged when more than chance."""
    rounds = round_figures(g, "decode_tps")
    if len(rounds) < 2:
        return Cell.of("1", "", 1, "one round: run-to-run variation unknown; verdicts are provisional", "within")
    spread = float(rounds.max() / rounds.min()) if rounds.min() > 0 else math.nan
    p = rounds_disagree(g, "decode_tps")
    flagged = not math.isnan(p) and p < DRIFT_P
    title = (f"{len(rounds)} rounds; decode round means from {fmt(rounds.min())} to {fmt(rounds.max())} tok/s"
             + (f"; they differ by more than the requests' spread implies (ANOVA p={p:.2g}): the machine drifted"
                if flagged else f" (ANOVA p={p:.2g}: within what requests vary)" if not math.isnan(p) else ""))
    return Cell.of(str(len(rounds)), f" · {fmt(spread, 2)}×", spread, title, "drift" if flagged else "")


def _single_or_spread(values: pd.Series, unit: str) -> Cell:
    """Per-load figures (load, import): one load shows its value; several, mean ± std over loads."""
    v = values.dropna().astype(float)
    if v.empty:
        return Cell("–")
    if len(v) == 1:
        return Cell.of(fmt(v.iloc[0]), "", float(v.iloc[0]), f"{fmt(v.iloc[0])} {unit}, one load")
    return Cell.of(fmt(v.mean()), f" ± {fmt(v.std(ddof=1), 2)}", float(v.mean()),
                   f"mean ± std over {len(v)} loads, {unit}")


# --- machines ----------------------------------------------------------------------------------

def machine_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's machine, as the report names it: its host name, with the first digits of its
    machine_id when two machines share a host name. Rows written before machine_id existed
    fall back to env_host alone."""
    n = len(df)
    mid = df["machine_id"].astype(object) if "machine_id" in df else pd.Series([None] * n, index=df.index)
    host = df["env_host"].astype(object) if "env_host" in df else pd.Series([None] * n, index=df.index)
    key = mid.where(mid.notna(), host).fillna("").astype(str)
    host = host.fillna("").astype(str)
    hosts_of = pd.DataFrame({"k": key, "h": host}).drop_duplicates()
    shared = set(hosts_of["h"][hosts_of["h"].duplicated(keep=False)])
    return pd.Series([f"{h} ({k[:8]})".strip() if h in shared or not h else h for k, h in zip(key, host, strict=True)],
                     index=df.index, dtype=object).replace("()", "")


# --- the speed table ---------------------------------------------------------------------------

def speed_columns(df: pd.DataFrame, unit: str) -> list[Column]:
    cols = [
        Column("backend", "Backend", "adapter · device" + (" · host" if "env_host" in df and df["env_host"].nunique() > 1
                                                            else "")),
        Column("size", "Size", unit, "checkpoint on disk"),
    ]
    if "params_b" in df and df["params_b"].notna().any():
        cols.append(Column("params", "Params", "billion"))
    cols += [
        Column("load_s", "Load", "s", "loading the model cold in a fresh process; mean ± std when loaded more than once"),
        Column("import_s", "Import", "s", "importing the backend"),
        Column("ttft_ms", "TTFT", "ms", "call to first token: preprocessing, vision encoder and prefill"),
        Column("prefill_tps", "Prefill", "tok/s", "prompt tokens over prefill time"),
        Column("decode_tps", "Decode", "tok/s", "tokens after the first over the time after the first"),
        Column("tokens", "Tokens", "out / in", "mean generated / prompt tokens per request"),
        Column("wall_s", "Per request", "s", "whole generation, call to last token"),
        Column("rounds", "Rounds", "n · max/min", "counterbalanced rounds, and how far decode's round means spread"),
    ]
    if has_bound(df):
        cols.append(Column("bw_pct", "Of bound", "%", "decode over the memory-bandwidth bound"))
    cols += [
        Column("peak_mlx", "Peak memory", unit, "largest per-request peak MLX allocation"),
        Column("peak_rss", "Peak RSS", unit, "largest per-request peak resident memory of the process"),
        Column("n", "n", "ok / err / unsup", "requests measured / errors / unsupported"),
    ]
    return cols


def has_bound(df: pd.DataFrame) -> bool:
    return "decode_bound_tps" in df and bool(df["decode_bound_tps"].notna().any())


@dataclass(frozen=True)
class SpeedStats:
    """What the summary's speed questions compare, per model: round-level figures (one per
    (run_id, round)), which the verdicts pair between models."""
    model: str
    role: str
    decode: object  # harness.core.stats.Summary over round means (request-level with one round)
    ttft_ms: object
    peak_bytes: float
    n: int
    decode_rounds: pd.Series = field(default_factory=lambda: pd.Series([], dtype=float))
    ttft_rounds: pd.Series = field(default_factory=lambda: pd.Series([], dtype=float))  # ms
    peak_rounds: pd.Series = field(default_factory=lambda: pd.Series([], dtype=float))  # bytes, max per round
    decode_samples: pd.Series = field(default_factory=lambda: pd.Series([], dtype=float))  # sample_figures
    ttft_samples: pd.Series = field(default_factory=lambda: pd.Series([], dtype=float))  # ms
    machine: str = ""  # merged results of several machines: the machine these figures are from
    lockstep: bool = False  # every request measured in lockstep: the verdicts say so


def _col(g: pd.DataFrame, name: str) -> pd.Series:
    """A column's non-missing values, or none when older or foreign rows lack the column."""
    return g[name].dropna() if name in g else pd.Series([], dtype=float)


def _first_str(g: pd.DataFrame, col: str) -> str:
    if col not in g:
        return ""
    v = g[col].dropna()
    return str(v.iloc[0]) if not v.empty else ""


def speed_table(df: pd.DataFrame) -> tuple[list[Column], list[ModelRow], list[SpeedStats], tuple[str, float]]:
    """The llama-bench-like table: one row per model (per model and machine when rows come from
    several machines); with it each row's speed statistics and the
    memory unit the whole report uses."""
    m = measured(df)
    ok = m[m["status"] == "ok"]
    peaks = ok["peak_mlx_bytes"].dropna() if "peak_mlx_bytes" in ok else pd.Series([], dtype=float)
    unit, scale = mem_unit(float(peaks.max()) if not peaks.empty else math.nan)
    cols = speed_columns(df, unit)
    role_of = roles(df)
    bound = has_bound(df)
    rows, stats = [], []
    # Merged runs from several machines: one row per model and machine, the machine named in the
    # backend column. Speed is a property of the machine; a mean over two is no machine's figure.
    m = m.assign(_machine=machine_labels(m))
    ok = m[m["status"] == "ok"]
    hosts = ok["_machine"].nunique() > 1
    counts = m.groupby(["model", "_machine", "status"]).size().unstack(fill_value=0) if not m.empty else pd.DataFrame()
    for (model, machine), g in ok.groupby(["model", "_machine"], sort=True):
        cells: dict[str, Cell] = {}
        # One row per model load: with rounds, each round loads the model afresh.
        per_load = g.drop_duplicates([k for k in ("run_id", "round") if k in g]) if "run_id" in g else g.iloc[:1]
        adapter = _first_str(g, "adapter")
        backend = ",".join(sorted(g["backend"].dropna().astype(str).unique())) if "backend" in g else ""
        host = machine if hosts else ""
        cells["backend"] = Cell(" · ".join(x for x in (adapter, backend, host) if x) or "–")
        size = _col(per_load, "model_size_bytes")
        cells["size"] = Cell.of(fmt(size.iloc[0] / scale), "", float(size.iloc[0])) if not size.empty else Cell("–")
        if "params_b" in g:
            p = g["params_b"].dropna()
            cells["params"] = Cell.of(fmt(float(p.iloc[0])), "", float(p.iloc[0])) if not p.empty else Cell("–")
        cells["load_s"] = _single_or_spread(_col(per_load, "load_s"), "s")
        cells["import_s"] = _single_or_spread(_col(per_load, "import_s"), "s")
        cells["ttft_ms"], ttft = _round_cell(g, "ttft_s", "ms", 1e3)
        cells["prefill_tps"], _ = _round_cell(g, "prefill_tps", "tok/s")
        cells["decode_tps"], decode = _round_cell(g, "decode_tps", "tok/s")
        gen, prompt = _col(g, "generated_tokens"), _col(g, "prompt_tokens")
        out_t = fmt(float(gen.mean())) if not gen.empty else "–"
        in_t = fmt(float(prompt.mean())) if not prompt.empty else "–"
        cells["tokens"] = Cell.of(out_t, f" / {in_t}", _num(float(gen.mean())) if not gen.empty else None,
                                  "decode rates over few tokens are coarse" if not gen.empty and gen.mean() < 16 else "",
                                  "coarse" if not gen.empty and gen.mean() < 16 else "")
        cells["wall_s"], _ = _round_cell(g, "wall_s", "s")
        cells["rounds"] = _drift_cell(g)
        if bound:
            b = g["decode_bound_tps"].astype(float)
            share = (g["decode_tps"].astype(float) / b.where(b > 0) * 100).dropna()
            c, s = _ci_cell(share, "% of the bound")
            top = float(share.max()) if not share.empty else math.nan
            if top > 100:
                c = Cell.of(c.main, c.sub, c.sort, f"impossible: up to {fmt(top)} % of the memory-bandwidth bound; "
                            "the timing or the bound is wrong", "impossible")
            cells["bw_pct"] = c
        peak = float(_col(g, "peak_mlx_bytes").max()) if not _col(g, "peak_mlx_bytes").empty else math.nan
        rss = float(_col(g, "peak_rss_bytes").max()) if not _col(g, "peak_rss_bytes").empty else math.nan
        cells["peak_mlx"] = Cell.of(fmt(peak / scale), "", _num(peak), f"max over {len(g)} requests")
        cells["peak_rss"] = Cell.of(fmt(rss / scale), "", _num(rss), f"max over {len(g)} requests")
        n_err = int(counts.loc[(model, machine)].get("error", 0)) if (model, machine) in counts.index else 0
        n_uns = int(counts.loc[(model, machine)].get("unsupported", 0)) if (model, machine) in counts.index else 0
        cells["n"] = Cell.of(str(len(g)), f" / {n_err} / {n_uns}", len(g), "", "impossible" if n_err else "")
        rows.append(ModelRow(model, role_of.get(model, MODEL), _first_str(g, "arch"), _first_str(g, "quantization"),
                             backend, cells, machine if hosts else ""))
        stats.append(SpeedStats(model, role_of.get(model, MODEL), decode, ttft, peak, len(g),
                                round_figures(g, "decode_tps"), round_figures(g, "ttft_s") * 1e3,
                                round_figures(g, "peak_mlx_bytes", "max"), sample_figures(g, "decode_tps"),
                                sample_figures(g, "ttft_s", 1e3), machine,
                                "lockstep" in g and bool(g["lockstep"].eq(True).all())))
    return cols, rows, stats, (unit, scale)


def noisy_columns(row: ModelRow) -> list[str]:
    return [k for k, c in row.cells.items() if c.cls == "noisy"]


# --- accuracy cells ----------------------------------------------------------------------------

def acc_cell(mean: float, lo: float, hi: float, n: int, *, interval: object = "", clusters: object = None,
             drop: object = None, muted: bool = False) -> Cell:
    """Accuracy in % with its 95 % interval and n; 'too few samples to tell' when there is no interval.

    `interval` (the method's name) and `clusters` (independent clusters behind it) are shown in
    the tooltip when accuracy_table gives them."""
    if not n or mean is None or math.isnan(mean):
        return Cell("–")
    parts = [str(interval)] if isinstance(interval, str) and interval else []
    if clusters is not None and not (isinstance(clusters, float) and math.isnan(clusters)):
        parts.append(f"{int(clusters)} clusters")
    method = f" ({', '.join(parts)})" if parts else ""
    if isinstance(drop, float) and not math.isnan(drop):
        method += f"; a run this size detects a drop of {100 * drop:.1f} pp"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return Cell.of(pct(mean), f" (n={n}, too few samples to tell)", 100 * mean,
                       f"{pct(mean)} %, n={n}: too few samples for an interval", "muted" if muted else "")
    return Cell.of(pct(mean), f" [{pct(lo)}–{pct(hi)}] n={n}", 100 * mean,
                   f"{pct(mean)} %, 95 % interval{method} {pct(lo)}–{pct(hi)} %, n={n}"
                   + ("; not a quality figure" if muted else ""), "muted" if muted else "")


# --- environment -------------------------------------------------------------------------------

def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Every env_* column and the harness version, as recorded (the run card shows them readable)."""
    cols = [c for c in df.columns if c.startswith("env_") or c in ("harness_version", "harness_git", "backend")]
    out = []
    for c in cols:
        vals = sorted({str(v) for v in df[c].dropna().unique()})
        if vals:
            out.append((c.removeprefix("env_"), ", ".join(vals)))
    return out
