"""Natural, synthetic and overall accuracy per model, from `accuracy_table`'s per-suite rows.

The mean of per-suite means: every suite (model × suite × suite_hash) weighs the same, so a large
suite cannot drown a small one and a model is judged on what each suite asks, not on how many
samples a suite happens to hold. Its 95 % interval combines the suites' intervals as independent
normal errors: half-width sqrt(Σ hᵢ²) / k on each side, hᵢ the suite's half-width on that side
(an approximation; exact for normal per-suite errors). When any suite has no interval (too few
samples), neither has the combination.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from harness.judge.accuracy import ALL

KINDS = ("natural", "synthetic", "overall")
COLUMNS = ["model", "kind", "mean", "ci_low", "ci_high", "n", "n_suites", "suites"]


def suite_kinds(df: pd.DataFrame) -> dict[str, str]:
    """suite -> natural | synthetic | speed, from the rows' suite_kind."""
    if "suite_kind" not in df or df.empty:
        return {}
    d = df[["suite", "suite_kind"]].dropna().drop_duplicates("suite")
    return dict(zip(d["suite"], d["suite_kind"].astype(str), strict=True))


def combine(means: list[float], lows: list[float], highs: list[float]) -> tuple[float, float, float]:
    """Mean of k means and its interval from theirs (see the module's docstring)."""
    k = len(means)
    if k == 0:
        return math.nan, math.nan, math.nan
    m = sum(means) / k
    if any(math.isnan(x) for x in (*lows, *highs)):
        return m, math.nan, math.nan
    down = math.sqrt(sum((a - lo) ** 2 for a, lo in zip(means, lows, strict=True))) / k
    up = math.sqrt(sum((hi - a) ** 2 for a, hi in zip(means, highs, strict=True))) / k
    return m, max(0.0, m - down), min(1.0, m + up)


def kind_summary(acc: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """One row per model × kind (natural, synthetic, overall) from accuracy_table(df).

    Only whole-suite rows (category '*') with at least one scored sample count; speed suites are
    left out. `suites` lists the suites that went in, so differing coverage can be shown."""
    rows = []
    if acc.empty:
        return pd.DataFrame(columns=COLUMNS)
    if "statistic" in acc:  # published benchmark figures are in their own units
        acc = acc[acc["statistic"].fillna("score") == "score"]
    whole = acc[(acc["category"] == ALL) & (acc["n"] > 0)].copy()
    whole["kind"] = whole["suite"].map(lambda s: kinds.get(s, "synthetic"))
    whole = whole[whole["kind"].isin(("natural", "synthetic"))]
    for model, g in whole.groupby("model", sort=True):
        for kind in KINDS:
            part = g if kind == "overall" else g[g["kind"] == kind]
            if part.empty:
                continue
            m, lo, hi = combine(list(part["mean"].astype(float)), list(part["ci_low"].astype(float)),
                                list(part["ci_high"].astype(float)))
            rows.append({"model": model, "kind": kind, "mean": m, "ci_low": lo, "ci_high": hi,
                         "n": int(part["n"].sum()), "n_suites": len(part),
                         "suites": ",".join(sorted(part["suite"].astype(str)))})
    return pd.DataFrame(rows, columns=COLUMNS)
