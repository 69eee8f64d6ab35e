"""The load report: per-step table and latency-throughput curves (HTML with inline SVG images),
a GitHub Markdown table, and the table for the terminal; every figure from `metrics.summarise`.

Charts are SVG files embedded as <img> data URIs: text drawn from a result file (a model name)
stays inside an image and can never become markup of the page.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: E402

from harness.serving.metrics import LAG_FRACTION, SATURATION_GAIN, pname  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _svg(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def load_label(row: pd.Series) -> str:
    return f"rate {row['target_rate']:g}/s" if row["mode"] == "rate" else f"concurrency {int(row['target_concurrency'])}"


def _series(summary: pd.DataFrame):
    for n, ((model, suite, mode), g) in enumerate(summary.groupby(["model", "suite", "mode"], sort=False)):
        name = Path(str(model)).name or str(model)
        label = f"{name} · {suite}" if summary["suite"].nunique() > 1 else name
        yield PALETTE[n % len(PALETTE)], label, mode, g


def _series_title(summary: pd.DataFrame) -> str:
    return next(label for _, label, _, _ in _series(summary))


def _xlabel(mode: str) -> str:
    return "target request rate (requests/s)" if mode == "rate" else "concurrency (requests in flight)"


def throughput_axis(throughput: Sequence[float] | pd.Series) -> tuple[float, float]:
    """The x range of a latency-vs-throughput chart: from 0 to a little past the largest throughput.

    Past saturation every step achieves about the same throughput (5.230–5.240 requests/s), and an
    axis zoomed to that spread turns a vertical wall of rising latency into a zigzag that reads as
    noise; from 0, the wall is where it belongs, at the server's capacity, beside the saturation
    marker. The 15 % margin leaves room for the load labels."""
    v = pd.to_numeric(pd.Series(list(throughput)), errors="coerce").dropna()
    v = v[v > 0]
    hi = float(v.max()) if len(v) else 1.0
    return 0.0, hi * 1.15


def latency_figure(summary: pd.DataFrame, metric: str, title: str, pcols: Sequence[float]) -> plt.Figure:
    """One latency metric's percentiles against achieved throughput, one point per step, with the
    saturation point marked; the x axis from `throughput_axis`."""
    styles, markers = ("-", "--", ":"), ("o", "s", "^")
    single = summary.groupby(["model", "suite", "mode"]).ngroups == 1
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for colour, label, _, g in _series(summary):
        for k, (p, ls, mk) in enumerate(zip(pcols, styles, markers, strict=False)):
            col = f"{metric}_{pname(p)}_ms"
            # one server: a colour per percentile; several: a colour per server, a line style per percentile
            c = PALETTE[k] if single else colour
            ax.plot(g["request_throughput"], g[col], ls, marker=mk, color=c, label=f"p{p:g}" if single else f"{label} p{p:g}")
        for _, r in g.iterrows():
            ax.annotate(load_label(r).split()[-1], (r["request_throughput"], r[f"{metric}_{pname(pcols[-1])}_ms"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        sat = g[g["saturated"]]
        if not sat.empty:
            ax.axvline(sat["request_throughput"].iloc[0], color="#555555", ls="-.", lw=1, label="saturation point")
    ax.set_xlabel("achieved request throughput (requests/s)")
    ax.set_ylabel(f"{title} (ms)")
    ax.set_xlim(*throughput_axis(summary["request_throughput"]))
    tops = summary[[f"{metric}_{pname(p)}_ms" for p in pcols]].to_numpy(dtype=float)
    top = float(np.nanmax(tops)) if np.isfinite(tops).any() else math.nan
    if top > 0:  # room above the highest point for its label (flat data would sit on the frame)
        ax.set_ylim(0, top * 1.12)
    else:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=_series_title(summary) if single else None, title_fontsize=7)
    return fig


def charts(summary: pd.DataFrame, percentiles: Sequence[float]) -> list[dict[str, str]]:
    """[{id, title, caption, uri}] for the report."""
    if summary.empty:
        return []
    out = []
    pcols = [p for p in (50.0, 90.0, 99.0) if p in percentiles] or list(percentiles)[:3]
    single = summary.groupby(["model", "suite", "mode"]).ngroups == 1
    for metric, title in (("ttft", "TTFT"), ("tpot", "TPOT")):
        fig = latency_figure(summary, metric, title, pcols)
        out.append({"id": f"{metric}-curve", "title": f"{title} percentiles vs achieved throughput",
                    "caption": f"Each point is one step, labelled with its load (concurrency or target rate); the "
                               f"dash-dot line marks the saturation point. {title} as vLLM defines it.",
                    "uri": _svg(fig)})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.6, 3.4))
    for colour, label, mode, g in _series(summary):
        ax.plot(g["load"], g["request_throughput"], "-", marker="o", color=colour, label=f"{label} throughput")
        if g["request_goodput"].notna().any():
            ax.plot(g["load"], g["request_goodput"], "--", marker="s", color=PALETTE[1] if single else colour,
                    label=f"{label} goodput")
        bx.plot(g["load"], g["output_throughput"], "-", marker="o", color=colour, label=label)
        ax.set_xlabel(_xlabel(mode))
        bx.set_xlabel(_xlabel(mode))
    ax.set_ylabel("requests/s")
    bx.set_ylabel("output tokens/s")
    for a in (ax, bx):
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.append({"id": "throughput", "title": "Throughput and goodput vs load",
                "caption": "Goodput counts only requests that met every SLO given with --slo (absent without one).",
                "uri": _svg(fig), "wide": True})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.6, 3.4))
    for colour, label, mode, g in _series(summary):
        ax.plot(g["load"], g["failed"] / g["sent"].where(g["sent"] > 0) * 100, "-", marker="o", color=colour, label=label)
        bx.plot(g["load"], g["accuracy"] * 100, "-", marker="o", color=colour, label=label)
        ax.set_xlabel(_xlabel(mode))
        bx.set_xlabel(_xlabel(mode))
    ax.set_ylabel("failed requests (%)")
    ax.set_ylim(0, max(5.0, float((summary["failed"] / summary["sent"].where(summary["sent"] > 0)).max() * 110)))
    bx.set_ylabel("accuracy of answers (%)")
    bx.set_ylim(-2, 102)
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    out.append({"id": "errors-accuracy", "title": "Errors and accuracy vs load",
                "caption": "A server that answers wrongly or fails under pressure shows here: accuracy is the suite's "
                           "metric over the answers of each step.",
                "uri": _svg(fig), "wide": True})
    return out


def _ms(v: object) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _f(v: object, d: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


# Columns of free text, which may wrap in the HTML table (the numbers never do).
TEXT_COLUMNS = ("errors", "note")


def note(r: pd.Series) -> str:
    """The step's flags: saturation point, client late, a server that ignored max_tokens."""
    ignored = r.get("max_tokens_note") or ""
    if ignored and r.get("max_tokens_ignored", 0) and r["max_tokens_ignored"] != r["sent"]:
        ignored += f" ({r['max_tokens_ignored']} of {r['sent']})"
    return "; ".join(n for n, on in (("saturation point", r["saturated"]), ("client late", r["client_late"]),
                                     (ignored, bool(ignored))) if on)


