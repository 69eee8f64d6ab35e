"""report.md: the summary and both tables in GitHub Markdown, for a pull-request comment or a
README. Built from the same `Cell`s as the HTML page, so the figures are the same text.

GitHub refuses comments over 65,536 characters; LIMIT leaves room for a caller's own lines.
When a run is too large the per-suite columns go first, then rows, and the file says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.report.tables import Column, ModelRow, label

LIMIT = 60_000
MD_MESSAGES = 20  # distinct error messages report.md lists; report.html has up to page.MAX_MESSAGES
MD_MESSAGE_CHARS = 600  # a traceback-long message is cut; report.html has it whole


def cell(text: str) -> str:
    """One table cell: pipes escaped, one line, and no raw HTML from a model name reaches GitHub."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


def render_md(page: Any) -> str:
    """The Markdown view of the page model (harness/report/page.py `Page`): the same cells as the HTML."""
    title, facts, notes, verdicts = page.title, page.facts, page.notes, page.verdicts
    speed_cols, speed_rows, speed_caption = page.speed_columns, page.speed_rows, page.speed_caption
    acc_cols, acc_rows, acc_caption = page.acc_columns, page.acc_rows, page.acc_caption
    head = [f"# {cell(title)}", "", facts, ""]
    for n in notes:  # one quote each: consecutive quoted lines would run together into one paragraph
        head += [f"> {cell(n)}", ""]
    summary = ["## Summary", ""] + table(
        ["Question", "Verdict", "Margin", "Uncertainty"],
        [[v.question, (v.headline if v.outcome != "tie" else f"tie: {v.headline}")
          + (f" ({v.provisional})" if getattr(v, "provisional", "") else ""), v.margin, v.uncertainty + (f" {v.excluded}" if v.excluded else "")]
         for v in verdicts], "llll") + [""]

    def speed(rows: Sequence[ModelRow]) -> list[str]:
        return ["## Speed and memory", "", speed_caption, ""] + table(
            ["Model"] + [f"{c.label} ({c.unit})" if c.unit else c.label for c in speed_cols],
            [[label(r.model, r.role)] + [r.cells.get(c.key).text if c.key in r.cells else "–" for c in speed_cols]
             for r in rows], "l" + "r" * len(speed_cols)) + [""]

    def accuracy(rows: Sequence[ModelRow], cols: Sequence[Column]) -> list[str]:
        return ["## Accuracy", "", acc_caption, ""] + table(
            ["Model"] + [f"{c.label} (%)" for c in cols],
            [[label(r.model, r.role)] + [r.cells[c.key].text if c.key in r.cells else "–" for c in cols]
             for r in rows], "l" + "r" * len(cols)) + [""]

    def errors() -> list[str]:
        # The distinct messages with their counts: a run whose every row failed says why here too.
        if not page.n_errors:
            return []
        shown = page.error_messages[:MD_MESSAGES]
        out = [f"## Errors ({page.n_errors})", "", "Distinct messages, the commonest first; report.html lists every row.",
               ""] + table(["Rows", "Model", "Error"],
                           [[str(e["count"]), e["models"], e["error"] if len(e["error"]) <= MD_MESSAGE_CHARS
                             else e["error"][:MD_MESSAGE_CHARS] + "…"] for e in shown], "rll") + [""]
        if page.n_error_messages > len(shown):
            out += [f"*{page.n_error_messages - len(shown)} more distinct message(s); report.html lists them.*", ""]
        return out

    error_lines = errors()

    def build(n_rows: int, cols: Sequence[Column]) -> str:
        parts = head + summary + speed(speed_rows[:n_rows]) + accuracy(acc_rows[:n_rows], cols)
        cut = max(len(speed_rows), len(acc_rows)) - n_rows
        dropped = len(acc_cols) - len(cols)
        if dropped:
            parts.append(f"*{dropped} per-suite column(s) left out to stay under GitHub's comment limit; "
                         "report.html has them.*")
        if cut > 0:
            parts.append(f"*{cut} model row(s) left out to stay under GitHub's comment limit; report.html has them.*")
        if error_lines:
            parts += ([""] if dropped or cut > 0 else []) + error_lines
        return "\n".join(parts) + "\n"

    n = max(len(speed_rows), len(acc_rows))
    text = build(n, acc_cols)
    if len(text) > LIMIT:
        text = build(n, acc_cols[:3])  # natural, synthetic, overall
    while len(text) > LIMIT and n > 1:
        n = max(1, n * 3 // 4)
        text = build(n, acc_cols[:3])
    if len(text) > LIMIT:  # a pathological title or verdict: cut the text itself
        text = text[: LIMIT - 80] + "\n\n*Truncated to stay under GitHub's comment limit; see report.html.*\n"
    return text
