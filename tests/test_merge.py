"""Shards of a run on this machine, merged, equal the unsplit run; copies written by pandas and
DuckDB are read, marked unsealed, render the same report and pass the gate against the original."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.core.schema import KEY, SCHEMA_VERSION, to_table
from harness.judge.accuracy import accuracy_table
from harness.results.merging import merge, merge_rows
from harness.results.store import read_results, read_results_info, write_table
from harness.run.tester import VLMTester

REPO = Path(__file__).resolve().parent.parent
MODELS = ["fixture-qwen2_5_vl", "fixture-smolvlm-4bit"]
SUITES = ["synthetic-shapes", "natural"]
LIMIT = 5


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


@pytest.fixture(scope="module")
def runs(fixtures_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    whole = VLMTester(out, run_id="whole", limit=LIMIT, warmup=0, progress=False).run(MODELS, SUITES)
    shards = [VLMTester(out, run_id=f"shard-{k}", limit=LIMIT, warmup=0, progress=False, shard=f"{k}/3")
              for k in (1, 2, 3)]
    for t in shards:
        t.run(MODELS, SUITES)
    merged_dir = out / "merged"
    r = cli("merge", *(str(t.run_dir) for t in shards), "-o", str(merged_dir))
    assert r.returncode == 0, r.stderr
    return out, whole, [t.run_dir for t in shards], merged_dir


def _keys(df: pd.DataFrame) -> list[tuple]:
    return sorted(df[list(KEY)].itertuples(index=False, name=None))


def test_shards_split_the_run_and_every_row_says_its_shard_and_machine(runs):
    _, whole, shard_dirs, _ = runs
    parts = [read_results(d) for d in shard_dirs]
    assert sum(map(len, parts)) == len(whole)
    for k, df in enumerate(parts, 1):
        assert set(df["shard"]) == {f"{k}/3"}
        assert df["machine_id"].notna().all() and df["machine_id"].nunique() == 1
        assert df["node"].isna().all()
    assert whole["shard"].isna().all()
    assert set(parts[0]["machine_id"]) == set(whole["machine_id"])  # stable across runs on one machine


def test_merged_shards_have_the_unsplit_runs_keys_outputs_and_accuracy(runs):
    _, whole, _, merged_dir = runs
    merged = read_results(merged_dir)
    assert _keys(merged) == _keys(whole)
    both = whole.merge(merged, on=list(KEY), suffixes=("_whole", "_merged"))
    assert (both["output_whole"] == both["output_merged"]).all()  # greedy decoding: the same text
    cols = ["model", "suite", "category", "n", "mean", "ci_low", "ci_high", "n_error"]
    a = accuracy_table(whole)[cols].sort_values(cols[:3]).reset_index(drop=True)
    b = pd.read_parquet(merged_dir / "accuracy.parquet")[cols].sort_values(cols[:3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert (merged["schema_version"] == SCHEMA_VERSION).all()


def _copies(merged_dir: Path, tmp: Path) -> dict[str, Path]:
    import duckdb

    df = pd.read_parquet(merged_dir / "results.parquet")
    half = len(df) // 2
    (tmp / "pandas").mkdir()
    pandas_copy = tmp / "pandas" / "results.parquet"  # how people concatenate runs by hand
    pd.concat([df.iloc[:half], df.iloc[half:]], ignore_index=True).to_parquet(pandas_copy)
    (tmp / "duckdb").mkdir()
    duck_copy = tmp / "duckdb" / "results.parquet"
    src = str(merged_dir / "results.parquet")
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{src}')) TO '{duck_copy}' (FORMAT parquet)")
    return {"pandas": pandas_copy, "duckdb": duck_copy}


def test_pandas_and_duckdb_copies_render_the_same_report_and_pass_the_gate(runs, tmp_path):
    _, _, _, merged_dir = runs
    copies = _copies(merged_dir, tmp_path)
    for path in copies.values():
        assert pq.read_schema(path).metadata is None or b"vlm_harness_schema" not in pq.read_schema(path).metadata

    def report(src: Path, name: str) -> tuple[str, str]:
        out = tmp_path / name / "report.html"
        r = cli("report", str(src), "-o", str(out), "--title", "same")
        assert r.returncode == 0, r.stderr
        return out.read_text(), (out.parent / "report.md").read_text()

    def tables(md: str) -> str:  # the figures; the facts line names the sources, the note the unsealed file
        return re.sub(r"> Unsealed[^\n]*\n\n", "", md)

    html0, md0 = report(merged_dir / "results.parquet", "original")
    assert "Unsealed" not in html0 and "Unsealed" not in md0
    for name, path in copies.items():
        html, md = report(path, name)
        assert tables(md) == tables(md0), name
        assert re.search(r"<strong>Unsealed:</strong> <code>[^<]*" + name, html), name
        assert "> Unsealed" in md
        gate = cli("gate", "--baseline", str(merged_dir / "results.parquet"), "--current", str(path))
        assert gate.returncode == 0, (name, gate.stdout[-2000:], gate.stderr[-2000:])
        assert "cannot compare" not in gate.stderr


def test_a_polars_copy_of_an_old_schema_is_migrated_by_its_column(tmp_path):
    pl = pytest.importorskip("polars", reason="polars not installed")
    v1 = REPO / "tests" / "data" / "v1-run" / "results.parquet"
    pl.read_parquet(v1).write_parquet(tmp_path / "copy.parquet")
    df, infos = read_results_info(tmp_path / "copy.parquet")
    assert len(df) == 12 and (df["schema_version"] == SCHEMA_VERSION).all()
    assert set(df["model_role"]) == {"fixture", "reference"}  # the v1 -> v2 step ran
    assert infos[0].schema_versions == (1,) and not infos[0].sealed and infos[0].written_by == "other"


def test_a_file_without_schema_version_is_still_refused_with_one_line(tmp_path):
    pq.write_table(pa.table({"model": ["m"]}), tmp_path / "x.parquet")
    r = cli("report", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 2
    assert "no schema_version column" in r.stderr and "Traceback" not in r.stderr


def _row(**kw) -> dict:
    base = {"run_id": "r1", "model": "m", "suite": "s", "suite_hash": "h", "sample_id": "1", "repeat": 0,
            "status": "ok", "score": 1.0, "output": "yes", "machine_id": "a",
            "recorded_at": pd.Timestamp("2026-01-01", tz="UTC")}
    return {**base, **kw}


def test_duplicates_are_dropped_and_conflicts_named(tmp_path):
    rows = [_row(), _row(), _row(sample_id="2"),
            _row(sample_id="2", output="no", score=0.0, recorded_at=pd.Timestamp("2026-01-02", tz="UTC")),
            _row(run_id="r2", sample_id="3", machine_id="b"), _row(run_id="r3", sample_id="3", machine_id="c")]
    write_table(to_table(rows), tmp_path / "a.parquet")
    m = merge([tmp_path / "a.parquet"])
    assert m.read == 6 and len(m.rows) == 4 and m.duplicates == 2
    assert len(m.conflicts) == 1
    c = m.conflicts[0]
    assert c.key[3] == "2" and set(c.columns) == {"output", "score"} and "newest" in c.kept
    kept = m.rows.set_index("sample_id").loc["2"]
    assert kept["output"] == "no"
    assert m.remeasured == 1 and m.machines == ("a", "b", "c")
    r = cli("merge", str(tmp_path / "a.parquet"), "-o", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "conflict: run r1, m × s × sample 2 (repeat 0): copies differ in output, score" in r.stderr
    assert (tmp_path / "out" / "results.parquet").exists()  # the merge is written all the same


def test_a_measured_copy_wins_over_a_failed_one():
    df = pd.DataFrame([_row(status="error", output=None, score=None,
                            recorded_at=pd.Timestamp("2026-02-01", tz="UTC")), _row()])
    m = merge_rows(df)
    assert m.rows["status"].tolist() == ["ok"] and "measured" in m.conflicts[0].kept


def test_speed_is_never_pooled_across_machines(tmp_path):
    from harness.report.tables import speed_table

    rows = []
    for machine, tps in (("mac-a", 10.0), ("mac-b", 30.0)):
        for k in range(4):
            rows.append(_row(run_id=machine, sample_id=str(k), machine_id=machine, env_host=machine,
                             decode_tps=tps + k * 0.1, ttft_s=0.1, wall_s=1.0, generated_tokens=20))
    df = pd.DataFrame(rows)
    _, speed_rows, stats, _ = speed_table(df)
    assert [(r.model, r.machine) for r in speed_rows] == [("m", "mac-a"), ("m", "mac-b")]
    assert [round(s.decode.mean) for s in stats] == [10, 30]
    assert "mac-b" in speed_rows[1].cells["backend"].text
