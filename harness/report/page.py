"""The page model: every figure the report shows, computed once from the rows.

`build_page` makes one pass over the frame — roles, suite kinds, the accuracy table, the speed
statistics, the verdicts, history, charts, gallery items and the run card — and returns a frozen
`Page`. The HTML template and report.md are views of it: no section recomputes from the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__
from harness.gate.compare import rule as gate_rule
from harness.judge.accuracy import ALL, accuracy_table
from harness.judge.throughput import latency_rows, pass_table
from harness.report import charts, gallery, history, runcard, serving
from harness.report.kinds import kind_summary, suite_kinds
from harness.report.tables import (
    FIXTURE,
    MODEL,
    REFERENCE,
    ROLE_LABEL,
    ROLE_NOTE,
    Cell,
    Column,
    ModelRow,
    SpeedStats,
    acc_cell,
    environment,
    fmt,
    natural_key,
    noisy_columns,
    roles,
    speed_table,
)
from harness.report.verdict import pipeline_checks, verdicts

# The columns the tables, charts and comparisons read. Everything else (model text, image
# lists, hashes) is carried only into the gallery: with Arrow-backed strings every groupby and
# filter copies each column, so a 100,000-row run renders several times faster on this subset.
_CORE = ("schema_version", "run_id", "recorded_at", "model", "adapter", "arch", "quantization", "random_weights",
         "model_role", "backend", "model_size_bytes", "params_b", "import_s", "load_s", "suite", "suite_kind",
         "suite_hash", "sample_id", "category", "repeat", "round", "round_position", "lockstep", "status", "error", "metric",
         "score", "ttft_s",
         "prefill_tps", "decode_tps", "wall_s", "prompt_tokens", "generated_tokens", "peak_mlx_bytes",
         "peak_rss_bytes", "decode_bound_tps", "bandwidth_gbps", "bandwidth_source", "device_name",
         "device_memory_bytes", "env_host", "env_machine", "env_cpu", "env_cores", "env_ram_bytes", "env_device",
         "env_mlx", "env_mlx_vlm", "env_python", "env_os", "env_blas", "harness_version", "harness_git", "mode",
         "machine_id", "shard", "node")

ACC_CAPTION = ("Accuracy in % with its 95 % interval [low–high] and the number of scored samples n "
               "(repetitions of a sample averaged first), from accuracy.parquet. Natural, Synthetic and Overall "
               "are the mean of per-suite means (every suite weighs the same); their interval combines the "
               "suites' intervals as independent errors. Random-weight fixtures and the reference canary are "
               "shown for completeness: their accuracy is no quality figure.")
SPEED_CAPTION = ("Speed is measured in counterbalanced rounds: each round runs every model once, in a fresh process, "
                 "in an order rotated each round; in lockstep (the default when the models fit in memory together) "
                 "the round's models answer each sample turn about. TTFT, Prefill, Decode and Per request: mean of the round means ± "
                 "half-width of their 95 % interval over rounds (Student t), the figure the verdicts pair; the tooltip "
                 "gives the requests' own spread, which says how much one request varies, not how sure a ranking is. "
                 "With one round the interval is within one run, over requests. Rounds: how many, and how far decode's "
                 "round means spread (max / min); 'rounds disagree' when they differ by more than the requests' spread "
                 "implies. Load and Import are per model load: one load shows its value, several mean ± std. Tokens: "
                 "mean generated / prompt tokens per request. Memory is the largest per-request peak. A cell marked "
                 "noisy: its round means vary by more than 10 % (coefficient of variation).")


def _core(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in _CORE if c in df.columns]].reset_index(drop=True)


def _finding_rows(result, unit: tuple[str, float]) -> list[dict]:
    out = []
    for f in result.findings:
        if f.metric == "score":
            base, cur = f"{100 * f.baseline:.1f} %", f"{100 * f.current:.1f} %"
            change = "–" if math.isnan(f.change) else f"{100 * f.change:+.1f} pp"
        elif f.metric == "peak_mlx_bytes":
            base, cur = f"{fmt(f.baseline / unit[1])} {unit[0]}", f"{fmt(f.current / unit[1])} {unit[0]}"
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


def split_published(acc: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-sample scores, published benchmark-level figures) of an accuracy table.

    Figures such as a benchmark's official 'average' (category '@<benchmark>', statistic other
    than 'score') are in their own units and never enter the natural / synthetic means."""
    if "statistic" not in acc:
        return acc, acc.iloc[0:0]
    score = acc["statistic"].fillna("score") == "score"
    return acc[score].reset_index(drop=True), acc[~score].reset_index(drop=True)


