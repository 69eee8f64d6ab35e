"""Scoring apart from generation: a stored run, of this schema or an older one, is scored again
with the current metrics and no model is loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from harness.core.schema import SCHEMA_VERSION
from harness.judge import scoring
from harness.judge.accuracy import accuracy_table
from harness.results.store import read_results

REPO = Path(__file__).resolve().parent.parent
V1_RUN = REPO / "tests" / "data" / "v1-run"  # written by vlm-harness 0.1.0 (results schema v1)


def test_a_previous_release_run_is_read_through_the_migration():
    df = read_results(V1_RUN)
    assert len(df) == 12 and (df["schema_version"] == SCHEMA_VERSION).all()
    assert (df["round"] == 0).all()  # one pass: a single round
    assert set(df["model_role"]) == {"fixture", "reference"}
    assert (df["mode"] == "latency").all()  # every row before v3 was generated one at a time
    assert df["keywords"].isna().all()  # v1 did not store them: null, not invented


def test_rescore_reproduces_the_previous_release_scores():
    before = read_results(V1_RUN)
    after = scoring.rescore(before)
    assert after["score"].tolist() == before["score"].tolist()
    # keyword_recall rows took their keywords from the unchanged suite, so they were scored again
    captions = after[after["suite"] == "natural-captions"]
    assert captions["metric_version"].notna().all()
    pd.testing.assert_frame_equal(accuracy_table(before), accuracy_table(after))


PLANTED = textwrap.dedent('''
    import sys
    from dataclasses import replace
    from harness.cli import main
    from harness.metrics import METRICS

    # A planted metric change: exact_match v99 accepts every answer.
    spec = METRICS.get("exact_match")
    METRICS._items["exact_match"] = replace(spec, fn=lambda out, sample: 1.0, version=99)
    code = main(["rescore", sys.argv[1]])
    loaded = sorted(m for m in sys.modules if m == "mlx_vlm" or m.startswith("mlx."))
    print("LOADED", loaded)
    sys.exit(code)
''')


def test_a_planted_metric_change_gives_new_scores_without_loading_a_model(tmp_path):
    run = tmp_path / "v1-run"
    shutil.copytree(V1_RUN, run)
    script = tmp_path / "planted.py"
    script.write_text(PLANTED)
    r = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=120,
                       cwd=REPO, env={**_env(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout  # neither mlx nor mlx_vlm was imported
    out = next((run / "rescore").iterdir())
    new = pd.read_parquet(out / "results.parquet")
    shapes = new[new["suite"] == "synthetic-shapes"]
    assert (shapes["score"] == 1.0).all() and (shapes["metric_version"] == 99).all()
    meta = json.loads((out / "rescore.json").read_text())
    assert meta["metric_versions"]["exact_match"] == 99 and meta["rows_changed"] == 3  # the fixture's three
    acc = pd.read_parquet(out / "accuracy.parquet")
    whole = acc[(acc["category"] == "*") & (acc["suite"] == "synthetic-shapes")]
    assert whole["mean"].tolist() == [1.0, 1.0]
    # The original results are untouched.
    assert read_results(V1_RUN)["score"].tolist() == read_results(run)["score"].tolist()


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "VLM_HARNESS_ROOT": str(REPO), "PYTHONPATH": str(REPO)}
