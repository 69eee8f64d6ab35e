"""The per-sample gallery: compact rows and inlined images, embedded as JSON and filtered, searched,
sorted and paged by a small script in the page.

Bounded whatever the run's size: failures come first, at most MAX_ROWS rows and IMAGE_BUDGET
bytes of images are embedded (beyond the budget, small thumbnails; beyond MAX_THUMBS, none), and
the page says how many rows were left out. Text goes into the page through Jinja's `tojson`
(which escapes <, > and &) and is put on screen with `textContent`, so a model that answers
`</script><script>...` stays text. Control and invisible format characters are turned into
visible escapes (\\x07, \\u202e) here, so what a model emitted can be seen.
"""

from __future__ import annotations

import base64
import io
import math
import unicodedata

import pandas as pd

from harness.report.tables import measured, roles

MAX_ROWS = 3000
MAX_THUMBS = 400
MAX_TEXT = 600
VIEW_PX = 448  # images up to this edge are embedded at full size, so OCR text stays legible enlarged
THUMB_PX = 96
IMAGE_BUDGET = 360_000  # bytes of base64 images at VIEW_PX (the page stays under 1 MB); later ones get THUMB_PX thumbnails

PASS, FAIL, ERROR, UNSUPPORTED = "pass", "fail", "error", "unsupported"


def visible(s: str) -> str:
    """Control and format characters, and U+FFFD (bytes a tokenizer could not decode), as escapes;
    newlines and tabs stay (the page keeps them)."""
    if s.isprintable() and "\ufffd" not in s:
        return s
    out = []
    for ch in s:
        if ch in "\n\t" or (ch != "\ufffd" and unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")):
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = visible(str(v))
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + f"… (+{len(s) - MAX_TEXT} chars)"


def _list(v: object) -> list[str]:
    if v is None or isinstance(v, float | str):
        return []
    return [_text(x) for x in list(v)]


def encode(path: str, edge: int) -> str | None:
    """A JPEG data URI of an image file with its longest edge at most `edge`, or None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.thumbnail((edge, edge))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=72 if edge > THUMB_PX else 65)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def status_of(status: pd.Series, score: pd.Series) -> pd.Series:
    """pass | fail | error | unsupported. Unsupported is not a failure: the model cannot take the input."""
    out = pd.Series(FAIL, index=status.index, dtype=object)
    out[(status == "ok") & (score >= 1)] = PASS
    out[status == "error"] = ERROR
    out[status == "unsupported"] = UNSUPPORTED
    out[status == "skipped"] = "skipped"
    return out


def is_failure(status: pd.Series, score: pd.Series) -> pd.Series:
    s = status_of(status, score)
    return (s == FAIL) | (s == ERROR)


def conversation(r: object) -> list[list[str]]:
    """[[question, answer], ...]: the first prompt and every follow-up, each with the model's answer."""
    questions = [_text(getattr(r, "prompt", ""))] + _list(getattr(r, "turns", None))
    answers = _list(getattr(r, "turn_outputs", None)) + [_text(getattr(r, "output", ""))]
    answers += [""] * (len(questions) - len(answers))
    return [[q, a] for q, a in zip(questions, answers[: len(questions)], strict=True)]


class _Images:
    def __init__(self) -> None:
        self.uris: list[str] = []
        self.index: dict[str, int] = {}
        self.spent = 0

    def get(self, path: str) -> int:
        if path in self.index:
            return self.index[path]
        i = -1
        if len(self.uris) < MAX_THUMBS:
            uri = encode(path, VIEW_PX) if self.spent < IMAGE_BUDGET else None
            if uri is not None and self.spent + len(uri) > IMAGE_BUDGET * 1.1:
                uri = None
            uri = uri or encode(path, THUMB_PX)
            if uri is not None:
                self.spent += len(uri)
                i = len(self.uris)
                self.uris.append(uri)
        self.index[path] = i
        return i


def gallery(df: pd.DataFrame) -> dict:
    """{'columns', 'rows', 'images', 'total', 'failures', 'unsupported', 'shown', 'roles'}."""
    m = measured(df).reset_index(drop=True)  # merged runs repeat index labels
    total = len(m)
    empty = {"rows": [], "images": [], "total": 0, "failures": 0, "unsupported": 0, "shown": 0, "columns": [],
             "roles": {}}
    if total == 0:
        return empty
    score = m["score"] if "score" in m else pd.Series(float("nan"), index=m.index)
    st = status_of(m["status"], score)
    # Errors first, then the worst scores, then passes: a reviewer drills into failures.
    rank = st.map({ERROR: 0, FAIL: 1, UNSUPPORTED: 2, PASS: 3}).fillna(4)
    order = pd.DataFrame({"rank": rank, "score": score.fillna(-1.0)}, index=m.index)
    order = order.sort_values(["rank", "score"], kind="stable")
    picked = m.loc[order.index[:MAX_ROWS]]
    images = _Images()
    cols = ["model", "suite", "sample_id", "category", "repeat", "status", "conversation", "answers", "score",
            "error", "images", "turns"]
    rows = []
    for r, s in zip(picked.itertuples(index=False), st.loc[order.index[:MAX_ROWS]], strict=True):
        paths = [p for p in (list(r.images) if getattr(r, "images", None) is not None
                             and not isinstance(r.images, float) else []) if isinstance(p, str)]
        sc = getattr(r, "score", None)
        sc = sc if isinstance(sc, float) and not math.isnan(sc) else None
        conv = conversation(r)
        rows.append([_text(r.model), _text(r.suite), _text(r.sample_id), _text(getattr(r, "category", "")),
                     int(r.repeat) if pd.notna(getattr(r, "repeat", None)) else 0, s, conv,
                     _list(getattr(r, "answers", None)), None if sc is None else round(sc, 4),
                     _text(getattr(r, "error", "")), [images.get(p) for p in paths], len(conv)])
    return {"columns": cols, "rows": rows, "images": images.uris, "total": total,
            "failures": int(((st == FAIL) | (st == ERROR)).sum()), "unsupported": int((st == UNSUPPORTED).sum()),
            "shown": len(rows), "roles": roles(m)}
