"""Do the report's speed verdicts survive a second run? Trials of `vlm-harness run`, as a user runs it.

- twins: two model files naming the same checkpoint (`twin-a`, `twin-b`, both `fixture:qwen2_5_vl`)
  and the 4-bit fixture, on synthetic-shapes and synthetic-counting, `--limit 8`, default rounds;
  the twins' order swapped from trial to trial. A false winner is a "Fastest decode" or "Fastest
  first token" verdict that names one twin alone over the other (16 questions in 8 trials). The
  4-bit fixture should lose "Fastest decode" every time.
- planted: `twin-a` against `twin-slow`, the same checkpoint with the mlx_vlm adapter's test-only
  `planted_slowdown = 0.25` (each decoded token also does a quarter of a step's work more;
  harness/adapters/_planted.py); each trial prints what it measured. twin-slow must win no speed
  question, and twin-a must win "Fastest decode".

Run: `python benchmarks/verdict_trials.py twins 8` or `... planted 20` (prints one line per trial and
the counts; anything after the count goes to `vlm-harness run`, e.g. `planted 20 --repeats 4`); `nox -s perf` runs both through benchmarks/test_verdicts.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SUITES = ("synthetic-shapes", "synthetic-counting")


def _write_models(where: Path) -> dict[str, Path]:
    files = {
        "twin-a": 'name = "twin-a"\nsource = "fixture:qwen2_5_vl"\n',
        "twin-b": 'name = "twin-b"\nsource = "fixture:qwen2_5_vl"\n',
        "twin-slow": 'name = "twin-slow"\nsource = "fixture:qwen2_5_vl"\nplanted_slowdown = 0.25\n',
    }
    out = {}
    for name, text in files.items():
        (where / f"{name}.toml").write_text(text)
        out[name] = where / f"{name}.toml"
    return out


def verdicts_of(report_md: Path) -> dict[str, tuple[str, list[str]]]:
    """question -> (outcome, models named) from a run's report.md summary table."""
    out = {}
    for line in report_md.read_text().splitlines():
        m = re.match(r"^\| (Fastest decode|Fastest first token|Least memory) \| (.*?) \|", line)
        if not m:
            continue
        text = re.sub(r" \(provisional[^)]*\)", "", m.group(2))
        tie = text.startswith("tie: ")
        names = [n.strip() for n in text.removeprefix("tie: ").split(",")]
        out[m.group(1)] = ("tie" if tie else "winner", names)
    return out


def one_trial(models: list[Path], out: Path, run_id: str, limit: int = 8, extra: tuple[str, ...] = ()) -> dict:
    cmd = [sys.executable, "-m", "harness", "run", "--limit", str(limit), "--out", str(out), "--run-id", run_id,
           "--no-progress", *extra]
    for m in models:
        cmd += ["-m", str(m)]
    for s in SUITES:
        cmd += ["-s", s]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trial {run_id} failed: {proc.stderr[-1500:]}")
    return verdicts_of(out / run_id / "report.md")


def _paired_decode_ratio(run: Path, a: str, b: str) -> float:
    """What the planted slowdown came to in one run: the geometric mean over samples of a's
    decode rate over b's (the samples both answered, moments apart in lockstep)."""
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(run / "results.parquet")
    ok = df[df["status"] == "ok"].pivot_table(index=["round", "suite", "sample_id", "repeat"], columns="model",
                                               values="decode_tps")
    return float(np.exp(np.log(ok[a] / ok[b]).mean()))


def _trials(kind: str, first: str, second: str, others: list[Path], trials: int, out: Path | None,
            extra: tuple[str, ...], judge) -> tuple[Path, list[dict]]:
    """`trials` runs of `first` and `second` (their order swapped from trial to trial) and `others`;
    judge(verdicts, run directory) gives each trial's tallies and its line."""
    out = Path(out or tempfile.mkdtemp(prefix=f"{kind}-"))
    files = _write_models(out)
    results = []
    for t in range(trials):
        pair = [files[first], files[second]] if t % 2 == 0 else [files[second], files[first]]
        v = one_trial([*pair, *others], out, f"{kind}-{t}", extra=extra)
        tally, line = judge(v, out / f"{kind}-{t}")
        results.append({**tally, "line": f"trial {t}: decode {v['Fastest decode']}, first token "
                                         f"{v['Fastest first token']}{line}"})
    return out, results


def twins(trials: int = 8, out: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
    def judge(v: dict, run: Path) -> tuple[dict, str]:
        false = sum(v[q][0] == "winner" and v[q][1][0] in ("twin-a", "twin-b")
                    for q in ("Fastest decode", "Fastest first token"))
        return {"false": false, "lost": int("fixture-qwen2_5_vl-4bit" not in v["Fastest decode"][1])}, ""

    out, r = _trials("twins", "twin-a", "twin-b", [Path("fixture-qwen2_5_vl-4bit")], trials, out, extra, judge)
    return {"trials": trials, "questions": 2 * trials, "false_winners": sum(x["false"] for x in r),
            "fixture_lost_decode": sum(x["lost"] for x in r), "lines": [x["line"] for x in r], "out": str(out)}


def planted(trials: int = 20, out: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
    def judge(v: dict, run: Path) -> tuple[dict, str]:
        slow = sum(o == "winner" and names == ["twin-slow"] for q, (o, names) in v.items() if q != "Least memory")
        return ({"slow": slow, "found": int(v["Fastest decode"] == ("winner", ["twin-a"]))},
                f", planted measured ×{_paired_decode_ratio(run, 'twin-a', 'twin-slow'):.2f}")

    out, r = _trials("planted", "twin-a", "twin-slow", [], trials, out, extra, judge)
    return {"trials": trials, "slow_won_a_speed_question": sum(x["slow"] for x in r),
            "fast_won_decode": sum(x["found"] for x in r), "lines": [x["line"] for x in r], "out": str(out)}


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "twins"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else (8 if kind == "twins" else 20)
    # Anything after the count goes to `vlm-harness run` as it is, e.g. `planted 20 --repeats 4`.
    result = (twins if kind == "twins" else planted)(n, extra=tuple(sys.argv[3:]))
    for line in result.pop("lines"):
        print(line)
    print(json.dumps(result, indent=1))
