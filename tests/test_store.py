from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.core.schema import SCHEMA_VERSION
from harness.results.store import ResultsStore, SchemaMismatch, read_results


def row(i, status="ok", **kw):
    return {"run_id": "r", "model": "m", "suite": "s", "suite_hash": "h", "sample_id": f"x{i}", "repeat": 0,
            "status": status, "decode_tps": float(i), **kw}


def test_append_read_and_consolidate(tmp_path):
    store = ResultsStore(tmp_path / "run")
    store.append([row(0)])
    store.append([row(1), row(2)])
    assert len(store.run.part_files()) == 2
    df = store.read()
    assert list(df["sample_id"]) == ["x0", "x1", "x2"]
    assert set(df["schema_version"]) == {SCHEMA_VERSION}
    path = store.consolidate()
    assert not store.run.part_files() and not list((tmp_path / "run" / "parts").iterdir())
    assert len(read_results(path)) == 3
    # A store reopened after consolidation continues appending without clobbering.
    again = ResultsStore(tmp_path / "run")
    again.append([row(3)])
    assert len(again.read()) == 4


def test_duplicate_rows_from_an_interrupted_consolidation_are_dropped(tmp_path):
    store = ResultsStore(tmp_path / "run")
    store.append([row(0, decode_tps=1.0)])
    store.consolidate()
    store.append([row(0, decode_tps=2.0)])  # same key written again, as if parts survived
    df = read_results(tmp_path / "run")
    assert len(df) == 1
    assert df["decode_tps"].iloc[0] == 2.0


def test_unknown_column_and_bad_status_are_refused(tmp_path):
    store = ResultsStore(tmp_path / "run")
    with pytest.raises(KeyError, match="not in results schema"):
        store.append([row(0, made_up=1)])
    with pytest.raises(ValueError, match="status"):
        store.append([row(0, status="fine")])


def test_other_schema_version_is_refused_with_a_clear_message(tmp_path):
    table = pa.table({"x": [1]}).replace_schema_metadata({"vlm_harness_schema": "999"})
    pq.write_table(table, tmp_path / "old.parquet")
    with pytest.raises(SchemaMismatch, match="v999"):
        read_results(tmp_path / "old.parquet")


def test_missing_results_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        read_results(tmp_path / "nope")


def test_files_written_before_a_column_existed_still_merge(tmp_path):
    from harness.core.schema import SCHEMA

    store = ResultsStore(tmp_path / "new")
    store.append([row(0)])
    old_schema = pa.schema([f for f in SCHEMA if f.name != "decode_tps"], metadata=SCHEMA.metadata)
    old = pa.Table.from_pylist([{"run_id": "old", "model": "m", "suite": "s", "suite_hash": "h", "sample_id": "x9",
                                 "repeat": 0, "status": "ok", "schema_version": SCHEMA_VERSION}], schema=old_schema)
    pq.write_table(old, tmp_path / "old.parquet")
    df = read_results(tmp_path / "new", tmp_path / "old.parquet")
    assert len(df) == 2
    assert df.set_index("sample_id").loc["x9", "decode_tps"] != df.set_index("sample_id").loc["x9", "decode_tps"]  # NaN
    assert df.set_index("sample_id").loc["x0", "decode_tps"] == 0.0
