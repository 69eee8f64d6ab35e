"""Results on disk: a run directory of small parquet parts, each written atomically.

A row is durable as soon as its part is renamed into place, so SIGKILL at any moment leaves
only whole files and loses nothing finished. `consolidate` folds the parts into one
`results.parquet` at the end of a run; readers accept either, or both, and drop duplicates.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.schema import KEY, SCHEMA, SCHEMA_VERSION, to_table

RESULTS = "results.parquet"
PARTS = "parts"


class SchemaMismatch(ValueError):
    pass


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.parts = self.run_dir / PARTS
        existing = sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []
        self._seq = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        _atomic_write(to_table(rows), self.parts / f"part-{self._seq:07d}.parquet")
        self._seq += 1

    def read(self) -> pd.DataFrame:
        return read_results(self.run_dir)

    def consolidate(self) -> Path:
        df = self.read()
        target = self.run_dir / RESULTS
        _atomic_write(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), target)
        # Only after the whole file is in place do the parts go; a kill in between leaves
        # duplicates that read_results drops.
        for p in self.parts.glob("part-*.parquet"):
            p.unlink()
        return target


def _read_file(path: Path) -> pa.Table:
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"vlm_harness_schema", b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise SchemaMismatch(
            f"{path}: results schema v{version}, this harness reads v{SCHEMA_VERSION}; "
            "re-run the benchmark or use the harness version that wrote it"
        )
    return table


def _conform(table: pa.Table) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def read_results(*paths: Path) -> pd.DataFrame:
    """Rows from run directories or parquet files, concatenated, duplicates of a key dropped."""
    tables = []
    for path in map(Path, paths):
        if path.is_dir():
            files = ([path / RESULTS] if (path / RESULTS).exists() else []) + sorted(
                (path / PARTS).glob("part-*.parquet")
            )
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"no results at {path}")
        tables.extend(_read_file(f) for f in files)
    if not tables:
        return SCHEMA.empty_table().to_pandas()
    # Files written before a column was added lack it: give them nulls, so runs of different
    # ages (or machines) still merge into one table.
    df = pa.concat_tables([_conform(t) for t in tables]).to_pandas()
    return df.drop_duplicates(subset=["run_id", *KEY], keep="last").reset_index(drop=True)