def published_rows(pub: pd.DataFrame, role_of: dict[str, str]) -> list[dict]:
    out = []
    for r in pub.itertuples(index=False):
        unit = str(getattr(r, "unit", "") or "")
        value = (f"{100 * r.mean:.1f} %" if unit == "fraction" else f"{fmt(r.mean)} {unit}".strip())
        out.append({"model": r.model, "role": role_of.get(r.model, MODEL), "suite": r.suite,
                    "benchmark": str(r.category).lstrip("@"), "statistic": str(r.statistic), "value": value,
                    "n": "–" if pd.isna(r.n) else int(r.n)})
    return out


def _suite_labels(acc: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(suite, suite_hash) -> column label; a suite seen with several contents gets its hash."""
    out = {}
    whole = acc[acc["category"] == ALL]
    for suite, g in whole.groupby("suite"):
        hashes = sorted(g["suite_hash"].astype(str).unique())
        for h in hashes:
            out[(suite, h)] = suite if len(hashes) == 1 else f"{suite} ({h[:6]})"
    return out


def accuracy_section(acc: pd.DataFrame, kinds: dict[str, str], role_of: dict[str, str]) -> dict:
    """The accuracy table's rows (Natural, Synthetic, Overall, then one column per suite) and the
    per-suite, per-category detail, all as Cells from accuracy_table's rows."""
    summary = kind_summary(acc, kinds)
    labels = _suite_labels(acc)
    suites = sorted(labels.items(), key=lambda kv: (kinds.get(kv[0][0], "synthetic") != "natural",
                                                     natural_key(kv[1])))
    cols = [Column("natural", "Natural", "%"), Column("synthetic", "Synthetic", "%"), Column("overall", "Overall", "%")]
    cols += [Column(f"suite:{lab}", lab, "%", kinds.get(s, "")) for (s, _h), lab in suites]
    models = sorted(set(acc["model"])) if not acc.empty else []
    whole_by_model: dict[str, list] = {}
    summary_by_model: dict[str, list] = {}
    for r in summary.itertuples(index=False):
        summary_by_model.setdefault(r.model, []).append(r)
    for r in acc[acc["category"] == ALL].itertuples(index=False):
        whole_by_model.setdefault(r.model, []).append(r)
    rows = []
    for model in models:
        muted = role_of.get(model, MODEL) != MODEL
        cells: dict[str, Cell] = {}
        for r in summary_by_model.get(model, []):
            cells[r.kind] = acc_cell(r.mean, r.ci_low, r.ci_high, r.n, muted=muted)
        for r in whole_by_model.get(model, []):
            c = acc_cell(r.mean, r.ci_low, r.ci_high, int(r.n), interval=getattr(r, "interval", ""),
                         clusters=getattr(r, "n_clusters", None), drop=getattr(r, "detectable_drop", None),
                         muted=muted)
            extra = ", ".join(x for x in (f"{r.n_error} error(s)" if r.n_error else "",
                                          f"{r.n_unsupported} unsupported" if r.n_unsupported else "") if x)
            if not r.n and r.n_unsupported:
                c = Cell("unsupported", None, "unsupported", "", f"{r.n_unsupported} sample(s) the model cannot take",
                         "muted")
            elif extra:
                c = Cell(c.text, c.sort, c.main, c.sub, (c.title + "; " if c.title else "") + extra, c.cls)
            cells[f"suite:{labels[(r.suite, str(r.suite_hash))]}"] = c
        rows.append(ModelRow(model, role_of.get(model, MODEL), "", "", "", cells))
    details = []
    # One pass over the table, then lookups: filtering it per cell is quadratic in suites × models.
    index = {(r.model, r.suite, str(r.suite_hash), r.category): r for r in acc.itertuples(index=False)}
    members: dict[tuple[str, str], tuple[set, set, str]] = {}
    for r in index.values():
        cats, mods, metric = members.setdefault((r.suite, str(r.suite_hash)), (set(), set(), str(r.metric)))
        cats.add(r.category)
        mods.add(r.model)
    for (suite, h), lab in suites:
        cat_set, model_set, metric = members[(suite, h)]
        cats = sorted(cat_set, key=lambda c: (c != ALL, natural_key(c)))
        dm = sorted(model_set)
        grid = []
        for cat in cats:
            row = {"category": "whole suite" if cat == ALL else (cat or "–"), "cells": []}
            for model in dm:
                r = index.get((model, suite, h, cat))
                if r is None:
                    row["cells"].append(Cell("–"))
                    continue
                c = acc_cell(r.mean, r.ci_low, r.ci_high, int(r.n), interval=getattr(r, "interval", ""),
                             clusters=getattr(r, "n_clusters", None), drop=getattr(r, "detectable_drop", None),
                             muted=role_of.get(model, MODEL) != MODEL)
                if r.n_unsupported and not r.n:
                    c = Cell(f"unsupported ({r.n_unsupported})", None, f"unsupported ({r.n_unsupported})", "",
                             "the model cannot take this suite's input", "muted")
                row["cells"].append(c)
            grid.append(row)
        details.append({"suite": lab, "kind": kinds.get(suite, ""), "metric": metric,
                        "models": dm, "rows": grid, "hash": h[:12]})
    return {"columns": cols, "rows": rows, "details": details, "summary": summary}



MAX_MESSAGES = 200  # distinct error messages the page keeps (the commonest); the parquet has every row


def error_messages(errors: pd.DataFrame) -> tuple[list[dict], int]:
    """The distinct error messages of the error rows, the commonest first, each with its count and
    the models it came from; and how many distinct messages there are in all."""
    if errors.empty:
        return [], 0
    text = errors["error"].fillna("").astype(str).str.strip() if "error" in errors else pd.Series("", errors.index)
    text = text.where(text != "", "(no message)")
    model = errors["model"].astype(str) if "model" in errors else pd.Series("", errors.index)
    counts = text.value_counts()
    table = pd.DataFrame({"error": counts.index, "n": counts.to_numpy()})
    kept = table.sort_values(["n", "error"], ascending=[False, True])["error"].head(MAX_MESSAGES).tolist()
    # Models only for the messages kept: 100,000 distinct messages cost one count, not 100,000 joins.
    pairs = pd.DataFrame({"error": text, "model": model})
    pairs = pairs[pairs["error"].isin(kept)].drop_duplicates().sort_values("model")
    models = pairs.groupby("error")["model"].agg(", ".join)
    return [{"count": int(counts[e]), "models": models[e], "error": e} for e in kept], len(counts)


def size_text(n_bytes: float) -> str:
    """A checkpoint's size on disk in decimal units, three figures: 16.6 GB, 9.44 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{fmt(n_bytes / scale)} {unit}"
    return f"{int(n_bytes)} B"


def random_weight_sizes(df: pd.DataFrame, role_of: dict[str, str]) -> list[tuple[str, str]]:
    """(model, size) of each random-weight model: on disk from model_size_bytes, with the
    parameter count where the rows carry params_b. A 7B preset is random weights too, not a
    tiny checkpoint, and the banner says which is which."""
    out = []
    for model in sorted(m for m, r in role_of.items() if r == FIXTURE):
        rows = df[df["model"] == model]
        size = rows["model_size_bytes"].dropna() if "model_size_bytes" in rows else pd.Series([], dtype=float)
        params = rows["params_b"].dropna() if "params_b" in rows else pd.Series([], dtype=float)
        parts = [f"{size_text(float(size.iloc[0]))} on disk"] if not size.empty else ["size not recorded"]
        if not params.empty:
            parts.append(f"{fmt(float(params.iloc[0]))} B parameters")
        out.append((model, ", ".join(parts)))
    return out


@dataclass(frozen=True)
class Page:
    """What the report shows. Field names are the template's names for them."""

    title: str
    generated: str
    version: str
    facts: str
    notes: list[str]
    verdicts: list
    checks: list
    speed_columns: list[Column]
    speed_rows: list[ModelRow]
    speed_caption: str
    noisy: dict[str, list[str]]
    acc_columns: list[Column]
    acc_rows: list[ModelRow]
    acc_details: list[dict]
    acc_caption: str
    published: list[dict]
    role_label: dict[str, str]
    roles: dict[str, str]
    tagged_models: list[str]
    none_cell: Cell
    role_note: dict[str, str]
    any_random: bool
    any_reference: bool
    cpu_only: bool
    unit: str
    charts: list
    gallery: dict
    errors: list[dict]
    n_errors: int
    error_messages: list[dict]  # distinct messages, commonest first: count, models, error
    n_error_messages: int
    random_sizes: list[tuple[str, str]]  # (model, size on disk [, parameters]) of each random-weight model
    runcard: list
    environment: Any
    runs: list[str]
    history: list[dict]
    history_chart: Any
    comparison: dict | None
    n_rows: int
    serving: list
    passes: list[dict]  # accuracy-mode passes as throughput (harness/judge/throughput.py)
    sources: list[str]
    md_name: str
    unsealed: list[str] = field(default_factory=list)  # sources without a content digest
    fleet_note: str = ""  # speed from several machines: how the page treats it
    extra: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The template's variables (shallow: the cells and rows stay the objects built here)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def machines_note(stats: Sequence[SpeedStats]) -> tuple[str, list[SpeedStats]]:
    """With speed from several machines: the note saying so, and the one machine's statistics the
    speed verdicts compare (the machine that measured the most requests); models are never ranked
    across machines."""
    machines: dict[str, int] = {}
    for s in stats:
        machines[s.machine] = machines.get(s.machine, 0) + s.n
    if len(machines) <= 1:
        return "", list(stats)
    home = sorted(machines, key=lambda m: (-machines[m], m))[0]
    note = (f"Speed was measured on {len(machines)} machines: the speed table has one row per model and machine, "
            f"never a figure pooled across machines, and the speed verdicts compare models on {home}, the machine "
            "that measured the most requests. Accuracy is computed over every machine's rows.")
    return note, [s for s in stats if s.machine == home]


def build_page(df: pd.DataFrame, out: Path, *, title: str = "VLM benchmark", sources: list[str] | None = None,
               run_dir: Path | str | None = None, markdown: bool = True, load_runs: Sequence[Path] = (),
               unsealed: Sequence[str] = ()) -> Page:
    """Every figure of the report, from the rows, in one pass (see the module docstring).
    `unsealed`: source files read without a content digest (written by pandas, DuckDB, polars)."""
    out = Path(out)
    full, df = df, _core(df)
    role_of = roles(df)
    kinds = suite_kinds(df)
    acc, published = split_published(accuracy_table(df))
    # Accuracy-mode rows were generated in batches: their timings are no request's latency.
    speed_cols, speed_rows, speed_stats, unit = speed_table(latency_rows(df))
    accs = accuracy_section(acc, kinds, role_of)
    fleet_note, verdict_speed = machines_note(speed_stats)
    answers = verdicts(verdict_speed, accs["summary"], role_of, unit)
    checks = pipeline_checks(accs["summary"], role_of)
    ok = df[(df["sample_id"] != "*") & (df["status"] == "ok")] if not df.empty else df
    errors = full[full["status"] == "error"][[c for c in ("model", "suite", "sample_id", "error") if c in full]]
    order = history.run_order(df)
    hist = history.history(df) if len(order) > 1 else pd.DataFrame()
    comparison = history.latest_vs_previous(full)
    dirs = runcard.run_dirs(sources or [], run_dir)
    chart_list = [c for c in (charts.decode_vs_memory(speed_stats, unit),
                              charts.latency(latency_rows(ok), role_of) if not latency_rows(ok).empty else None,
                              charts.accuracy_grid(acc, role_of), charts.accuracy_by_image(acc, role_of))
                  if c is not None]
    counts = df["status"].value_counts().to_dict() if "status" in df else {}
    facts = (f"{len(df)} result rows ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
             f"{len(role_of)} model(s), {len(kinds)} suite(s); run(s): {', '.join(order[:6])}"
             + (f" and {len(order) - 6} more" if len(order) > 6 else "") + ".")
    any_random = FIXTURE in role_of.values()
    any_reference = REFERENCE in role_of.values()
    random_sizes = random_weight_sizes(df, role_of) if any_random else []
    messages, n_messages = error_messages(errors)
    notes = []
    if any_random:
        notes.append("Models marked (random weights) have random weights the harness built offline in a real "
                     f"architecture's shapes ({'; '.join(f'{m}: {size}' for m, size in random_sizes)}): they "
                     "measure the harness and each architecture's speed and memory at that size, never a model's "
                     "quality; they never win an accuracy question.")
    if any_reference:
        notes.append("The reference canary is the harness's own tiny trained model: its accuracy is a pipeline "
                     "check, not a contender.")
    if fleet_note:
        notes.append(fleet_note)
    if unsealed:
        notes.append(f"Unsealed: {', '.join(unsealed)} carried no content digest (written by another tool), so a "
                     "changed value would not be detected.")
    cpu_only = "backend" in df and bool((df["backend"].dropna() == "cpu").any())
    if cpu_only:
        notes.append("Measured on MLX's CPU backend: says nothing about Metal on Apple Silicon.")
    labels = {c.key: c.label for c in speed_cols}
    hist_rows = hist.to_dict("records") if len(order) > 1 else []
    return Page(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        facts=facts,
        notes=notes,
        verdicts=list(answers),
        checks=list(checks),
        speed_columns=list(speed_cols),
        speed_rows=list(speed_rows),
        speed_caption=SPEED_CAPTION,
        noisy={r.model: [labels.get(k, k) for k in noisy_columns(r)] for r in speed_rows},
        acc_columns=accs["columns"],
        acc_rows=accs["rows"],
        acc_details=accs["details"],
        acc_caption=ACC_CAPTION,
        published=published_rows(published, role_of),
        role_label=ROLE_LABEL,
        roles=role_of,
        tagged_models=[m for m, r in role_of.items() if r != MODEL],
        none_cell=Cell("–"),
        role_note=ROLE_NOTE,
        any_random=any_random,
        any_reference=any_reference,
        cpu_only=cpu_only,
        unit=unit[0],
        charts=chart_list,
        gallery=gallery.gallery(full),
        errors=errors.head(200).to_dict("records"),
        n_errors=len(errors),
        error_messages=messages,
        n_error_messages=n_messages,
        random_sizes=random_sizes,
        runcard=runcard.card(full, out, dirs),
        environment=environment(full),
        runs=order,
        history=hist_rows,
        history_chart=charts.history(hist, role_of) if hist_rows else None,
        comparison=None if comparison is None else {
            "previous": comparison[0], "latest": comparison[1], "problems": list(comparison[2].problems),
            "warnings": comparison[3], "notes": list(comparison[2].notes), "rows": _finding_rows(comparison[2], unit),
            "regressions": len(comparison[2].regressions),
            "rule": gate_rule(comparison[2].factor, comparison[2].alpha),
        },
        n_rows=len(df),
        serving=serving.sweeps(load_runs, out) if load_runs else [],
        passes=pass_table(full).to_dict("records"),
        sources=sources or [],
        md_name="report.md" if markdown else "",
        unsealed=list(unsealed),
        fleet_note=fleet_note,
    )