def table_rows(summary: pd.DataFrame, percentiles: Sequence[float]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-step table (strings, units in the header); the figures a reader
    looks for first come first, so a narrow screen shows them before it scrolls."""
    hi = max(percentiles) if percentiles else 99
    cols: list[tuple[str, Callable[[pd.Series], str]]] = [
        ("load", load_label),
        ("ok / sent", lambda r: f"{r['completed']} / {r['sent']}"),
        ("req/s", lambda r: _f(r["request_throughput"])),
        ("out tok/s", lambda r: _f(r["output_throughput"], 1)),
        ("goodput req/s", lambda r: _f(r["request_goodput"])),
        ("TTFT p50 ms", lambda r: _ms(r.get("ttft_p50_ms"))),
        ("TTFT p90 ms", lambda r: _ms(r.get("ttft_p90_ms"))),
        (f"TTFT p{hi:g} ms", lambda r: _ms(r.get(f"ttft_{pname(hi)}_ms"))),
        ("TPOT mean ms", lambda r: _ms(r["tpot_mean_ms"])),
        ("TPOT p90 ms", lambda r: _ms(r.get("tpot_p90_ms"))),
        ("ITL p50 ms", lambda r: _ms(r.get("itl_p50_ms"))),
        ("ITL p90 ms", lambda r: _ms(r.get("itl_p90_ms"))),
        ("E2EL p50 ms", lambda r: _ms(r.get("e2el_p50_ms"))),
        (f"E2EL p{hi:g} ms", lambda r: _ms(r.get(f"e2el_{pname(hi)}_ms"))),
        ("accuracy", lambda r: "—" if math.isnan(r["accuracy"]) else f"{r['accuracy'] * 100:.0f} % of {r['scored']}"),
        ("errors", lambda r: r["errors"] or "0"),
        ("duration s", lambda r: _f(r["duration_s"])),
        ("in flight", lambda r: _f(r["mean_inflight"])),
        ("lag mean ms", lambda r: _f(r["lag_mean_ms"], 3)),
        ("lag p99 ms", lambda r: _f(r["lag_p99_ms"], 3)),
        ("note", note),
    ]
    return [h for h, _ in cols], [[fn(r) for _, fn in cols] for _, r in summary.iterrows()]


def markdown(summary: pd.DataFrame, percentiles: Sequence[float]) -> str:
    head, rows = table_rows(summary, percentiles)
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines) + "\n"


def terminal(summary: pd.DataFrame, percentiles: Sequence[float]) -> str:
    head, rows = table_rows(summary, percentiles)
    hi = max(percentiles) if percentiles else 99
    names = ["load", "ok / sent", "errors", "req/s", "out tok/s", "goodput req/s", "TTFT p90 ms", f"TTFT p{hi:g} ms",
             "TPOT mean ms", "ITL p50 ms", f"E2EL p{hi:g} ms", "lag mean ms", "accuracy", "note"]
    keep = [head.index(n) for n in names]
    head = [head[i] for i in keep]
    rows = [[r[i] for i in keep] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in rows)])


def saturation_text(summary: pd.DataFrame) -> str:
    sat = summary[summary["saturated"]]
    rule = (f"the first step after which request throughput grows by less than {SATURATION_GAIN:.0%} "
            "while p90 TTFT grows")
    if sat.empty:
        return f"No saturation point in this sweep ({rule})."
    parts = [f"{Path(str(r['model'])).name}: {load_label(r)} ({r['request_throughput']:.2f} requests/s, "
             f"p90 TTFT {r['ttft_p90_ms']:.0f} ms)" for _, r in sat.iterrows()]
    return "Saturation point — " + "; ".join(parts) + f". Defined as {rule}."


def render(summary: pd.DataFrame, rows: pd.DataFrame, out: Path, *, title: str, percentiles: Sequence[float],
           slo: dict[str, float], chunk_rule: str, sources: list[str], command: str = "",
           random_weights: bool = False) -> Path:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    head, cells = table_rows(summary, percentiles)
    environment = {}
    if not rows.empty and rows["environment"].iloc[0]:
        environment = json.loads(rows["environment"].iloc[0])
    html = env.get_template("load.html.j2").render(
        title=title, head=head, cells=cells, text_columns=TEXT_COLUMNS, charts=charts(summary, percentiles),
        saturation=saturation_text(summary), lag_fraction=f"{LAG_FRACTION:.0%}",
        slo=", ".join(f"{k} ≤ {v * 1e3:g} ms" for k, v in slo.items()) or "none given",
        chunk_rule=chunk_rule, sources=sources, command=command, random_weights=random_weights,
        models=sorted(rows["model"].astype(str).unique()) if not rows.empty else [],
        base_urls=sorted(rows["base_url"].astype(str).unique()) if not rows.empty else [],
        suites=sorted(rows["suite"].astype(str).unique()) if not rows.empty else [],
        environment=environment, n_rows=len(rows),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def is_random_weight_fixture(model: str) -> bool:
    """Whether a model name is a local checkpoint whose manifest says its weights are random."""
    from harness.fixtures.common import MANIFEST

    path = Path(model) / MANIFEST
    try:
        return bool(json.loads(path.read_text()).get("random_weights")) if path.exists() else False
    except (OSError, ValueError):
        return False


def publish(rows: pd.DataFrame, html: Path, *, title: str, percentiles: Sequence[float], slo: dict[str, float],
            chunk_rule: str, sources: list[str], command: str = "") -> pd.DataFrame:
    """Summarise the rows, write `html` and the Markdown table beside it (same name, .md); the summary."""
    from harness.serving.metrics import summarise

    summary = summarise(rows, percentiles=percentiles, slo=slo, chunk_rule=chunk_rule)
    fixture = bool(len(rows)) and any(is_random_weight_fixture(m) for m in rows["model"].astype(str).unique())
    render(summary, rows, html, title=title, percentiles=percentiles, slo=slo, chunk_rule=chunk_rule,
           sources=sources, command=command, random_weights=fixture)
    html.with_suffix(".md").write_text(f"# {title}\n\n{saturation_text(summary)}\n\n" + markdown(summary, percentiles))
    return summary
