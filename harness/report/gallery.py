"""The per-sample gallery: compact rows and inlined thumbnails, embedded as JSON and paged by
a small script in the page.

Bounded whatever the run's size: failures come first, at most MAX_ROWS rows and MAX_THUMBS
thumbnails are embedded, and the page says how many were left out. Text goes into the page
through Jinja's `tojson` (which escapes <, > and &) and is put on screen with `textContent`,
so a model that answers `</script><script>...` stays text.
"""

from __future__ import annotations

import base64
import io
import math

import pandas as pd

from harness.report.tables import measured

MAX_ROWS = 3000
MAX_THUMBS = 300
MAX_TEXT = 400
THUMB_PX = 96


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = str(v)
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + f"… (+{len(s) - MAX_TEXT} chars)"


def _list(v: object) -> list[str]:
    if v is None or isinstance(v, float):
        return []
    return [_text(x) for x in list(v)]


def thumbnail(path: str) -> str | None:
    """A small JPEG data URI of an image file, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=70)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def is_failure(status: pd.Series, score: pd.Series) -> pd.Series:
    return (status != "ok") | score.isna() | (score < 1)


def gallery(df: pd.DataFrame) -> dict:
    """{'rows': [...], 'thumbs': [...], 'total': n, 'failures': n, 'shown': n}."""
    m = measured(df).reset_index(drop=True)  # merged runs repeat index labels
    total = len(m)
    if total == 0:
        return {"rows": [], "thumbs": [], "total": 0, "failures": 0, "shown": 0, "columns": []}
    fail = is_failure(m["status"], m["score"])
    # Errors first, then the worst scores, then passes: a reviewer drills into failures.
    order = pd.DataFrame({"err": (m["status"] != "ok").astype(int), "fail": fail.astype(int),
                          "score": m["score"].fillna(-1.0)}, index=m.index)
    order = order.sort_values(["err", "fail", "score"], ascending=[False, False, True], kind="stable")
    picked = m.loc[order.index[:MAX_ROWS]]
    thumbs: list[str] = []
    thumb_of: dict[str, int] = {}
    rows = []
    cols = ["model", "suite", "sample_id", "category", "repeat", "status", "prompt", "answers", "output",
            "score", "error", "thumb", "fail"]
    for r in picked.itertuples(index=False):
        images = _list(getattr(r, "images", None))
        t = -1
        if images:
            path = images[0]
            if path in thumb_of:
                t = thumb_of[path]
            elif len(thumbs) < MAX_THUMBS:
                uri = thumbnail(path)
                thumb_of[path] = t = len(thumbs) if uri else -1
                if uri:
                    thumbs.append(uri)
        score = r.score if isinstance(r.score, float) and not math.isnan(r.score) else None
        failed = r.status != "ok" or score is None or score < 1
        rows.append([_text(r.model), _text(r.suite), _text(r.sample_id), _text(r.category),
                     int(r.repeat) if pd.notna(r.repeat) else 0, _text(r.status), _text(r.prompt),
                     _list(r.answers), _text(r.output), None if score is None else round(score, 4),
                     _text(r.error), t, 1 if failed else 0])
    return {"columns": cols, "rows": rows, "thumbs": thumbs, "total": total, "failures": int(fail.sum()),
            "shown": len(rows)}

